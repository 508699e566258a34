/**
 * One measured run on the embedded stack: start it, attribute invocations to a fresh run id, replay
 * real ECG as N monitors (open loop), drain, stop the processes (their latency records are flushed
 * to the bucket), then build the latency report from what was stored. `ecgfaas demo` and
 * `ecgfaas bench` are this with different defaults.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { LatencyRecord } from '../contracts/invocation.js';
import { buildReport, writeReportFiles, formatReport, type LatencyReport } from '../report/index.js';
import { runReplay, type ReplayProgress, type ReplaySummary, type RoundTripLine } from '../replay/index.js';
import { EpisodeStore, readRunRecords, writeRoundTrips, writeRunEvents, writeRunManifest, type StoredRunEvent } from '../storage/index.js';
import { CpuMeter } from './proc-cpu.js';
import { EmbeddedStack, type StackOptions } from './stack.js';

export interface RunOptions {
  stack: Omit<StackOptions, 'logger'>;
  logger: Logger;
  monitors: number;
  durationS: number;
  dataDir: string;
  records?: string[] | undefined;
  seed: number;
  deadlineMs: number;
  /** ms between a monitor's packets (default 1000; shorter compresses time, see ReplayOptions). */
  packetPeriodMs?: number;
  /** HTTP connections of the load generator (default: the replay's, 2 per monitor). */
  connections?: number;
  /** How long the load generator waits for outstanding answers once sending stops (default: the replay's, deadline + 500 ms). */
  replayDrainMs?: number;
  leads?: 1 | 2;
  /** Seconds of load before the measured replay (not reported), so models, JIT and connections are warm. */
  warmupS?: number;
  /** Where reports/<runId>/ goes (default `reports`). */
  reportsDir?: string;
  runPrefix?: string;
  onProgress?: (progress: ReplayProgress) => void;
  onStarted?: (info: { runId: string; gatewayUrl: string }) => void;
  /** Runs alongside the measured replay (e.g. a benchmark's fault: kill a worker); awaited before draining. */
  during?: (stack: EmbeddedStack) => Promise<void>;
  /** Runs once the stack is up, before any replay (e.g. workers in guests deployed on it). */
  beforeReplay?: (stack: EmbeddedStack) => Promise<void>;
  /** Runs after draining, before the stack's processes stop and the records are read (e.g. stop the guests' workers, which flushes their records). */
  beforeStop?: (stack: EmbeddedStack) => Promise<void>;
  /** Always runs before the stack closes, also after a failure (e.g. tear down guests deployed on it, which needs its Redis). */
  cleanup?: (stack: EmbeddedStack) => Promise<void>;
  signal?: AbortSignal;
  /** More about the run for its manifest (run.json), e.g. the experiment, row and repeat it belongs to. */
  manifestExtra?: Record<string, unknown>;
}

export interface RunOutcome {
  runId: string;
  replay: ReplaySummary;
  report: LatencyReport;
  reportText: string;
  reportDir: string;
  packets: { sent: number; accepted: number; processed: number; lost: number; duplicates: number; failed: number };
  episodes: { written: number; closed: number };
  cpuPct: { gateway: number | null; workers: number | null; redis: number | null; s3: number | null; loadGenerator: number | null };
  failedJobs: number;
  drained: boolean;
  /** The run's latency records, as stored. */
  records: LatencyRecord[];
  /** The load generator's line for every packet it sent (round trip or none, and when it was due). */
  roundTripLines: RoundTripLine[];
  workers: Array<{ workerId: string; hypervisor: string }>;
}

export function newRunId(prefix: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `${prefix}-${stamp}-${randomBytes(2).toString('hex')}`;
}

