import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { MODEL_KINDS, trainModel, type ModelKind } from '../../functions/model/index.js';
import { CliError, parseInteger, printJson, requireDirectory, resolveRecords, withClassifier } from '../common.js';

interface TrainFlags {
  model: string;
  data: string;
  out: string;
  seed: string;
  records?: string;
}

export function registerModel(program: Command): void {
  const model = program.command('model').description('Train and inspect beat classifiers (ONNX).');
  model
    .command('train')
    .description('Train a model on DS1 records (never DS2) and write it as ONNX; the same seed gives the same file.')
    .requiredOption('--model <kind>', 'paper (the reference paper\'s 10-hidden-unit ANN, binary), default (gradient-boosted trees, AAMI N/S/V/F/Q) or mlp (an MLP on the default features)')
    .requiredOption('--data <dir>', 'directory of MIT-BIH records')
    .requiredOption('--out <file>', 'where to write the .onnx file')
    .option('--seed <n>', 'random seed', '1')
    .option('--records <list>', 'training records (default DS1)')
    .action(async (flags: TrainFlags) => {
      if (!(MODEL_KINDS as readonly string[]).includes(flags.model)) {
        throw new CliError('CLI_BAD_MODEL_KIND', `--model must be one of ${MODEL_KINDS.join(', ')}, not "${flags.model}"`, 2);
      }
      const seed = parseInteger(flags.seed, '--seed');
      const dataDir = requireDirectory(flags.data, '--data');
      const records = await resolveRecords(dataDir, flags.records ?? 'DS1');
      const bytes = await trainModel({ model: flags.model as ModelKind, dataDir, records, seed, log: (line) => process.stderr.write(`${line}\n`) });
      await mkdir(path.dirname(path.resolve(flags.out)), { recursive: true });
      await writeFile(flags.out, bytes);
      process.stderr.write(`wrote ${flags.out} (${bytes.length} bytes, sha256 ${createHash('sha256').update(bytes).digest('hex')})\n`);
    });
  model
    .command('info')
    .description('Print a model\'s metadata (name, kind, classes, feature set, sha256) as JSON.')
    .argument('[model]', 'ONNX file or shipped model name', 'default')
    .action(async (name: string) => {
      await withClassifier(name, async (classifier) => printJson(classifier.info));
    });
}
