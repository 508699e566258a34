import type { Command } from 'commander';
import { excerptRecord } from '../../functions/wfdb/excerpt.js';
import { CliError, parseInteger, requireDirectory } from '../common.js';

interface ExcerptFlags {
  data: string;
  records: string;
  seconds: string;
  out: string;
}

export function registerData(program: Command): void {
  const data = program.command('data').description('Work with WFDB record directories.');
  data
    .command('excerpt')
    .description('Cut excerpts of records (signals and annotations, format 212) into another directory.')
    .requiredOption('--data <dir>', 'directory of WFDB records')
    .requiredOption('--records <list>', 'comma-separated RECORD[:START_SECONDS] items, e.g. 101,209:420')
    .option('--seconds <n>', 'length of each excerpt', '180')
    .requiredOption('--out <dir>', 'output directory')
    .action(async (flags: ExcerptFlags) => {
      const dataDir = requireDirectory(flags.data, '--data');
      const seconds = parseInteger(flags.seconds, '--seconds');
      if (seconds <= 0) throw new CliError('CLI_BAD_NUMBER', '--seconds must be positive', 2);
      for (const item of flags.records.split(',')) {
        const match = /^([A-Za-z0-9_-]+)(?::(\d+))?$/.exec(item.trim());
        if (match === null) throw new CliError('CLI_BAD_RECORDS', `"${item}" is not RECORD[:START_SECONDS]`, 2);
        const name = match[1] as string;
        const start = Number(match[2] ?? 0);
        const summary = await excerptRecord({ dataDir, record: name, startSeconds: start, seconds, outDir: flags.out });
        process.stderr.write(`${name}: samples ${summary.fromSample}..${summary.toSample}, ${summary.annotations} annotations → ${flags.out}\n`);
      }
    });
}
