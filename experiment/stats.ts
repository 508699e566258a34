/**
 * The statistics of an experiment, pure and seeded (the same data and seed give the same numbers).
 *
 * The unit. Round trips within a run are not independent: a slow packet holds up the next ones in
 * its queue, a noisy neighbour slows a stretch of seconds, and a run carries its own luck (start-up,
 * the machine's other load). Resampling single round trips would treat 1,000 correlated values as
 * 1,000 independent ones and give intervals far too narrow. So the unit is a block of time
 * (`blockS` seconds of one run, longer than a queue's memory at these loads) nested in its run:
 * - intervals come from a two-stage (hierarchical) bootstrap: draw runs with replacement, then
 *   blocks with replacement within each drawn run, and pool their values (Davison & Hinkley 1997,
 *   §3.8; Saravanan et al. 2020 for the same scheme on nested data); with one run it is a plain
 *   block bootstrap;
 * - two rows are compared by a permutation test on block means (exact when there are few blocks,
 *   else Monte Carlo), with Cliff's delta on the same block means as the effect size and Holm's
 *   correction across all pairs; the test on run means is given beside it (`pRuns`): it respects
 *   the nesting but with 5 runs a side cannot go below p = 0.008.
 *
 * Bimodality: Sarle's bimodality coefficient BC = (g1² + 1) / (g2 + 3(n−1)²/((n−2)(n−3))), with the
 * sample skewness g1 and excess kurtosis g2 (bias-corrected, as SAS and scipy's bias=False), flagged
 * above 5/9 (the value for a uniform distribution; Pfister et al. 2013). It is a screen, not a
 * test: a very skewed unimodal distribution can pass it, so the figures show the densities.
 *
 * Quantiles are simple-statistics' (linear interpolation: R type 7, numpy's default), as in `ecgfaas report`.
 */
import { mean, quantileSorted, sampleKurtosis, sampleSkewness, sampleStandardDeviation } from 'simple-statistics';
import { mulberry32 } from '../functions/model/mlp.js';

/** Values of one row: runs, each a list of blocks, each a list of values. */
export type Nested = number[][][];

export interface Describe {
  n: number;
  mean: number | null;
  min: number | null;
  max: number | null;
  sd: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export function describe(values: readonly number[]): Describe {
  if (values.length === 0) return { n: 0, mean: null, min: null, max: null, sd: null, p50: null, p95: null, p99: null };
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    mean: mean(sorted),
    min: sorted[0] as number,
    max: sorted.at(-1) as number,
    sd: sorted.length > 1 ? sampleStandardDeviation(sorted) : null,
    p50: quantileSorted(sorted, 0.5),
    p95: quantileSorted(sorted, 0.95),
    p99: quantileSorted(sorted, 0.99),
  };
}

export function p99(values: readonly number[]): number {
  return quantileSorted([...values].sort((a, b) => a - b), 0.99);
}

export function meanOf(values: readonly number[]): number {
  return mean(values as number[]);
}

export interface BootstrapOptions {
  /** Resamples (default 2,000). */
  iterations?: number;
  seed?: number;
  /** Coverage (default 0.95). */
  level?: number;
}

/**
 * Percentile interval of `statistic` over the pooled values, by the two-stage bootstrap described
 * above (runs, then blocks within runs). Null when there are no values.
 */
export function nestedBootstrap(data: Nested, statistic: (values: number[]) => number, options: BootstrapOptions = {}): [number, number] | null {
  const runs = data.map((run) => run.filter((block) => block.length > 0)).filter((run) => run.length > 0);
  if (runs.length === 0) return null;
  const iterations = options.iterations ?? 2000;
  const level = options.level ?? 0.95;
  const random = mulberry32(options.seed ?? 1);
  const pick = (length: number) => Math.floor(random() * length);
  const estimates = new Float64Array(iterations);
  const pooled: number[] = [];
  for (let iteration = 0; iteration < iterations; iteration++) {
    pooled.length = 0;
    for (let r = 0; r < runs.length; r++) {
      const run = runs[pick(runs.length)] as number[][];
      for (let b = 0; b < run.length; b++) {
        const block = run[pick(run.length)] as number[];
        for (const value of block) pooled.push(value);
      }
    }
    estimates[iteration] = statistic(pooled);
  }
  return percentileInterval(estimates, level);
}

/** The (1−level)/2 and (1+level)/2 quantiles of the estimates (linear interpolation, as numpy's default and scipy's percentile bootstrap). */
export function percentileInterval(estimates: Float64Array | number[], level = 0.95): [number, number] {
  const sorted = Float64Array.from(estimates).sort();
  const at = (q: number) => {
    const position = q * (sorted.length - 1);
    const low = Math.floor(position);
    const high = Math.min(low + 1, sorted.length - 1);
    return (sorted[low] as number) + ((sorted[high] as number) - (sorted[low] as number)) * (position - low);
  };
  return [at((1 - level) / 2), at((1 + level) / 2)];
}

export interface PermutationOptions {
  /** Monte Carlo resamples when exact enumeration would take more than `exactLimit` (default 20,000 each). */
  iterations?: number;
  exactLimit?: number;
  seed?: number;
}

export interface PermutationResult {
  /** mean(a) − mean(b). */
  statistic: number;
  /** Two-sided: twice the smaller one-sided p, at most 1 (as scipy.stats.permutation_test). */
  p: number;
  exact: boolean;
  permutations: number;
}

