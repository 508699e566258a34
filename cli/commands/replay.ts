import type { Command } from 'commander';
import { isEcgFaasError } from '../../contracts/errors.js';
import { formatSummary, runReplay, type ReplayProgress } from '../../replay/index.js';
import { createProgressBar, type ProgressDisplay } from '../../replay/progress.js';
import { CliError, parseInteger, printJson, requireDirectory, resolveRecords } from '../common.js';

interface ReplayFlags {
  gateway: string;
  monitors: string;
  duration: string;
  data: string;
  records?: string;
  seed: string;
  json?: boolean;
  leads: string;
  deadlineMs: string;
  wait: boolean;
  connections?: string;
  roundtrips?: string;
  session?: string;
}

// Option mistakes are usage errors (exit 2); an unreachable gateway is a run failure (exit 1).
const USAGE_CODES = new Set(['REPLAY_BAD_OPTION', 'REPLAY_UNKNOWN_RECORD', 'REPLAY_BAD_RECORD']);

export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('Replay MIT-BIH records as N heart monitors, each sending one 1-second packet per second to the gateway (open loop), and report round trips and deadline misses.')
    .requiredOption('--gateway <url>', 'gateway base URL, e.g. http://127.0.0.1:3000')
    .requiredOption('--monitors <n>', 'simulated monitors (>= 1)')
    .requiredOption('--duration <s>', 'seconds of sending; 0 = one pass over each monitor\'s record')
    .requiredOption('--data <dir>', 'directory of WFDB records (.hea, .dat)')
    .option('--records <list>', 'comma-separated record names (DS1 and PACED stand for those sets); default: every record in --data')
    .option('--seed <k>', 'seed of records, offsets and phases (same seed, same load)', '1')
    .option('--json', 'print one JSON summary on stdout')
    .option('--leads <n>', '2: both leads of the record; 1: the primary lead only', '2')
    .option('--deadline-ms <ms>', 'round trip above which a packet is a deadline miss', '1000')
    .option('--no-wait', 'do not ask the gateway to wait for the result (round trip = time to the 202)')
    .option('--connections <c>', 'HTTP connections to the gateway (default min(2 × monitors, 256)); raise it when the summary shows a client queue')
    .option('--roundtrips <file>', 'write one NDJSON line per packet')
    .option('--session <prefix>', 'first session name of every monitor (default r<seed>); change it to re-run against the same gateway without duplicates')
    .action(async (flags: ReplayFlags) => {
      const monitors = parseInteger(flags.monitors, '--monitors');
      if (monitors < 1) throw new CliError('CLI_BAD_NUMBER', '--monitors must be at least 1', 2);
      const durationS = parseInteger(flags.duration, '--duration');
      if (durationS < 0) throw new CliError('CLI_BAD_NUMBER', '--duration must be 0 (one pass) or more seconds', 2);
      const seed = parseInteger(flags.seed, '--seed');
      if (seed < 0 || seed > 0xffffffff) throw new CliError('CLI_BAD_NUMBER', '--seed must be 0..4294967295', 2);
      const leads = parseInteger(flags.leads, '--leads');
      if (leads !== 1 && leads !== 2) throw new CliError('CLI_BAD_NUMBER', '--leads must be 1 or 2', 2);
      const deadlineMs = parseInteger(flags.deadlineMs, '--deadline-ms');
      if (deadlineMs < 1) throw new CliError('CLI_BAD_NUMBER', '--deadline-ms must be positive', 2);
      const connections = flags.connections === undefined ? undefined : parseInteger(flags.connections, '--connections');
      if (connections !== undefined && connections < 1) throw new CliError('CLI_BAD_NUMBER', '--connections must be at least 1', 2);
      const dataDir = requireDirectory(flags.data, '--data');
      const records = flags.records === undefined ? undefined : await resolveRecords(dataDir, flags.records);

      const showBar = !flags.json && process.stderr.isTTY === true;
      let bar: ProgressDisplay | undefined;
      const controller = new AbortController();
      const onSigint = (): void => {
        process.stderr.write('\nstopping: waiting for outstanding answers (Ctrl-C again to quit now)\n');
        controller.abort();
      };
      process.once('SIGINT', onSigint);
      try {
        const summary = await runReplay(
          {
            gateway: flags.gateway, monitors, durationS, dataDir, records, seed, leads, deadlineMs,
            wait: flags.wait, connections, roundtripsFile: flags.roundtrips, sessionPrefix: flags.session,
          },
          {
            signal: controller.signal,
            onProgress: showBar
              ? (p: ReplayProgress) => {
                  bar ??= createProgressBar(p.planned);
                  bar.update(p);
                }
              : undefined,
          },
        );
        bar?.stop();
        if (flags.json) printJson(summary);
        else process.stdout.write(formatSummary(summary));
      } catch (error) {
        if (isEcgFaasError(error) && !(error instanceof CliError)) {
          throw new CliError(error.code, error.message, USAGE_CODES.has(error.code) ? 2 : 1);
        }
        throw error;
      } finally {
        bar?.stop();
        process.removeListener('SIGINT', onSigint);
      }
    });
}
