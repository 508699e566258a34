/**
 * From the runs of an experiment to its table: per row the metric's and the round trip's Mean, Min,
 * Max, SD, percentiles and bootstrap intervals, % failure and a bimodality flag; per pair of rows a
 * permutation test with Holm's correction and an effect size (experiment/stats.ts says why the unit
 * is a block of time within a run). Pure: the runner gathers samples, this turns them into numbers.
 */
import type { Metric } from './spec.js';
import {
  bimodality, cliffsDelta, describe, holm, meanOf, nestedBootstrap, p99, permutationTest, type Describe, type Nested,
} from './stats.js';

/** One measured packet of a run (warm-up already dropped). */
export interface Sample {
  /** Block of time within its run (0-based). */
  block: number;
  /** The device's round trip (ms), or null: no answer. */
  roundTripMs: number | null;
  /** The table's metric for this packet (ms), or null when it has none (no answer, no write). */
  metricMs: number | null;
}

/** What happened to a run's packets (the load generator's counts and the records'). */
export interface Delivery {
  sent: number;
  /** 2xx answers (a result, or 202: queued). */
  accepted: number;
  processed: number;
  /** Accepted but not processed before the run was torn down (a backlog the drain could not clear). */
  lost: number;
  /** Refused or a transport error. */
  failed: number;
  /** No answer before the replay ended. */
  unanswered: number;
  errorCodes: Record<string, number>;
}

export interface RunSamples {
  runId: string;
  samples: Sample[];
  delivery?: Delivery;
  hypervisors: string[];
  drivers: string[];
}

export interface RowRuns {
  row: string;
  label: string;
  approach: string;
  paperRow: string | null;
  vms: { count: number; vcpus: number; memoryMb: number; workersPerVm: number; active: number; confined: boolean | null } | null;
  workers: number | null;
  monitors: number;
  idleVms: string | null;
  runs: RunSamples[];
}

export interface MetricSummary extends Omit<Describe, 'n'> {
  meanCi95: [number, number] | null;
  p99Ci95: [number, number] | null;
}

export interface RowSummary {
  row: string;
  label: string;
  approach: string;
  paperRow: string | null;
  /** What the workers detected (a local VM here detects kvm: this host is itself a KVM guest). */
  hypervisor: string;
  driver: string;
  vms: RowRuns['vms'];
  workers: number | null;
  monitors: number;
  idleVms: string | null;
  repeats: number;
  runs: string[];
  /** Values of the metric. */
  n: number;
  metricMs: MetricSummary;
  roundTripMs: MetricSummary;
  /** 100 × (round trips over the deadline or unanswered) / packets. */
  failurePct: number | null;
  packets: number;
  bimodal: boolean;
  bimodalityCoefficient: number | null;
  /** The runs' packets in all (warm-up included). */
  delivery: Delivery;
  /** Each run on its own: how much the runs differ (the paper ran each configuration once). */
  perRun: Array<{ runId: string; n: number; mean: number | null; p99: number | null; failurePct: number | null }>;
}

export interface Comparison {
  a: string;
  b: string;
  test: string;
  /** Two-sided permutation p on block means. */
  p: number;
  /** Holm-adjusted across every pair of the table. */
  pAdjusted: number;
  /** Cliff's delta of a's block means over b's (−1..1; > 0: a tends to be slower). */
  effect: number;
  effectName: string;
  /** mean(a) − mean(b) of the metric (ms). */
  meanDiffMs: number;
  /** The same test on run means (exact): respects the nesting, coarse with few runs. */
  pRuns: number | null;
  blocks: [number, number];
}

export interface AnalysisOptions {
  metric: Metric;
  deadlineMs: number;
  seed?: number;
  bootstrapIterations?: number;
}

/** The metric's values of a row, nested as runs → blocks → values. */
export function nestedValues(rows: RowRuns, pick: (sample: Sample) => number | null): Nested {
  return rows.runs.map((run) => {
    const blocks: number[][] = [];
    for (const sample of run.samples) {
      const value = pick(sample);
      if (value === null) continue;
      (blocks[sample.block] ??= []).push(value);
    }
    return blocks.filter((block) => block !== undefined);
  });
}

function summarise(nested: Nested, options: AnalysisOptions, seed: number): MetricSummary {
  const values = nested.flat(2);
  const stats = describe(values);
  const { n: _n, ...rest } = stats;
  const iterations = options.bootstrapIterations ?? 2000;
  return {
    ...rest,
    meanCi95: values.length === 0 ? null : nestedBootstrap(nested, meanOf, { iterations, seed }),
    p99Ci95: values.length === 0 ? null : nestedBootstrap(nested, p99, { iterations, seed: seed + 1 }),
  };
}

