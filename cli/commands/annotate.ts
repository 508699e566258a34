import type { Command } from 'commander';
import { MIT_CODE_OF_AAMI } from '../../functions/aami/index.js';
import { runRecord } from '../../functions/ecg-function/run-record.js';
import { annotation, readRecord, writeAnnotations } from '../../functions/wfdb/index.js';
import { CliError, requireDirectory, resolveRecords, withClassifier } from '../common.js';

interface AnnotateFlags {
  data: string;
  records?: string;
  out: string;
  annotator: string;
  model?: string;
}

export function registerAnnotate(program: Command): void {
  program
    .command('annotate')
    .description('Run the streaming function over records and write one MIT-format annotation file per record (<record>.<annotator>), one beat label per detected beat (N, A for S, V, F, Q), for rdann and bxb.')
    .requiredOption('--data <dir>', 'directory of WFDB records')
    .option('--records <list>', 'comma-separated record names (DS1 and PACED stand for those sets); default: every record in --data')
    .requiredOption('--out <dir>', 'directory for the annotation files')
    .option('--annotator <name>', 'annotator name, the file extension', 'ecg')
    .option('--model <path>', 'ONNX model file, or a shipped model name (default, paper)')
    .action(async (flags: AnnotateFlags) => {
      if (!/^[A-Za-z0-9_]+$/.test(flags.annotator)) {
        throw new CliError('CLI_BAD_ANNOTATOR', `annotator "${flags.annotator}" must be letters, digits and _ only`, 2);
      }
      const dataDir = requireDirectory(flags.data, '--data');
      const records = await resolveRecords(dataDir, flags.records);
      await withClassifier(flags.model, async (classifier) => {
        for (const name of records) {
          const record = await readRecord(dataDir, name);
          const run = await runRecord(record, classifier, { monitorId: `annotate-${name}` });
          // A binary model says only normal or abnormal: abnormal beats are written as Q (unclassified).
          const list = run.beats.map((beat) => annotation(beat.sample, MIT_CODE_OF_AAMI[beat.label === 'abnormal' ? 'Q' : beat.label]));
          await writeAnnotations(flags.out, name, flags.annotator, list);
          process.stderr.write(`${name}: ${list.length} beats → ${flags.out}/${name}.${flags.annotator}\n`);
        }
      });
    });
}
