/**
 * Runs an experiment: for each row and repeat, the embedded stack (its own redis-server, the S3
 * store in `<store>/s3`, a gateway), the row's workers (bare processes or local VMs of cgroup-
 * confined workers), its monitors pinned where the row says (placement is fixed: no scheduler
 * loop, no interference moves, no scale-out), idle VMs paused or shut down, one replay, a drain,
 * and everything torn down (also on Ctrl-C or a failed deploy: runOnStack closes the stack, and the
 * local VM driver removes its VMs and cgroups). Every run's records stay in the store, so
 * `ecgfaas report --run ID --store DIR` works on each afterwards.
 *
 * The function's emulated work is calibrated once, here on the host, into a loop count every
 * worker runs (--extra-compute-iterations), so a slower VM takes longer for the same work.
 */
import { hostname, cpus } from 'node:os';
import type { Logger } from 'pino';
import { Redis } from 'ioredis';
import type { LatencyRecord } from '../contracts/invocation.js';
import { listVms } from '../deploy/vms.js';
import { monitorIdFor, type ReplayProgress } from '../replay/index.js';
import { pinMonitors } from '../scheduler/index.js';
import type { EmbeddedStack } from '../stack/index.js';
import { runOnStack, type RunOutcome } from '../stack/run.js';
import { CpuWork } from '../worker/cpu-work.js';
import { compareRows, summariseRow, type Comparison, type RowRuns, type RowSummary, type RunSamples, type Sample } from './analysis.js';
import { approachSupport } from './capabilities.js';
import { ExperimentError } from './errors.js';
import { isVmApproach, type ResolvedExperiment, type ResolvedRow } from './spec.js';

export interface RunExperimentOptions {
  /** The store directory (embedded S3 in `<store>/s3`, logs in `<store>/logs`). */
  store: string;
  dataDir: string;
  /** Record names (default: the spec's, else every record in dataDir). */
  records?: string[] | undefined;
  logger: Logger;
  /** Where each run's latency report goes (`<reportsDir>/<runId>/`). */
  reportsDir: string;
  signal?: AbortSignal;
  /** Told when a run starts and as its replay goes. */
  onRunStart?: (info: { row: ResolvedRow; repeat: number; runId: string }) => void;
  onProgress?: (progress: ReplayProgress) => void;
  onRunDone?: (info: { row: ResolvedRow; repeat: number; runId: string; outcome: RunOutcome }) => void;
  /** Loop iterations per ms of this host's CPU (default: calibrated now, in this process). */
  iterationsPerMs?: number;
}

export interface Skipped {
  row: string;
  approach: string;
  reason: string;
}

export interface ExperimentResult {
  experiment: string;
  paperTable: string;
  title: string;
  metric: string;
  scale: number;
  timeCompression: number;
  scalingRule: string;
  deadlineMs: number;
  packetPeriodMs: number;
  costMs: number;
  iterations: number;
  iterationsPerMs: number;
  durationS: number;
  warmupS: number;
  blockS: number;
  repeatsPlanned: number;
  runs: string[];
  rows: RowSummary[];
  comparisons: Comparison[];
  skipped: Skipped[];
  notes: string[];
  paper: ResolvedExperiment['spec']['paper'];
  machine: { host: string; cpus: number; cpuModel: string; node: string };
  startedAt: string;
  finishedAt: string;
  /** The raw samples per row and run (for figures); not printed by --json. */
  samples: RowRuns[];
}

/** Key prefix of every experiment run: their cgroups (`<prefix>.<vm>`) never meet a deployment's. */
const KEY_PREFIX = 'ecgfaas-xp';

