/**
 * Beat-by-beat QRS detection scoring in the manner of ANSI/AAMI EC57 and PhysioNet's `bxb`
 * (WFDB app/bxb.c, G. Moody), run as `bxb -f 0` (no 5-minute learning period).
 *
 * Rules adopted (re-implemented from reading bxb.c, not copied):
 *
 * 1. Reference beats are the annotations WFDB's `isqrs()` calls QRS complexes (`isBeatCode`), except
 *    those inside a reference ventricular flutter/fibrillation episode (between a `[` VFON and the next
 *    `]` VFOFF annotation, inclusive): bxb reads and ignores every annotation of such an episode.
 *    (`isqrs()` also counts `!` flutter waves as QRS, but bxb's `amap()` maps them to the non-beat
 *    class `O`, and in MIT-BIH every `!` lies inside a `[ ]` episode, so leaving `!` out changes nothing.)
 * 2. Match window: 150 ms (54 samples at 360 Hz); a pair needs |t - T| <= window.
 * 3. Pairing is bxb's greedy sequential walk over both time-ordered lists. With T/T' the current/next
 *    reference beat and t/t' the current/next test beat:
 *    - if t < T (test earliest): pair (T, t) when T - t <= window and (T - t < |T - t'| or
 *      |T' - t'| < |T - t'|); otherwise t is a false positive and only the test side advances;
 *    - else (T <= t, ties go here): pair when t - T <= window and (t - T < |t - T'| or
 *      |t' - T'| < |t - T'|); otherwise T is a false negative and only the reference side advances.
 *    The second alternative in each condition is bxb's 2002 amendment for two beats of each list
 *    within two match windows. Each beat is used at most once.
 * 4. Test beats that are not paired and lie inside a reference VF episode [on, off] (inclusive) are
 *    neither false positives nor anything else (bxb pairs them with the uncounted pseudo-label `*`).
 *    A test beat inside an episode that pairs with the first reference beat after it still counts.
 *    bxb only remembers the current and previous episode when it does this; we check all episodes,
 *    which is the same whenever episodes are more than a beat apart (always, in MIT-BIH).
 * 5. Start of scoring at sample 0 (`-f 0`). bxb starts both walks from a virtual annotation at time 0
 *    (its initial T = t = 0), and its start-up step pairs those two with each other, uncounted. The
 *    one visible effect: when the first test beat is at sample 0 exactly (and the first reference beat
 *    is not), the virtual reference annotation pairs with it and it is not counted (`ignoredTest`).
 *    (With bxb's default 5-minute learning period the start-up step does more; that is not modelled.)
 * 6. Scoring runs to the end of both lists (bxb's default end time is the record length, and every
 *    annotation lies inside the record), so late test beats count as false positives.
 * 7. Noise/shutdown (`~` with subtype bits 4 and 5 set) does not change QRS Se/+P in bxb: reference beats
 *    during test shutdown count as missed, test beats during reference shutdown as extra. Not modelled.
 * 8. Statistics: QRS Se = TP / (TP + FN), +P = TP / (TP + FP). Gross figures sum TP/FN/FP over records
 *    (EC57 "gross"), not an average of per-record rates.
 *
 * Cross-checked: on the QrsDetector's output for all 26 MIT-BIH records here (written as WFDB
 * annotations by experiments/detector/write-qrs-annotations.ts), TP/FP/FN from this module equal
 * those printed by bxb built from the WFDB source (bemoody/wfdb de6b1d39) run as
 * `bxb -r <rec> -a atr qrs -f 0`, as do hand-made edge cases (beats at sample 0, two beats in a window).
 */
import { isBeatCode, type Annotation } from '../wfdb/index.js';

/** Match window of EC57/bxb, in seconds. */
export const MATCH_WINDOW_SECONDS = 0.15;
const VFON = 32;
const VFOFF = 33;

export interface MatchOptions {
  /** Match window in samples (default 54 = 150 ms at 360 Hz). */
  windowSamples?: number;
  /** Reference VF episodes [on, off] (inclusive sample times); see `excludedIntervals`. */
  excluded?: ReadonlyArray<readonly [number, number]>;
  /** Apply bxb's start-up rule for a test beat at sample 0 (rule 5; default true). */
  bxbStart?: boolean;
}

export interface MatchResult {
  /** Matched beats: indices into the reference and test arrays given to `matchBeats`. */
  pairs: Array<{ ref: number; test: number }>;
  /** False negatives: indices of reference beats not matched. */
  unmatchedRef: number[];
  /** False positives: indices of test beats not matched (outside excluded intervals). */
  unmatchedTest: number[];
  /** Reference beats not scored (inside excluded intervals). */
  ignoredRef: number[];
  /** Test beats not scored (unmatched inside excluded intervals, or a beat at sample 0: rule 5). */
  ignoredTest: number[];
}

