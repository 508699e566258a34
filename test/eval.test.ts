import { describe, expect, it } from 'vitest';
import { annotation, CODE_OF_MNEMONIC, readAnnotations } from '../functions/wfdb/index.js';
import {
  excludedIntervals, matchBeats, qrsStats, referenceBeatSamples, scoreAgainstAnnotations, windowSamplesFor,
} from '../functions/eval/index.js';

const dir = process.env.ECGFAAS_MITDB;
const code = (m: string): number => CODE_OF_MNEMONIC[m] as number;

describe('matchBeats (bxb rules)', () => {
  it('uses a 54-sample (150 ms) window at 360 Hz by default', () => {
    expect(windowSamplesFor(360)).toBe(54);
    expect(windowSamplesFor(250)).toBe(38);
  });

  it('handles empty lists', () => {
    const both = matchBeats([], []);
    expect(both.pairs).toEqual([]);
    expect(qrsStats([both])).toEqual({ tp: 0, fp: 0, fn: 0, se: null, ppv: null });
    const refOnly = matchBeats([1000, 2000], []);
    expect(refOnly.unmatchedRef).toEqual([0, 1]);
    expect(qrsStats([refOnly])).toEqual({ tp: 0, fp: 0, fn: 2, se: 0, ppv: null });
    const testOnly = matchBeats([], [1000, 2000]);
    expect(testOnly.unmatchedTest).toEqual([0, 1]);
    expect(qrsStats([testOnly])).toEqual({ tp: 0, fp: 2, fn: 0, se: null, ppv: 0 });
  });

  it('pairs beats exactly at the window boundary and not one sample beyond', () => {
    const r = matchBeats([1000, 2000, 3000, 4000], [1054, 1946, 3055, 3945]);
    expect(r.pairs).toEqual([{ ref: 0, test: 0 }, { ref: 1, test: 1 }]);
    expect(r.unmatchedRef).toEqual([2, 3]);
    expect(r.unmatchedTest).toEqual([2, 3]);
  });

  it('with two test beats in one window pairs the closer one and counts the other as a false positive', () => {
    const r = matchBeats([1000], [995, 1010]);
    expect(r.pairs).toEqual([{ ref: 0, test: 0 }]);
    expect(r.unmatchedTest).toEqual([1]);
    const later = matchBeats([1000], [985, 1004]);
    expect(later.pairs).toEqual([{ ref: 0, test: 1 }]);
    expect(later.unmatchedTest).toEqual([0]);
  });

  it('breaks an exact tie between an earlier and a later test beat in favour of the later one (as bxb)', () => {
    // t = 990 < T: T - t (10) is not < |T - t'| (10), so 990 is extra; then 1010 pairs.
    const r = matchBeats([1000], [990, 1010]);
    expect(r.pairs).toEqual([{ ref: 0, test: 1 }]);
    expect(r.unmatchedTest).toEqual([0]);
  });

  it('pairs a reference beat and a test beat at the same sample (ties go to the reference-first branch)', () => {
    const r = matchBeats([1000, 1300], [1000, 1300]);
    expect(r.pairs).toEqual([{ ref: 0, test: 0 }, { ref: 1, test: 1 }]);
  });

  it('with two reference beats in one window pairs the closer one and misses the other', () => {
    const r = matchBeats([1000, 1040], [1035]);
    expect(r.pairs).toEqual([{ ref: 1, test: 0 }]);
    expect(r.unmatchedRef).toEqual([0]);
  });

  it("implements bxb's 2002 amendment (both annotation pairs inside two windows)", () => {
    // The example of bxb.c with a 37-sample window: ref 96, 160; test 128, 185.
    const r = matchBeats([96, 160], [128, 185], { windowSamples: 37 });
    expect(r.pairs).toEqual([{ ref: 0, test: 0 }, { ref: 1, test: 1 }]);
    expect(r.unmatchedRef).toEqual([]);
    expect(r.unmatchedTest).toEqual([]);
  });

  it("applies bxb's start-up rule for scoring from sample 0", () => {
    // Beats near the start are scored normally ...
    expect(qrsStats([matchBeats([20, 400], [400])])).toMatchObject({ tp: 1, fn: 1, fp: 0 });
    expect(qrsStats([matchBeats([60, 400], [10, 62, 400])])).toMatchObject({ tp: 2, fn: 0, fp: 1 });
    // ... but a test beat at sample 0 pairs with bxb's virtual annotation at time 0, uncounted,
    const a = matchBeats([30, 400], [0, 400]);
    expect(a.ignoredTest).toEqual([0]);
    expect(qrsStats([a])).toMatchObject({ tp: 1, fn: 1, fp: 0 });
    expect(qrsStats([matchBeats([], [0, 400])])).toMatchObject({ fp: 1 });
    // unless a reference beat is at sample 0 too.
    expect(qrsStats([matchBeats([0, 400], [0, 400])])).toMatchObject({ tp: 2, fn: 0, fp: 0 });
    // The rule can be switched off.
    expect(qrsStats([matchBeats([30, 400], [0, 400], { bxbStart: false })])).toMatchObject({ tp: 2, fn: 0, fp: 0 });
  });

  it('ignores reference beats inside excluded (VF) intervals and unmatched test beats there', () => {
    const r = matchBeats([1000, 2000, 2500, 4000], [1000, 2100, 2600, 3000, 3960, 4100], { excluded: [[1900, 3970]] });
    expect(r.ignoredRef).toEqual([1, 2]);
    // 3960 lies in the episode but pairs with the first reference beat after it; 4100 is then extra.
    expect(r.pairs).toEqual([{ ref: 0, test: 0 }, { ref: 3, test: 4 }]);
    expect(r.ignoredTest).toEqual([1, 2, 3]);
    expect(r.unmatchedTest).toEqual([5]);
  });

  it('rejects unsorted input', () => {
    expect(() => matchBeats([2000, 1000], [])).toThrow(RangeError);
    expect(() => matchBeats([], [3, 2])).toThrow(RangeError);
  });

  it('gross statistics sum counts over records', () => {
    const s = qrsStats([matchBeats([1000, 2000], [1000, 2000, 3000]), matchBeats([1000, 2000], [1000])]);
    expect(s).toEqual({ tp: 3, fp: 1, fn: 1, se: 0.75, ppv: 0.75 });
  });
});