export async function runOnStack(options: RunOptions): Promise<RunOutcome> {
  const runId = newRunId(options.runPrefix ?? 'run');
  const scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-run-'));
  // A fresh redis-server data directory per run: assignments, checkpoints and queues of earlier
  // runs do not leak in. What outlives the run (episodes, latency segments, round trips, the
  // report) is in the bucket and under reports/.
  const warmup = options.warmupS !== undefined && options.warmupS > 0;
  const stack = new EmbeddedStack({
    redisDir: path.join(scratch, 'redis'), ...options.stack, logger: options.logger, runId: warmup ? `${runId}-warmup` : runId,
  });
  try {
    const info = await stack.start();
    await options.beforeReplay?.(stack);
    const s3 = stack.s3Client();
    const bucket = info.s3.bucket;
    try {
      if (warmup) {
        await runReplay({
          gateway: info.gatewayUrl, monitors: options.monitors, durationS: options.warmupS ?? 0, dataDir: options.dataDir,
          records: options.records, seed: options.seed + 1, deadlineMs: options.deadlineMs, leads: options.leads, sessionPrefix: 'warmup',
        }, options.signal ? { signal: options.signal } : {});
        await stack.drain(60_000);
        await stack.setRun(runId, true);
      }
      await writeRunManifest({
        s3, bucket,
        manifest: {
          runId, startedAt: new Date().toISOString(),
          config: {
            monitors: options.monitors, durationS: options.durationS, seed: options.seed, records: options.records ?? null, deadlineMs: options.deadlineMs,
            workers: options.stack.workers ?? 2, extraComputeMs: options.stack.extraComputeMs ?? 0, leads: options.leads ?? 2,
          },
          workers: stack.workers.map((worker) => worker.ready),
          ...options.manifestExtra,
        },
      });
      options.onStarted?.({ runId, gatewayUrl: info.gatewayUrl });
      const pids = stack.pids();
      const meters = {
        gateway: new CpuMeter(pids.gateway === null ? [] : [pids.gateway]),
        workers: new CpuMeter(pids.workers),
        redis: new CpuMeter(pids.redis === null ? [] : [pids.redis]),
        s3: new CpuMeter(pids.s3 === null ? [] : [pids.s3]),
        loadGenerator: new CpuMeter([process.pid]),
      };
      for (const meter of Object.values(meters)) meter.begin();
      const replayStartedAt = Date.now();
      const roundtripsFile = path.join(scratch, 'roundtrips.ndjson');
      const fault = options.during?.(stack);
      const replay = await runReplay({
        gateway: info.gatewayUrl, monitors: options.monitors, durationS: options.durationS, dataDir: options.dataDir,
        records: options.records, seed: options.seed, deadlineMs: options.deadlineMs, leads: options.leads, roundtripsFile,
        ...(options.packetPeriodMs !== undefined ? { packetPeriodMs: options.packetPeriodMs } : {}),
        ...(options.connections !== undefined ? { connections: options.connections } : {}),
        ...(options.replayDrainMs !== undefined ? { drainMs: options.replayDrainMs } : {}),
        sessionPrefix: runId.replace(/[^A-Za-z0-9_.:-]/g, '').slice(-40),
      }, { ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}) });
      const cpuPct = {
        gateway: meters.gateway.percent(), workers: meters.workers.percent(), redis: meters.redis.percent(),
        s3: meters.s3.percent(), loadGenerator: meters.loadGenerator.percent(),
      };
      await fault;
      options.logger.info('replay done; draining');
      const drained = await stack.drain(120_000);
      options.logger.info({ drained }, 'drained');
      const failedJobs = await stack.failedJobs();
      const events = await stack.schedulerEvents(replayStartedAt - 1000);
      await options.beforeStop?.(stack);
      const workers = stack.workers.map((worker) => worker.ready).filter((ready) => ready !== null) as Array<{ workerId: string; hypervisor: string }>;
      await stack.stopProcesses();
      options.logger.info('processes stopped');

      const roundTrips = new Map<string, number | null>();
      const roundTripLines: RoundTripLine[] = [];
      for (const line of (await readFile(roundtripsFile, 'utf8').catch(() => '')).split('\n')) {
        if (line === '') continue;
        const entry = JSON.parse(line) as RoundTripLine;
        roundTripLines.push(entry);
        if (entry.invocationId !== null) roundTrips.set(entry.invocationId, entry.roundTripMs);
      }
      await writeRoundTrips({ s3, bucket, runId, roundTrips });
      if (events.length > 0) await writeRunEvents({ s3, bucket, runId, events: events as unknown as StoredRunEvent[] });
      const records = await readRunRecords({ s3, bucket, runId });
      const report = buildReport(records, { deadlineMs: options.deadlineMs, clientRoundTrips: roundTrips, runId, events });
      const reportText = formatReport(report);
      const reportDir = path.join(options.reportsDir ?? 'reports', runId);
      await writeReportFiles(report, reportDir);

      const processedIds = new Set(records.filter((record) => record.status !== 'duplicate').map((record) => record.invocationId));
      const accepted = replay.packets.accepted - replay.packets.duplicates;
      const monitors = new Set(Array.from({ length: options.monitors }, (_, index) => `m${options.seed}-${index}`));
      // This run's episodes: its monitors', starting after its first packet (the bucket may hold earlier runs').
      const ours = (await new EpisodeStore({ client: s3, bucket }).list())
        .filter((manifest) => monitors.has(manifest.monitor) && Date.parse(manifest.start) >= replayStartedAt - 1000);
      return {
        runId, replay, report, reportText, reportDir,
        packets: {
          sent: replay.packets.sent, accepted, processed: processedIds.size, lost: Math.max(0, accepted - processedIds.size),
          duplicates: replay.packets.duplicates, failed: replay.packets.failed,
        },
        episodes: { written: ours.length, closed: ours.filter((manifest) => manifest.end !== null).length },
        cpuPct, failedJobs, drained, workers, records, roundTripLines,
      };
    } finally {
      s3.destroy();
    }
  } finally {
    try {
      await options.cleanup?.(stack);
    } finally {
      await stack.close();
      await rm(scratch, { recursive: true, force: true });
    }
  }
}
