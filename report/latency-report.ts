/**
 * The latency report of a run, in the shape of the reference paper's tables (Ericson & Pallickara,
 * "KVM vs Xen for realtime stream processing"): Mean, Min, Max, SD and % failure per configuration,
 * where a failure is an answer later than the deadline (1 s in the paper), plus percentiles and where
 * the time went (queue wait, compute, storage write).
 */
import { max, mean, min, quantileSorted, sampleStandardDeviation } from 'simple-statistics';
import { HYPERVISOR_KINDS, type HypervisorKind, type LatencyRecord } from '../contracts/invocation.js';
import { moveLatencies, type MoveLatency, type ReportEvent } from './moves.js';

export type LatencyMetric = 'roundTrip' | 'serviceTime';

export interface ReportOptions {
  /** An answer later than this is a failure (default 1000 ms, as in the paper). */
  deadlineMs?: number;
  /**
   * Device-side round trips by invocationId, from the load generator; null = no answer before the
   * client's deadline. When given, the report is on round trips instead of service times.
   */
  clientRoundTrips?: ReadonlyMap<string, number | null>;
  /** Names the run in the report (default: the records' runId when they share one). */
  runId?: string;
  /** The scheduler's events during the run (moves, handovers, interference): listed, and each move's latency before and after. */
  events?: readonly ReportEvent[];
}

export interface MeanP99 {
  mean: number | null;
  p99: number | null;
}

export interface LatencyStats {
  /** Invocations counted (answered or not). */
  n: number;
  /** Those with a value (round trips that got an answer; every one in service-time mode). */
  answered: number;
  mean: number | null;
  min: number | null;
  max: number | null;
  /** Sample standard deviation (null below two values). */
  sd: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Values above the deadline, plus round trips without an answer. */
  misses: number;
  /** misses / n × 100: the paper's "% failure". */
  failurePct: number | null;
  /** Where the time went, from the worker's records of these invocations. */
  queueWaitMs: MeanP99;
  computeMs: MeanP99;
  storageWriteMs: MeanP99;
  serviceTimeMs: MeanP99;
}

export interface LatencyGroup extends LatencyStats {
  /** Stable label of the group, e.g. `kvm`, `kvm/2`, or the worker id. */
  key: string;
  hypervisor?: HypervisorKind;
  collocated?: number;
  workerId?: string;
  vm?: string;
}

export interface LatencyReport {
  runId: string | null;
  metric: LatencyMetric;
  /** What the metric measures, in words. */
  metricDescription: string;
  deadlineMs: number;
  records: {
    total: number;
    processed: number;
    duplicate: number;
    late: number;
    /** Any other status. */
    other: number;
  };
  /** Round-trip mode only: how the client's timings matched the records. */
  roundTrips: {
    given: number;
    /** Matched to a processed record. */
    matched: number;
    /** Processed records the client gave no timing for (left out). */
    processedWithoutRoundTrip: number;
    /** Timings without any record (the packet never completed, or its record is not readable yet): in `overall` only. */
    unattributed: number;
    /** Timings of duplicate or late packets (left out, like their records). */
    ofUncounted: number;
  } | null;
  /** Redis-clock ms of the first and last counted receipt. */
  window: { firstReceivedAt: number; lastReceivedAt: number } | null;
  overall: LatencyStats;
  byHypervisor: LatencyGroup[];
  /** Hypervisor × function instances on the worker (the paper's monitors per VM). */
  byHypervisorCollocated: LatencyGroup[];
  byWorker: LatencyGroup[];
  /** The scheduler's events given (none: empty). */
  events: ReportEvent[];
  /** Each move's monitor: service time before the move, during its handover, after it (report/moves.ts). */
  moves: MoveLatency[];
}

/** One counted invocation: its value (null = no answer) and its record when there is one. */
interface Sample {
  value: number | null;
  record: LatencyRecord | null;
}
type Attributed = Sample & { record: LatencyRecord };

