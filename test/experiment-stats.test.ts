/**
 * experiment/stats.ts against values computed independently: numpy and scipy on fixed data
 * (test/fixtures/stats-reference.json, written by experiments/stats-reference.py; its `source`
 * names the versions), and Holm's adjustment on the worked example of the Wikipedia article
 * "Holm–Bonferroni method" (p = 0.01, 0.04, 0.03, 0.005), adjusted as R's p.adjust(p, "holm") does.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe as group, expect, it } from 'vitest';
import { bimodality, cliffsDelta, describe, holm, meanOf, nestedBootstrap, p99, percentileInterval, permutationTest } from '../experiment/stats.js';

interface Reference {
  source: string;
  unimodal: { values: number[]; quantiles: Record<string, number>; bc: number; skew: number; kurtosis: number };
  bimodal: { values: number[]; quantiles: Record<string, number>; bc: number };
  runMeans: Record<'a' | 'b' | 'c' | 'd', number[]>;
  permutation: Record<'ab' | 'cd' | 'ac', number>;
  cliff: { unimodal_bimodal: number; ab: number };
  blocks: number[][];
  bootstrap: { meanCi95: [number, number]; p99Ci95: [number, number] };
}

const here = path.dirname(fileURLToPath(import.meta.url));
const reference = JSON.parse(readFileSync(path.join(here, 'fixtures', 'stats-reference.json'), 'utf8')) as Reference;

group('experiment statistics against numpy/scipy (' + reference.source + ')', () => {
  it('quantiles are numpy\'s default (linear, R type 7), as the latency report\'s', () => {
    for (const sample of [reference.unimodal, reference.bimodal]) {
      const stats = describe(sample.values);
      expect(stats.p50).toBeCloseTo(sample.quantiles['0.5'] as number, 9);
      expect(stats.p95).toBeCloseTo(sample.quantiles['0.95'] as number, 9);
      expect(stats.p99).toBeCloseTo(sample.quantiles['0.99'] as number, 9);
      expect(stats.n).toBe(sample.values.length);
    }
  });

  it('the bimodality coefficient matches scipy\'s bias-corrected moments, and flags the two-mode mixture only', () => {
    const unimodal = bimodality(reference.unimodal.values);
    const bimodal = bimodality(reference.bimodal.values);
    expect(unimodal.coefficient).toBeCloseTo(reference.unimodal.bc, 9);
    expect(bimodal.coefficient).toBeCloseTo(reference.bimodal.bc, 9);
    expect(unimodal.bimodal).toBe(false);
    expect(bimodal.bimodal).toBe(true);
    expect(bimodality([1, 2, 3]).coefficient).toBeNull();
    expect(bimodality([5, 5, 5, 5, 5]).bimodal).toBe(false);
  });

  it('exact permutation p-values equal scipy.stats.permutation_test\'s (two-sided, difference in means)', () => {
    const { a, b, c, d } = reference.runMeans;
    const ab = permutationTest(a, b);
    expect(ab.exact).toBe(true);
    expect(ab.permutations).toBe(252);
    expect(ab.p).toBeCloseTo(reference.permutation.ab, 12);
    expect(ab.statistic).toBeCloseTo(meanOf(a) - meanOf(b), 12);
    expect(permutationTest(c, d).p).toBeCloseTo(reference.permutation.cd, 12);
    expect(permutationTest(a, c).p).toBeCloseTo(reference.permutation.ac, 12);
  });

  it('the Monte Carlo permutation test agrees with the exact one within its error', () => {
    const { c, d } = reference.runMeans;
    const sampled = permutationTest(c, d, { exactLimit: 10, iterations: 40_000, seed: 7 });
    expect(sampled.exact).toBe(false);
    // Binomial standard error of p ≈ 0.17 from 40,000 draws is 0.002 (doubled for two sides).
    expect(Math.abs(sampled.p - reference.permutation.cd)).toBeLessThan(0.012);
    // Two identical samples: nothing to tell apart.
    expect(permutationTest([1, 2, 3], [1, 2, 3]).p).toBe(1);
  });

  it('Cliff\'s delta equals 2U/(na·nb) − 1 with scipy\'s Mann-Whitney U', () => {
    expect(cliffsDelta(reference.unimodal.values, reference.bimodal.values)).toBeCloseTo(reference.cliff.unimodal_bimodal, 12);
    expect(cliffsDelta(reference.runMeans.a, reference.runMeans.b)).toBeCloseTo(reference.cliff.ab, 12);
    expect(cliffsDelta([1, 2], [1, 2])).toBe(0);
    expect(cliffsDelta([3, 4], [1, 2])).toBe(1);
  });

  it('Holm\'s adjustment on the worked example: 0.005 and 0.01 rejected at 0.05, 0.03 and 0.04 not', () => {
    // Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 → running maximum 0.06.
    const adjusted = holm([0.01, 0.04, 0.03, 0.005]);
    expect(adjusted.map((p) => Number(p.toFixed(10)))).toEqual([0.03, 0.06, 0.06, 0.02]);
    expect(holm([0.9, 0.8])).toEqual([1, 1]);
    expect(holm([0.02, 0.3])).toEqual([0.04, 0.3]);
    expect(holm([])).toEqual([]);
  });

  it('the block bootstrap of the mean and the p99 agrees with scipy\'s percentile bootstrap over the same blocks', () => {
    // One run: the two-stage bootstrap is a plain block bootstrap.
    const data = [reference.blocks];
    const meanCi = nestedBootstrap(data, meanOf, { iterations: 20_000, seed: 3 }) as [number, number];
    const p99Ci = nestedBootstrap(data, p99, { iterations: 5_000, seed: 4 }) as [number, number];
    const close = (ours: [number, number], theirs: [number, number]) => {
      const width = theirs[1] - theirs[0];
      // Monte Carlo error of percentile endpoints: a few per cent of the width.
      expect(Math.abs(ours[0] - theirs[0])).toBeLessThan(0.08 * width);
      expect(Math.abs(ours[1] - theirs[1])).toBeLessThan(0.08 * width);
    };
    close(meanCi, reference.bootstrap.meanCi95);
    close(p99Ci, reference.bootstrap.p99Ci95);
    const pooled = reference.blocks.flat();
    expect(meanCi[0]).toBeLessThan(meanOf(pooled));
    expect(meanCi[1]).toBeGreaterThan(meanOf(pooled));
  });

  it('the two-stage bootstrap widens the interval when runs differ, and is seeded', () => {
    const blocks = (level: number) => Array.from({ length: 10 }, (_, b) => Array.from({ length: 20 }, (_, i) => level + ((b * 7 + i * 13) % 11)));
    const alike = [blocks(100), blocks(100), blocks(100)];
    const apart = [blocks(80), blocks(100), blocks(120)];
    const narrow = nestedBootstrap(alike, meanOf, { seed: 5 }) as [number, number];
    const wide = nestedBootstrap(apart, meanOf, { seed: 5 }) as [number, number];
    expect(wide[1] - wide[0]).toBeGreaterThan(5 * (narrow[1] - narrow[0]));
    expect(nestedBootstrap(apart, meanOf, { seed: 5 })).toEqual(wide);
    expect(nestedBootstrap([], meanOf)).toBeNull();
    expect(percentileInterval([1, 2, 3, 4, 5], 0.5)).toEqual([2, 4]);
  });
});
