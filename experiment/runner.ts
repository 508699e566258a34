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
import { randomBytes } from 'node:crypto';
import { cpus, hostname, release, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import { Redis } from 'ioredis';
import type { LatencyRecord } from '../contracts/invocation.js';
import { asSeenFromGuest, DeployError, ensureInitrd, LibvirtDriver, newestKernel, type GuestHypervisor } from '../deploy/libvirt/index.js';
import { detectCgroups } from '../deploy/cgroups.js';
import { listVms, type DeployDriver } from '../deploy/vms.js';
import { monitorIdFor, type ReplayProgress } from '../replay/index.js';
import { pinMonitors } from '../scheduler/index.js';
import type { EmbeddedStack } from '../stack/index.js';
import { runOnStack, type RunOutcome } from '../stack/run.js';
import { CpuWork } from '../worker/cpu-work.js';
import { compareRows, summariseRow, type Comparison, type RowRuns, type RowSummary, type RunSamples, type Sample } from './analysis.js';
import { approachSupport, defaultConnect } from './capabilities.js';
import { ExperimentError } from './errors.js';
import { type ResolvedExperiment, type ResolvedRow } from './spec.js';

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
  /** How libvirt rows (qemu, kvm, xen-pv, xen-hvm) make their guests (as `ecgfaas deploy --driver libvirt`). */
  guests?: GuestOptions;
}

export interface GuestOptions {
  /** libvirt URI (default qemu:///system; xen:///system for Xen rows). */
  connect?: string;
  /** The guests' root image (`ecgfaas image build`); default: the host's root over 9p (KVM, QEMU). Xen needs one. */
  disk?: string;
  /** A host bridge for the guests (default: QEMU user networking; Xen: xenbr0). */
  bridge?: string;
  /** user, dhcp or static:... (see `deploy --guest-net`). */
  guestNet?: string;
  /** Redis and S3 as bridged guests reach them (the run's own stack must then listen there: give REDIS_URL and ECGFAAS_S3_ENDPOINT). */
  guestRedis?: string;
  guestS3Endpoint?: string;
  /** Default 600 s (QEMU emulation boots slowly). */
  bootTimeoutS?: number;
  /** Guests booting at once (default 2). */
  bootConcurrency?: number;
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
  machine: { host: string; cpus: number; cpuModel: string; memoryMb: number; kernel: string; cgroups: string | null; node: string };
  startedAt: string;
  finishedAt: string;
  /** The raw samples per row and run (for figures); not printed by --json. */
  samples: RowRuns[];
}

/**
 * Key prefix of an experiment run, new for each: its keys never meet another run's in a shared
 * Redis, nor its local VMs' cgroups (`<prefix>.<vm>`) a deployment's.
 */
export const KEY_PREFIX = 'ecgfaas-xp';
/** The checkout, which KVM and QEMU guests see through the host's root over 9p. */
const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runKeyPrefix = () => `${KEY_PREFIX}-${randomBytes(3).toString('hex')}`;