export function summariseRow(rows: RowRuns, options: AnalysisOptions, index = 0): RowSummary {
  const seed = (options.seed ?? 1) + 17 * index;
  const metric = nestedValues(rows, (sample) => sample.metricMs);
  const roundTrip = nestedValues(rows, (sample) => sample.roundTripMs);
  const samples = rows.runs.flatMap((run) => run.samples);
  const misses = samples.filter((sample) => sample.roundTripMs === null || sample.roundTripMs > options.deadlineMs).length;
  const metricValues = metric.flat(2);
  const shape = bimodality(metricValues);
  const unique = (values: string[]) => [...new Set(values)].sort().join(',') || 'unknown';
  return {
    row: rows.row, label: rows.label, approach: rows.approach, paperRow: rows.paperRow,
    hypervisor: unique(rows.runs.flatMap((run) => run.hypervisors)),
    driver: unique(rows.runs.flatMap((run) => run.drivers)),
    vms: rows.vms, workers: rows.workers, monitors: rows.monitors, idleVms: rows.idleVms,
    repeats: rows.runs.length, runs: rows.runs.map((run) => run.runId),
    n: metricValues.length,
    metricMs: summarise(metric, options, seed),
    roundTripMs: options.metric === 'roundTrip' ? summarise(metric, options, seed) : summarise(roundTrip, options, seed + 7),
    failurePct: samples.length === 0 ? null : (100 * misses) / samples.length,
    packets: samples.length,
    bimodal: shape.bimodal,
    bimodalityCoefficient: shape.coefficient,
    delivery: sumDelivery(rows.runs.flatMap((run) => (run.delivery === undefined ? [] : [run.delivery]))),
    perRun: rows.runs.map((run) => {
      const values = run.samples.map((sample) => sample.metricMs).filter((value): value is number => value !== null);
      const stats = describe(values);
      const missed = run.samples.filter((sample) => sample.roundTripMs === null || sample.roundTripMs > options.deadlineMs).length;
      return { runId: run.runId, n: stats.n, mean: stats.mean, p99: stats.p99, failurePct: run.samples.length === 0 ? null : (100 * missed) / run.samples.length };
    }),
  };
}

function sumDelivery(deliveries: readonly Delivery[]): Delivery {
  const total: Delivery = { sent: 0, accepted: 0, processed: 0, lost: 0, failed: 0, unanswered: 0, errorCodes: {} };
  for (const each of deliveries) {
    for (const key of ['sent', 'accepted', 'processed', 'lost', 'failed', 'unanswered'] as const) total[key] += each[key];
    for (const [code, count] of Object.entries(each.errorCodes)) total.errorCodes[code] = (total.errorCodes[code] ?? 0) + count;
  }
  return total;
}

/** Every pair of rows with values, in table order, tested on block means; Holm across the pairs. */
export function compareRows(rows: readonly RowRuns[], options: AnalysisOptions): Comparison[] {
  const withValues = rows.map((row) => ({ row, nested: nestedValues(row, (sample) => sample.metricMs) })).filter(({ nested }) => nested.flat(2).length > 0);
  const raw: Array<Omit<Comparison, 'pAdjusted'>> = [];
  for (let i = 0; i < withValues.length; i++) {
    for (let j = i + 1; j < withValues.length; j++) {
      const a = withValues[i] as (typeof withValues)[number];
      const b = withValues[j] as (typeof withValues)[number];
      const blockMeans = (nested: Nested) => nested.flatMap((run) => run.map((block) => meanOf(block)));
      const runMeans = (nested: Nested) => nested.filter((run) => run.length > 0).map((run) => meanOf(run.flat()));
      const blocksA = blockMeans(a.nested);
      const blocksB = blockMeans(b.nested);
      const test = permutationTest(blocksA, blocksB, { seed: (options.seed ?? 1) + i * 31 + j });
      const runsA = runMeans(a.nested);
      const runsB = runMeans(b.nested);
      raw.push({
        a: a.row.row, b: b.row.row,
        test: `permutation test of equal means on block means (${test.exact ? 'exact' : `${test.permutations} random permutations`}); Holm across ${'pairs'}`,
        p: test.p,
        effect: cliffsDelta(blocksA, blocksB),
        effectName: 'Cliff\'s delta on block means',
        meanDiffMs: meanOf(a.nested.flat(2)) - meanOf(b.nested.flat(2)),
        pRuns: runsA.length >= 2 && runsB.length >= 2 ? permutationTest(runsA, runsB, { seed: 99 }).p : null,
        blocks: [blocksA.length, blocksB.length],
      });
    }
  }
  const adjusted = holm(raw.map((comparison) => comparison.p));
  return raw.map((comparison, index) => ({ ...comparison, test: comparison.test.replace('pairs', `${raw.length} pairs`), pAdjusted: adjusted[index] as number }));
}
