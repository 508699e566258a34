/** `ecgfaas demo`, `ecgfaas bench` and `ecgfaas up`: the whole platform on this machine. */
import path from 'node:path';
import { Command } from 'commander';
import { createProgressBar, type ProgressDisplay } from '../../replay/progress.js';
import { EmbeddedStack } from '../../stack/index.js';
import { newRunId, runOnStack, type RunOutcome } from '../../stack/run.js';
import { CliError, integerOption, PACKAGE_ROOT, parseInteger, printJson, requireDirectory, resolveRecords } from '../common.js';
import { abortOnSignal, createLogger, untilSignal } from '../runtime.js';

interface CommonFlags {
  monitors: string;
  duration: string;
  data?: string;
  records?: string;
  seed: string;
  workers: string;
  extraComputeMs: string;
  deadlineMs: string;
  store: string;
  flushWindowMs?: string;
  json?: boolean;
}

function common(command: Command, defaults: { monitors: string; duration: string }): Command {
  return command
    .option('--monitors <n>', 'simulated monitors, one packet per second each', defaults.monitors)
    .option('--duration <s>', 'seconds of replay', defaults.duration)
    .option('--data <dir>', 'directory of MIT-BIH records to replay (default: the shipped excerpt)')
    .option('--records <list>', 'records to replay (default: all in --data)')
    .option('--seed <k>', 'seed of records, offsets and phases', '1')
    .option('--workers <n>', 'local warm workers', '2')
    .option('--extra-compute-ms <ms>', 'CPU burnt per packet by the function (the paper: ~305)', '0')
    .option('--deadline-ms <ms>', 'round trip above which a packet misses its deadline', '1000')
    .option('--store <dir>', 'local state: the embedded S3 data (<dir>/s3) and logs (<dir>/logs)', '.ecgfaas')
    .option('--flush-window-ms <ms>', "the gateway's enqueue window (default: the gateway's, 15)")
    .option('--json', 'print one JSON summary on stdout');
}

async function runFromFlags(flags: CommonFlags, kind: 'demo' | 'bench', warmupS: number): Promise<RunOutcome> {
  const monitors = parseInteger(flags.monitors, '--monitors');
  const durationS = parseInteger(flags.duration, '--duration');
  const workers = parseInteger(flags.workers, '--workers');
  const extraComputeMs = parseInteger(flags.extraComputeMs, '--extra-compute-ms');
  const deadlineMs = parseInteger(flags.deadlineMs, '--deadline-ms');
  if (monitors < 1 || durationS < 1 || workers < 1 || extraComputeMs < 0 || deadlineMs < 1) {
    throw new CliError('CLI_BAD_NUMBER', '--monitors, --duration, --workers and --deadline-ms must be at least 1; --extra-compute-ms at least 0', 2);
  }
  const dataDir = requireDirectory(flags.data ?? path.join(PACKAGE_ROOT, 'data', 'excerpt'), '--data');
  const records = flags.records === undefined ? undefined : await resolveRecords(dataDir, flags.records);
  const logger = createLogger(kind, process.env.ECGFAAS_LOG_LEVEL ?? 'warn');
  const abort = abortOnSignal();
  const showBar = !flags.json && process.stderr.isTTY === true;
  let bar: ProgressDisplay | undefined;
  try {
    return await runOnStack({
      stack: {
        dir: flags.store, workers, extraComputeMs,
        ...(flags.flushWindowMs !== undefined ? { flushWindowMs: integerOption('--flush-window-ms', 0, 1000)(flags.flushWindowMs) } : {}),
      },
      logger, monitors, durationS, dataDir, records, seed: parseInteger(flags.seed, '--seed'), deadlineMs, warmupS,
      runPrefix: kind,
      signal: abort.signal,
      onStarted: ({ runId, gatewayUrl }) => {
        if (!flags.json) process.stderr.write(`${kind} ${runId}: gateway ${gatewayUrl}, ${workers} workers, ${monitors} monitors for ${durationS} s\n`);
        if (showBar) bar = createProgressBar(monitors * durationS);
      },
      onProgress: (progress) => bar?.update(progress),
    });
  } finally {
    bar?.stop();
    abort.dispose();
  }
}

function roundTripSummary(outcome: RunOutcome) {
  const { roundTripMs } = outcome.replay;
  return { mean: roundTripMs.mean, p50: roundTripMs.p50, p99: roundTripMs.p99, max: roundTripMs.max };
}