export async function runExperiment(experiment: ResolvedExperiment, options: RunExperimentOptions): Promise<ExperimentResult> {
  const startedAt = new Date().toISOString();
  const iterationsPerMs = options.iterationsPerMs ?? new CpuWork().iterationsPerMs;
  const iterations = Math.max(0, Math.round(experiment.costMs * iterationsPerMs));
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const measured: RowRuns[] = [];
  const records = options.records ?? (experiment.spec.load.records === 'all' || experiment.spec.load.records === undefined ? undefined : experiment.spec.load.records);
  for (const row of experiment.rows) {
    const support = await approachSupport(row.approach);
    if (!support.ok) {
      skipped.push({ row: row.id, approach: row.approach, reason: support.reason });
      continue;
    }
    if (row.approach !== 'bare' && row.approach !== 'local') {
      // The libvirt approaches (qemu, kvm, xen-pv, xen-hvm) boot real guests; not run by experiments yet.
      skipped.push({ row: row.id, approach: row.approach, reason: `experiment run does not deploy ${row.approach} guests yet (ecgfaas deploy --driver libvirt does; docs/GUESTS.md)` });
      continue;
    }
    if (support.note !== undefined) notes.push(`${row.id}: ${support.note}`);
    const runs: RunSamples[] = [];
    for (let repeat = 1; repeat <= experiment.repeats; repeat++) {
      if (options.signal?.aborted) throw new ExperimentError('EXPERIMENT_ABORTED', 'stopped (signal) before every run was done; finished runs are in the store');
      const outcome = await runRow(experiment, row, repeat, { ...options, records, iterations });
      runs.push(samplesOf(experiment, outcome));
      options.onRunDone?.({ row, repeat, runId: outcome.runId, outcome });
      if (outcome.packets.lost > 0) notes.push(`${outcome.runId}: ${outcome.packets.lost} accepted packets were never processed`);
      if (options.signal?.aborted) throw new ExperimentError('EXPERIMENT_ABORTED', 'stopped (signal) before every run was done; finished runs are in the store');
    }
    measured.push({
      row: row.id, label: row.label, approach: row.approach, paperRow: row.spec.paperRow ?? null,
      vms: row.vms === null ? null : { ...row.vms, workersPerVm: row.workersPerVm, active: row.activeVms, confined: row.approach === 'local' ? support.note === undefined : null },
      workers: row.approach === 'bare' ? row.workers : null,
      monitors: row.monitors, idleVms: row.vms === null ? null : row.idleVms, runs,
    });
  }
  const analysis = { metric: experiment.spec.metric, deadlineMs: experiment.deadlineMs, seed: 1 };
  return {
    experiment: experiment.spec.experiment, paperTable: experiment.spec.paperTable, title: experiment.spec.title, metric: experiment.spec.metric,
    scale: experiment.scale, timeCompression: experiment.timeCompression, scalingRule: experiment.rule, deadlineMs: experiment.deadlineMs,
    packetPeriodMs: experiment.packetPeriodMs, costMs: experiment.costMs, iterations, iterationsPerMs,
    durationS: experiment.durationS, warmupS: experiment.warmupS, blockS: experiment.blockS, repeatsPlanned: experiment.repeats,
    runs: measured.flatMap((row) => row.runs.map((run) => run.runId)),
    rows: measured.map((row, index) => summariseRow(row, analysis, index)),
    comparisons: compareRows(measured, analysis),
    skipped, notes, paper: experiment.spec.paper,
    machine: { host: hostname(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version },
    startedAt, finishedAt: new Date().toISOString(),
    samples: measured,
  };
}

async function runRow(
  experiment: ResolvedExperiment, row: ResolvedRow, repeat: number,
  options: RunExperimentOptions & { records: string[] | undefined; iterations: number },
): Promise<RunOutcome> {
  const seed = experiment.spec.load.seed ?? 1;
  const k = experiment.timeCompression;
  let runId = '';
  return runOnStack({
    stack: {
      dir: options.store, keyPrefix: KEY_PREFIX, workers: row.approach === 'bare' ? row.workers : 0,
      extraComputeMs: Math.round(experiment.costMs), extraComputeIterations: options.iterations,
      storeEpisodes: experiment.spec.load.episodes,
      // The gateway's per-monitor limit must let time-compressed monitors through.
      monitorRatePerSecond: Math.max(5, 2 * k),
      waitTimeoutMs: Math.max(1000, 2 * experiment.deadlineMs),
      ...(isVmApproach(row.approach) && row.vms !== null
        ? { vms: { count: row.vms.count, vcpus: row.vms.vcpus, memoryMb: row.vms.memoryMb, workersPerVm: row.workersPerVm }, scaleOut: false }
        : {}),
    },
    logger: options.logger, monitors: row.monitors, durationS: experiment.packetsPerMonitor, packetPeriodMs: experiment.packetPeriodMs,
    dataDir: options.dataDir, records: options.records, seed, deadlineMs: experiment.deadlineMs,
    reportsDir: options.reportsDir, runPrefix: `${experiment.spec.experiment}-${row.id}`,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    manifestExtra: {
      experiment: {
        name: experiment.spec.experiment, paperTable: experiment.spec.paperTable, row: row.id, label: row.label, approach: row.approach, repeat,
        repeats: experiment.repeats, scale: experiment.scale, timeCompression: k, packetPeriodMs: experiment.packetPeriodMs, costMs: experiment.costMs,
        iterations: options.iterations, warmupS: experiment.warmupS, vms: row.vms, workersPerVm: row.workersPerVm, monitorsPerVm: row.monitorsPerVm,
        idleVms: row.idleVms, workers: row.workers, rule: experiment.rule,
      },
    },
    beforeReplay: (stack) => placeRow(stack, row, seed),
    onStarted: (info) => {
      runId = info.runId;
      options.onRunStart?.({ row, repeat, runId });
    },
    ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
  }).then((outcome) => {
    if (runId === '') runId = outcome.runId;
    return outcome;
  });
}

/**
 * The row's fixed placement: monitor i on VM ⌊i / monitorsPerVm⌋ (VM order vm-1, vm-2, …), spread
 * over that VM's workers in turn; bare rows over the workers in turn. Then the VMs without monitors
 * are paused or shut down when the row says so.
 */
async function placeRow(stack: EmbeddedStack, row: ResolvedRow, seed: number): Promise<void> {
  const info = stack.info;
  if (info === null) throw new ExperimentError('EXPERIMENT_STACK', 'the stack is not started');
  const redis = new Redis(info.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  try {
    const pins: Array<{ monitor: string; worker: string; vm: string; reason: string }> = [];
    if (row.vms === null) {
      const workers = stack.workers.map((worker) => worker.ready?.workerId).filter((id): id is string => id !== undefined);
      if (workers.length === 0) throw new ExperimentError('EXPERIMENT_STACK', 'no workers are up');
      for (let index = 0; index < row.monitors; index++) {
        const worker = workers[index % workers.length] as string;
        pins.push({ monitor: monitorIdFor(seed, index), worker, vm: worker, reason: `experiment row ${row.id}: bare worker ${index % workers.length + 1} of ${workers.length}` });
      }
    } else {
      const vms = (await listVms(redis, stack.keys)).sort((a, b) => vmNumber(a.name) - vmNumber(b.name));
      if (vms.length < row.activeVms) throw new ExperimentError('EXPERIMENT_STACK', `${vms.length} VMs are up, the row needs ${row.activeVms}`);
      for (let index = 0; index < row.monitors; index++) {
        const vm = vms[Math.floor(index / row.monitorsPerVm)] as (typeof vms)[number];
        const onVm = index % row.monitorsPerVm;
        const worker = vm.workers[onVm % vm.workers.length]?.workerId;
        if (worker === undefined) throw new ExperimentError('EXPERIMENT_STACK', `${vm.name} has no workers`);
        pins.push({ monitor: monitorIdFor(seed, index), worker, vm: vm.name, reason: `experiment row ${row.id}: ${row.monitorsPerVm} monitors per VM, ${vm.name} worker ${(onVm % vm.workers.length) + 1}` });
      }
      const driver = stack.vmDriver;
      if (driver === null) throw new ExperimentError('EXPERIMENT_STACK', 'the stack has no VM driver');
      for (const vm of vms.slice(row.activeVms)) {
        if (row.idleVms === 'paused') await driver.pause(vm.name);
        else if (row.idleVms === 'shutdown') await driver.shutdown(vm.name);
      }
    }
    await pinMonitors(redis, stack.keys, pins, Date.now());
  } finally {
    redis.disconnect();
  }
}

function vmNumber(name: string): number {
  const match = /(\d+)$/.exec(name);
  return match === null ? Number.MAX_SAFE_INTEGER : Number(match[1]);
}

/** The run's measured packets: warm-up dropped, each with its block of time, its round trip and the table's metric. */
export function samplesOf(experiment: ResolvedExperiment, outcome: Pick<RunOutcome, 'runId' | 'roundTripLines' | 'records'>): RunSamples {
  const byInvocation = new Map<string, LatencyRecord>();
  for (const record of outcome.records) if (record.status !== 'duplicate') byInvocation.set(record.invocationId, record);
  const warmupMs = experiment.warmupS * 1000;
  const blockMs = experiment.blockS * 1000;
  const samples: Sample[] = [];
  const hypervisors = new Set<string>();
  const drivers = new Set<string>();
  for (const line of outcome.roundTripLines) {
    if (line.dueMs < warmupMs) continue;
    const record = line.invocationId === null ? undefined : byInvocation.get(line.invocationId);
    if (record !== undefined) {
      hypervisors.add(record.hypervisor);
      drivers.add(record.driver);
    }
    let metricMs: number | null;
    switch (experiment.spec.metric) {
      case 'roundTrip':
        metricMs = line.roundTripMs;
        break;
      case 'compute':
        metricMs = record?.computeMs ?? null;
        break;
      case 'write':
        metricMs = record?.writeMs ?? null;
        break;
    }
    samples.push({ block: Math.floor((line.dueMs - warmupMs) / blockMs), roundTripMs: line.roundTripMs, metricMs });
  }
  return { runId: outcome.runId, samples, hypervisors: [...hypervisors], drivers: [...drivers] };
}