export async function runExperiment(experiment: ResolvedExperiment, options: RunExperimentOptions): Promise<ExperimentResult> {
  const startedAt = new Date().toISOString();
  const iterationsPerMs = options.iterationsPerMs ?? new CpuWork().iterationsPerMs;
  const iterations = Math.max(0, Math.round(experiment.costMs * iterationsPerMs));
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const measured: RowRuns[] = [];
  const records = options.records ?? (experiment.spec.load.records === 'all' || experiment.spec.load.records === undefined ? undefined : experiment.spec.load.records);
  for (const row of experiment.rows) {
    const support = await approachSupport(row.approach, options.guests?.connect);
    if (!support.ok) {
      skipped.push({ row: row.id, approach: row.approach, reason: support.reason });
      continue;
    }
    if (support.note !== undefined) notes.push(`${row.id}: ${support.note}`);
    const runs: RunSamples[] = [];
    for (let repeat = 1; repeat <= experiment.repeats; repeat++) {
      if (options.signal?.aborted) throw new ExperimentError('EXPERIMENT_ABORTED', 'stopped (signal) before every run was done; finished runs are in the store');
      const outcome = await runRow(experiment, row, repeat, { ...options, records, iterations });
      runs.push({
        ...samplesOf(experiment, outcome),
        delivery: {
          sent: outcome.packets.sent, accepted: outcome.packets.accepted, processed: outcome.packets.processed, lost: outcome.packets.lost,
          failed: outcome.packets.failed, unanswered: outcome.replay.packets.unanswered, errorCodes: outcome.replay.errorCodes,
        },
      });
      options.onRunDone?.({ row, repeat, runId: outcome.runId, outcome });
      if (outcome.packets.lost > 0) notes.push(`${outcome.runId}: ${outcome.packets.lost} accepted packets were not processed before the run was torn down (a backlog the drain did not clear)`);
      if (outcome.packets.failed > 0) notes.push(`${outcome.runId}: ${outcome.packets.failed} packets refused or failed (${Object.entries(outcome.replay.errorCodes).map(([code, count]) => `${code} ${count}`).join(', ')})`);
      if (outcome.replay.packets.unanswered > 0) notes.push(`${outcome.runId}: ${outcome.replay.packets.unanswered} packets unanswered when the replay ended`);
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
    machine: {
      host: hostname(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMb: Math.round(totalmem() / 2 ** 20), kernel: release(),
      cgroups: detectCgroups(), node: process.version,
    },
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
  const keyPrefix = runKeyPrefix();
  // The gateway holds an answer this long (then 202: queued): late answers up to 5 packet periods
  // are still timed, as the paper timed answers past its deadline; later ones count as failures.
  const waitTimeoutMs = Math.max(2000, 5 * experiment.deadlineMs);
  let runId = '';
  let guests: LibvirtDriver | null = null;
  const closeGuests = async () => {
    const driver = guests;
    guests = null;
    await driver?.close();
  };
  return runOnStack({
    stack: {
      dir: options.store, keyPrefix, workers: row.approach === 'bare' ? row.workers : 0,
      extraComputeMs: Math.round(experiment.costMs), extraComputeIterations: options.iterations,
      storeEpisodes: experiment.spec.load.episodes,
      // The gateway's per-monitor limit must let time-compressed monitors through.
      monitorRatePerSecond: Math.max(5, 2 * k),
      waitTimeoutMs,
      ...(row.approach === 'local' && row.vms !== null
        ? { vms: { count: row.vms.count, vcpus: row.vms.vcpus, memoryMb: row.vms.memoryMb, workersPerVm: row.workersPerVm }, scaleOut: false }
        : {}),
    },
    logger: options.logger, monitors: row.monitors, durationS: experiment.packetsPerMonitor, packetPeriodMs: experiment.packetPeriodMs,
    // Each request may be held up to the gateway's wait: enough connections that sends never queue in the client.
    connections: Math.min(256, row.monitors * (Math.ceil((k * waitTimeoutMs) / 1000) + 2)),
    // The last packets' answers may take as long as the gateway holds them.
    replayDrainMs: waitTimeoutMs + 500,
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
    beforeReplay: async (stack) => {
      if (row.approach === 'local' || row.approach === 'bare') {
        await placeRow(stack, row, seed, stack.vmDriver);
        return;
      }
      guests = await libvirtDriver(stack, row, keyPrefix, options);
      await bootGuests(guests, row, options.guests?.bootConcurrency ?? 2, options.signal);
      await placeRow(stack, row, seed, guests);
    },
    // The guests' workers stop through Redis and flush their latency records before they are read.
    beforeStop: closeGuests,
    // After a failure too, while the stack's Redis is still up: nothing is left defined or running.
    cleanup: closeGuests,
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

/** The libvirt driver of a row's guests, deployed on the run's stack (as `ecgfaas deploy --driver libvirt` does). */
async function libvirtDriver(stack: EmbeddedStack, row: ResolvedRow, keyPrefix: string, options: RunExperimentOptions): Promise<LibvirtDriver> {
  const info = stack.info;
  if (info === null) throw new ExperimentError('EXPERIMENT_STACK', 'the stack is not started');
  const hypervisor = row.approach as GuestHypervisor;
  const xen = hypervisor.startsWith('xen');
  const guests = options.guests ?? {};
  const bridged = xen || guests.bridge !== undefined;
  if (bridged && (guests.guestRedis === undefined || (info.embeddedS3 && guests.guestS3Endpoint === undefined))) {
    throw new ExperimentError('EXPERIMENT_BAD_OPTION', `${row.id}: guests on a bridge reach Redis and S3 at addresses of the host's network: give --guest-redis and --guest-s3-endpoint (and REDIS_URL, ECGFAAS_S3_ENDPOINT for the stack to use)`);
  }
  const found = await newestKernel();
  if (found === null) throw new ExperimentError('EXPERIMENT_STACK', 'no kernel in /boot to boot guests with');
  // One initramfs for every run, rebuilt when its sources or the kernel change.
  const initrd = await ensureInitrd(path.resolve(options.store, 'guest', 'initrd.img'), found.version);
  const stateDir = path.resolve(options.store, 'guest', 'experiments');
  const redis = new Redis(info.redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  const driver = new LibvirtDriver({
    redis, keys: stack.keys, connect: guests.connect ?? defaultConnect(row.approach), hypervisor,
    guestRedisUrl: guests.guestRedis ?? asSeenFromGuest(info.redisUrl),
    guestS3: { ...info.s3, ...(info.s3.endpoint !== undefined ? { endpoint: guests.guestS3Endpoint ?? asSeenFromGuest(info.s3.endpoint) } : {}) },
    kernel: found.kernel, initrd, checkout: PACKAGE_ROOT, stateDir,
    workerArgs: ['--prefix', keyPrefix, '--model', 'default', ...stack.functionArgs()],
    bootTimeoutMs: (guests.bootTimeoutS ?? 600) * 1000,
    ...(guests.disk !== undefined ? { rootImage: path.resolve(guests.disk) } : {}),
    ...(guests.guestNet !== undefined ? { net: guests.guestNet } : {}),
    ...(guests.bridge !== undefined ? { network: { kind: 'bridge' as const, name: guests.bridge } } : {}),
  });
  // The driver's Redis connection ends with it.
  const close = driver.close.bind(driver);
  driver.close = async () => {
    try {
      await close();
    } finally {
      redis.disconnect();
    }
  };
  return driver;
}

/** Creates the row's guests (vm-1..vm-N) and boots them a few at a time; one that does not come up fails the run (all are torn down by the driver's close). */
async function bootGuests(driver: LibvirtDriver, row: ResolvedRow, concurrency: number, signal?: AbortSignal): Promise<void> {
  if (row.vms === null) return;
  const names = Array.from({ length: row.vms.count }, (_, index) => `vm-${index + 1}`);
  for (const name of names) await driver.create({ name, vcpus: row.vms.vcpus, memoryMb: row.vms.memoryMb });
  const limit = pLimit(concurrency);
  const onAbort = () => {
    limit.clearQueue();
    void driver.close();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const results = await Promise.allSettled(names.map((name) => limit(() => driver.start(name))));
    const failures = results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).message] : []));
    if (signal?.aborted) throw new ExperimentError('EXPERIMENT_ABORTED', 'stopped (signal) while the guests booted');
    if (failures.length > 0) throw new DeployError('DEPLOY_BOOT_FAILED', `${failures.length} of ${names.length} guests of row ${row.id} did not come up:\n${failures.join('\n')}`);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The row's fixed placement: monitor i on VM ⌊i / monitorsPerVm⌋ (VM order vm-1, vm-2, …), spread
 * over that VM's workers in turn; bare rows over the workers in turn. Then the VMs without monitors
 * are paused or shut down when the row says so.
 */
async function placeRow(stack: EmbeddedStack, row: ResolvedRow, seed: number, driver: DeployDriver | null): Promise<void> {
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
      if (driver === null) throw new ExperimentError('EXPERIMENT_STACK', 'the row has no VM driver');
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