describe('annotation helpers', () => {
  const anns = [
    annotation(100, code('N')), annotation(200, code('+'), { aux: '(VFL' }), annotation(300, code('[')),
    annotation(350, code('!')), annotation(420, code('!')), annotation(500, code(']')), annotation(600, code('V')),
    annotation(650, code('~')), annotation(700, code('/')), annotation(800, code('[')), annotation(900, code('!')),
  ];
  it('takes beat annotations as reference beats', () => {
    expect(referenceBeatSamples(anns)).toEqual([100, 600, 700]);
  });
  it('derives VF episodes, an unterminated one running to the end', () => {
    expect(excludedIntervals(anns)).toEqual([[300, 500], [800, Number.POSITIVE_INFINITY]]);
  });
  it('scores against annotations with the episodes excluded', () => {
    const r = scoreAgainstAnnotations(anns, [100, 430, 600, 700, 850]);
    expect(qrsStats([r])).toMatchObject({ tp: 3, fp: 0, fn: 0 });
    expect(r.ignoredTest).toEqual([1, 4]);
  });
});

describe('MIT-BIH reference scored against itself', () => {
  it.skipIf(!dir)('gives 100 % and excludes the VF episodes of 207', async () => {
    const anns = await readAnnotations(dir as string, '207');
    const ref = referenceBeatSamples(anns);
    const r = scoreAgainstAnnotations(anns, ref);
    expect(qrsStats([r])).toMatchObject({ fp: 0, fn: 0, se: 1, ppv: 1 });
    expect(excludedIntervals(anns)).toHaveLength(6);
    const shifted = scoreAgainstAnnotations(anns, ref.map((s) => s + 54));
    expect(qrsStats([shifted]).se).toBe(1);
  });
});