export function buildReport(records: readonly LatencyRecord[], options: ReportOptions = {}): LatencyReport {
  const deadlineMs = options.deadlineMs ?? 1000;
  if (!(deadlineMs > 0) || !Number.isFinite(deadlineMs)) throw new RangeError(`deadlineMs must be a positive number, not ${deadlineMs}`);
  const clientRoundTrips = options.clientRoundTrips;
  const metric: LatencyMetric = clientRoundTrips === undefined ? 'serviceTime' : 'roundTrip';

  const counts = { total: records.length, processed: 0, duplicate: 0, late: 0, other: 0 };
  const processed: LatencyRecord[] = [];
  const uncounted = new Set<string>();
  for (const record of records) {
    if (record.status === 'processed') {
      counts.processed++;
      processed.push(record);
    } else {
      if (record.status === 'duplicate') counts.duplicate++;
      else if (record.status === 'late') counts.late++;
      else counts.other++;
      uncounted.add(record.invocationId);
    }
  }

  const samples: Sample[] = [];
  let roundTrips: LatencyReport['roundTrips'] = null;
  if (clientRoundTrips === undefined) {
    for (const record of processed) samples.push({ value: record.serviceTimeMs, record });
  } else {
    roundTrips = { given: clientRoundTrips.size, matched: 0, processedWithoutRoundTrip: 0, unattributed: 0, ofUncounted: 0 };
    const seen = new Set<string>();
    for (const record of processed) {
      seen.add(record.invocationId);
      const value = clientRoundTrips.get(record.invocationId);
      if (value === undefined) {
        roundTrips.processedWithoutRoundTrip++;
        continue;
      }
      roundTrips.matched++;
      samples.push({ value, record });
    }
    for (const [invocationId, value] of clientRoundTrips) {
      if (seen.has(invocationId)) continue;
      if (uncounted.has(invocationId)) {
        roundTrips.ofUncounted++;
        continue;
      }
      // The user saw this one (or saw nothing): it counts, but no record says where it ran.
      roundTrips.unattributed++;
      samples.push({ value, record: null });
    }
  }

  const attributed = samples.filter((s): s is Attributed => s.record !== null);
  const hypervisorOrder = (kind: HypervisorKind) => HYPERVISOR_KINDS.indexOf(kind);
  const byHypervisor = groupBy(attributed, (s) => s.record.hypervisor)
    .sort(([a], [b]) => hypervisorOrder(a) - hypervisorOrder(b))
    .map(([hypervisor, group]): LatencyGroup => ({ key: hypervisor, hypervisor, ...stats(group, deadlineMs) }));
  const byHypervisorCollocated = groupBy(attributed, (s) => `${s.record.hypervisor}/${s.record.collocated}`)
    .map(([key, group]) => ({ key, group, first: firstRecord(group) }))
    .sort((a, b) => hypervisorOrder(a.first.hypervisor) - hypervisorOrder(b.first.hypervisor) || a.first.collocated - b.first.collocated)
    .map(({ key, group, first }): LatencyGroup => ({ key, hypervisor: first.hypervisor, collocated: first.collocated, ...stats(group, deadlineMs) }));
  const byWorker = groupBy(attributed, (s) => s.record.workerId)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([workerId, group]): LatencyGroup => {
      const first = firstRecord(group);
      return { key: workerId, workerId, vm: first.vm, hypervisor: first.hypervisor, ...stats(group, deadlineMs) };
    });

  let window: LatencyReport['window'] = null;
  for (const { record } of attributed) {
    window = window === null
      ? { firstReceivedAt: record.receivedAt, lastReceivedAt: record.receivedAt }
      : { firstReceivedAt: Math.min(window.firstReceivedAt, record.receivedAt), lastReceivedAt: Math.max(window.lastReceivedAt, record.receivedAt) };
  }

  const runIds = new Set(records.map((r) => r.runId));
  return {
    runId: options.runId ?? (runIds.size === 1 ? [...runIds][0] ?? null : null),
    metric,
    metricDescription: metric === 'roundTrip'
      ? 'round trip: device send to device receipt, measured by the load generator'
      : 'service time: gateway receipt to result published (Redis clock)',
    deadlineMs,
    records: counts,
    roundTrips,
    window,
    overall: stats(samples, deadlineMs),
    byHypervisor,
    byHypervisorCollocated,
    byWorker,
    events: [...(options.events ?? [])],
    moves: moveLatencies(records, options.events ?? [], deadlineMs),
  };
}

// Groups are never empty.
const firstRecord = (group: readonly Attributed[]): LatencyRecord => (group[0] as Attributed).record;

function groupBy<T, K>(items: readonly T[], keyOf: (item: T) => K): Array<[K, T[]]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    let group = groups.get(key);
    if (group === undefined) groups.set(key, (group = []));
    group.push(item);
  }
  return [...groups];
}

function stats(samples: readonly Sample[], deadlineMs: number): LatencyStats {
  const values: number[] = [];
  let misses = 0;
  for (const { value } of samples) {
    if (value === null) misses++;
    else {
      values.push(value);
      if (value > deadlineMs) misses++;
    }
  }
  values.sort((a, b) => a - b);
  const some = values.length > 0;
  const records = samples.flatMap((s) => (s.record === null ? [] : [s.record]));
  return {
    n: samples.length,
    answered: values.length,
    mean: some ? mean(values) : null,
    min: some ? min(values) : null,
    max: some ? max(values) : null,
    sd: values.length >= 2 ? sampleStandardDeviation(values) : null,
    p50: some ? quantileSorted(values, 0.5) : null,
    p95: some ? quantileSorted(values, 0.95) : null,
    p99: some ? quantileSorted(values, 0.99) : null,
    misses,
    failurePct: samples.length > 0 ? (misses / samples.length) * 100 : null,
    queueWaitMs: meanP99(records.map((r) => r.queueWaitMs)),
    computeMs: meanP99(records.map((r) => r.computeMs)),
    storageWriteMs: meanP99(records.map((r) => r.storageWriteMs)),
    serviceTimeMs: meanP99(records.map((r) => r.serviceTimeMs)),
  };
}

function meanP99(values: number[]): MeanP99 {
  if (values.length === 0) return { mean: null, p99: null };
  values.sort((a, b) => a - b);
  return { mean: mean(values), p99: quantileSorted(values, 0.99) };
}