export interface QrsStats {
  tp: number;
  fp: number;
  fn: number;
  /** Sensitivity TP / (TP + FN) as a fraction, null when there are no reference beats. */
  se: number | null;
  /** Positive predictivity TP / (TP + FP) as a fraction, null when there are no test beats. */
  ppv: number | null;
}

/** Window in samples for a sampling rate (54 at 360 Hz, bxb's `strtim(".15")` rounding). */
export function windowSamplesFor(sampleRate: number): number {
  return Math.round(MATCH_WINDOW_SECONDS * sampleRate);
}

/** Sample times of the reference beats (annotations with `isBeatCode`), in file order. */
export function referenceBeatSamples(annotations: readonly Annotation[]): number[] {
  const out: number[] = [];
  for (const a of annotations) if (isBeatCode(a.code)) out.push(a.sample);
  return out;
}

/** Reference VF episodes [VFON, VFOFF] from the annotations; an unterminated one ends at +Infinity. */
export function excludedIntervals(annotations: readonly Annotation[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let on = -1;
  for (const a of annotations) {
    if (a.code === VFON && on < 0) on = a.sample;
    else if (a.code === VFOFF && on >= 0) {
      out.push([on, a.sample]);
      on = -1;
    }
  }
  if (on >= 0) out.push([on, Number.POSITIVE_INFINITY]);
  return out;
}

function checkAscending(name: string, samples: readonly number[]): void {
  for (let i = 1; i < samples.length; i++) {
    if (!((samples[i] as number) >= (samples[i - 1] as number))) throw new RangeError(`${name} samples must be in ascending order (index ${i})`);
  }
}

function inIntervals(x: number, intervals: ReadonlyArray<readonly [number, number]>): boolean {
  for (const [on, off] of intervals) if (on <= x && x <= off) return true;
  return false;
}

/**
 * bxb-style beat-by-beat matching of test beats against reference beats (see the rules above).
 * Both arrays must be in ascending order.
 */
export function matchBeats(referenceSamples: readonly number[], testSamples: readonly number[], options: MatchOptions = {}): MatchResult {
  const w = options.windowSamples ?? windowSamplesFor(360);
  const excluded = options.excluded ?? [];
  checkAscending('reference', referenceSamples);
  checkAscending('test', testSamples);
  const result: MatchResult = { pairs: [], unmatchedRef: [], unmatchedTest: [], ignoredRef: [], ignoredTest: [] };

  // Reference beats that take part (rule 1), as indices into referenceSamples.
  const refs: number[] = [];
  referenceSamples.forEach((s, i) => (inIntervals(s, excluded) ? result.ignoredRef.push(i) : refs.push(i)));
  const R = (k: number): number => (k < refs.length ? (referenceSamples[refs[k] as number] as number) : Infinity);
  const Tt = (k: number): number => (k < testSamples.length ? (testSamples[k] as number) : Infinity);

  let i = 0; // current reference (position in refs)
  let j = 0; // current test
  if (options.bxbStart !== false && testSamples.length > 0 && testSamples[0] === 0 && R(0) !== 0) {
    result.ignoredTest.push(0);
    j = 1;
  }

  while (i < refs.length || j < testSamples.length) {
    const T = R(i);
    const Tn = R(i + 1);
    const t = Tt(j);
    const tn = Tt(j + 1);
    if (t < T) {
      if (T - t <= w && (T - t < Math.abs(T - tn) || Math.abs(Tn - tn) < Math.abs(T - tn))) {
        result.pairs.push({ ref: refs[i] as number, test: j });
        i++;
        j++;
      } else {
        (inIntervals(t, excluded) ? result.ignoredTest : result.unmatchedTest).push(j);
        j++;
      }
    } else if (t - T <= w && (t - T < Math.abs(t - Tn) || Math.abs(tn - Tn) < Math.abs(t - Tn))) {
      result.pairs.push({ ref: refs[i] as number, test: j });
      i++;
      j++;
    } else {
      result.unmatchedRef.push(refs[i] as number);
      i++;
    }
  }
  return result;
}

/** Gross QRS statistics over one or more records' match results. */
export function qrsStats(results: readonly MatchResult[]): QrsStats {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (const r of results) {
    tp += r.pairs.length;
    fp += r.unmatchedTest.length;
    fn += r.unmatchedRef.length;
  }
  return { tp, fp, fn, se: tp + fn > 0 ? tp / (tp + fn) : null, ppv: tp + fp > 0 ? tp / (tp + fp) : null };
}

/** Scores test beat samples against a record's reference annotations with bxb's rules. */
export function scoreAgainstAnnotations(annotations: readonly Annotation[], testSamples: readonly number[], sampleRate = 360): MatchResult {
  return matchBeats(referenceBeatSamples(annotations), testSamples, {
    windowSamples: windowSamplesFor(sampleRate),
    excluded: excludedIntervals(annotations),
  });
}