export function registerStack(program: Command): void {
  common(program.command('demo'), { monitors: '8', duration: '30' })
    .description('Run the whole pipeline on embedded defaults (its own redis-server, an embedded S3 store, a gateway and local workers), replay real ECG, print the latency report and save it under reports/<run>/')
    .action(async (flags: CommonFlags) => {
      const outcome = await runFromFlags(flags, 'demo', 0);
      const summary = {
        runId: outcome.runId,
        packets: { sent: outcome.packets.sent, accepted: outcome.packets.accepted, processed: outcome.packets.processed, lost: outcome.packets.lost, duplicates: outcome.packets.duplicates, failed: outcome.packets.failed },
        episodes: outcome.episodes,
        roundTripMs: roundTripSummary(outcome),
        deadlineMissRate: outcome.replay.deadlineMissRate,
        deadlineMisses: outcome.replay.deadlineMisses,
        failedJobs: outcome.failedJobs,
        workers: outcome.workers,
        report: outcome.reportDir,
      };
      if (flags.json) {
        printJson(summary);
      } else {
        process.stdout.write(`${outcome.reportText}\n`);
        process.stdout.write(`run ${outcome.runId}: sent ${summary.packets.sent}, accepted ${summary.packets.accepted}, processed ${summary.packets.processed}, lost ${summary.packets.lost}; `
          + `${summary.episodes.written} episodes written (${summary.episodes.closed} closed); deadline misses ${(summary.deadlineMissRate * 100).toFixed(2)} %\n`
          + `report saved in ${outcome.reportDir}/; list episodes: npx ecgfaas episodes ls; report again: npx ecgfaas report --run ${outcome.runId}\n`);
      }
      if (outcome.packets.lost > 0) throw new CliError('DEMO_LOST_PACKETS', `${outcome.packets.lost} accepted packets were never processed`);
    });

  common(program.command('bench'), { monitors: '500', duration: '30' })
    .description('Start the whole embedded stack, warm it up, run an open-loop replay of N monitors and print throughput, round trips and CPU per process')
    .option('--warmup <s>', 'seconds of warm-up load (not measured)', '5')
    .action(async (flags: CommonFlags & { warmup: string }) => {
      const outcome = await runFromFlags(flags, 'bench', parseInteger(flags.warmup, '--warmup'));
      const summary = {
        monitors: outcome.replay.monitors,
        durationS: outcome.replay.durationS,
        sent: outcome.packets.sent,
        accepted: outcome.packets.accepted,
        processed: outcome.packets.processed,
        lost: outcome.packets.lost,
        deadlineMisses: outcome.replay.deadlineMisses,
        roundTripMs: { p50: outcome.replay.roundTripMs.p50, p99: outcome.replay.roundTripMs.p99, max: outcome.replay.roundTripMs.max, mean: outcome.replay.roundTripMs.mean },
        cpuPct: outcome.cpuPct,
        requestsPerSecond: outcome.replay.requestsPerSecond,
        failed: outcome.packets.failed,
        errorCodes: outcome.replay.errorCodes,
        sendLagMs: outcome.replay.sendLagMs,
        serviceTimeMs: { p50: outcome.report.overall.p50 ?? null, p99: outcome.report.overall.p99 ?? null },
        whereTimeGoes: outcome.report.overall,
        runId: outcome.runId,
        report: outcome.reportDir,
      };
      if (flags.json) printJson(summary);
      else process.stdout.write(`${outcome.reportText}\n${JSON.stringify(summary, null, 2)}\n`);
    });

  program
    .command('up')
    .description('Start the embedded stack (redis-server, S3 store, gateway, local workers) and keep it running for real monitors until Ctrl-C')
    .option('--workers <n>', 'local warm workers', '2')
    .option('--port <port>', 'gateway port', '8080')
    .option('--extra-compute-ms <ms>', 'CPU burnt per packet by the function', '0')
    .option('--store <dir>', 'local state: redis data, S3 data, logs', '.ecgfaas')
    .action(async (flags: { workers: string; port: string; extraComputeMs: string; store: string }) => {
      const logger = createLogger('up');
      const stack = new EmbeddedStack({
        dir: flags.store, workers: integerOption('--workers', 1)(flags.workers), gatewayPort: integerOption('--port', 0, 65535)(flags.port),
        extraComputeMs: integerOption('--extra-compute-ms', 0)(flags.extraComputeMs), logger, childLogLevel: 'info',
      });
      const stopped = untilSignal();
      try {
        const info = await stack.start();
        const runId = newRunId('up');
        await stack.setRun(runId);
        process.stdout.write(`${JSON.stringify({ event: 'ready', runId, gateway: info.gatewayUrl, redis: info.redisUrl, s3: info.s3.endpoint ?? 'aws', docs: `${info.gatewayUrl}/docs` })}\n`);
        await stopped;
      } finally {
        await stack.close();
      }
    });
}