/**
 * Permutation test of equal means between two samples of units (here block or run means): the
 * labels are exchanged between the units. Exact over every split when C(na+nb, na) ≤ exactLimit,
 * else `iterations` random splits with p = (hits + 1) / (iterations + 1), which is never 0.
 */
export function permutationTest(a: readonly number[], b: readonly number[], options: PermutationOptions = {}): PermutationResult {
  if (a.length === 0 || b.length === 0) throw new RangeError('permutationTest needs units on both sides');
  const all = [...a, ...b];
  const total = all.reduce((sum, value) => sum + value, 0);
  const na = a.length;
  const nb = b.length;
  const observed = meanOf(a) - meanOf(b);
  const statisticOf = (sumA: number) => sumA / na - (total - sumA) / nb;
  // Float noise must not decide ties with the observed split.
  const tolerance = 1e-9 * Math.max(1, Math.abs(observed));
  const limit = options.exactLimit ?? 20_000;
  const splits = binomial(na + nb, na);
  let lessOrEqual = 0;
  let greaterOrEqual = 0;
  let count = 0;
  const tally = (statistic: number) => {
    if (statistic <= observed + tolerance) lessOrEqual++;
    if (statistic >= observed - tolerance) greaterOrEqual++;
    count++;
  };
  if (splits <= limit) {
    // Every subset of na indices as group a.
    const chosen: number[] = [];
    const walk = (start: number, sum: number) => {
      if (chosen.length === na) {
        tally(statisticOf(sum));
        return;
      }
      for (let index = start; index <= all.length - (na - chosen.length); index++) {
        chosen.push(index);
        walk(index + 1, sum + (all[index] as number));
        chosen.pop();
      }
    };
    walk(0, 0);
    return { statistic: observed, p: Math.min(1, (2 * Math.min(lessOrEqual, greaterOrEqual)) / count), exact: true, permutations: count };
  }
  const iterations = options.iterations ?? 20_000;
  const random = mulberry32(options.seed ?? 1);
  const shuffled = [...all];
  for (let iteration = 0; iteration < iterations; iteration++) {
    // A partial Fisher-Yates: the first na places are a uniform random subset.
    let sumA = 0;
    for (let i = 0; i < na; i++) {
      const j = i + Math.floor(random() * (shuffled.length - i));
      const swap = shuffled[i] as number;
      shuffled[i] = shuffled[j] as number;
      shuffled[j] = swap;
      sumA += shuffled[i] as number;
    }
    tally(statisticOf(sumA));
  }
  const p = Math.min(1, (2 * (Math.min(lessOrEqual, greaterOrEqual) + 1)) / (iterations + 1));
  return { statistic: observed, p, exact: false, permutations: iterations };
}

function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 1; i <= k; i++) {
    result = (result * (n - k + i)) / i;
    if (result > Number.MAX_SAFE_INTEGER) return Number.POSITIVE_INFINITY;
  }
  return Math.round(result);
}

/** Holm's step-down adjustment (Holm 1979), as R's p.adjust(p, "holm"): pmin(1, cummax((m − i + 1) · p₍ᵢ₎)), in the input's order. */
export function holm(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, index) => ({ p, index })).sort((x, y) => x.p - y.p || x.index - y.index);
  const adjusted = new Array<number>(m);
  let running = 0;
  order.forEach(({ p, index }, rank) => {
    running = Math.max(running, (m - rank) * p);
    adjusted[index] = Math.min(1, running);
  });
  return adjusted;
}

/**
 * Cliff's delta: P(a > b) − P(a < b) over all pairs, in [−1, 1] (0: neither tends to be larger).
 * Equal to 2U/(na·nb) − 1 with the Mann-Whitney U of a (ties counted as one half).
 */
export function cliffsDelta(a: readonly number[], b: readonly number[]): number {
  if (a.length === 0 || b.length === 0) return Number.NaN;
  const sorted = [...b].sort((x, y) => x - y);
  let dominance = 0;
  for (const value of a) {
    dominance += lowerBound(sorted, value) - (sorted.length - upperBound(sorted, value));
  }
  return dominance / (a.length * b.length);
}

/** Index of the first element >= value. */
function lowerBound(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sorted[middle] as number) < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Index of the first element > value. */
function upperBound(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sorted[middle] as number) <= value) low = middle + 1;
    else high = middle;
  }
  return low;
}

export const BIMODALITY_THRESHOLD = 5 / 9;

export interface Bimodality {
  /** Sarle's bimodality coefficient (null below 4 values or with no spread). */
  coefficient: number | null;
  threshold: number;
  bimodal: boolean;
}

/** The bimodality coefficient and its flag (see the file comment). */
export function bimodality(values: readonly number[]): Bimodality {
  const n = values.length;
  if (n < 4) return { coefficient: null, threshold: BIMODALITY_THRESHOLD, bimodal: false };
  const sd = sampleStandardDeviation(values as number[]);
  if (!(sd > 0)) return { coefficient: null, threshold: BIMODALITY_THRESHOLD, bimodal: false };
  const skew = sampleSkewness(values as number[]);
  const kurtosis = sampleKurtosis(values as number[]);
  const coefficient = (skew ** 2 + 1) / (kurtosis + (3 * (n - 1) ** 2) / ((n - 2) * (n - 3)));
  return { coefficient, threshold: BIMODALITY_THRESHOLD, bimodal: coefficient > BIMODALITY_THRESHOLD };
}
