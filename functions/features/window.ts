/** Window helpers shared by the feature sets: reading, fiducial re-alignment, robust baseline. */
import type { SignalHistory } from '../signal/ring.js';

/**
 * Median of the finite values of `values[from, to)`; 0 when there are none. Quickselect on a
 * Float64Array copy: O(n) and no comparator calls, and this runs several times for every beat. The
 * result is the same order statistic a full sort gives.
 */
export function medianOf(values: Float32Array, from = 0, to = values.length): number {
  const finite = new Float64Array(Math.max(0, to - from));
  let n = 0;
  for (let i = from; i < to; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) finite[n++] = v;
  }
  if (n === 0) return 0;
  const mid = n >> 1;
  const upper = selectInPlace(finite, n, mid);
  if (n % 2 === 1) return upper;
  // After selecting `mid`, everything before it is <= it: the lower middle is their maximum.
  let lower = finite[0] as number;
  for (let i = 1; i < mid; i++) if ((finite[i] as number) > lower) lower = finite[i] as number;
  return (lower + upper) / 2;
}

/** Hoare's quickselect: reorders a[0, n) so that a[k] is the k-th smallest, and returns it. */
function selectInPlace(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const pivot = a[(lo + hi) >> 1] as number;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((a[i] as number) < pivot) i++;
      while ((a[j] as number) > pivot) j--;
      if (i <= j) {
        const t = a[i] as number;
        a[i] = a[j] as number;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k] as number;
}

export function meanOf(values: Float32Array, from = 0, to = values.length): number {
  let sum = 0;
  let n = 0;
  for (let i = from; i < to; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) {
      sum += v;
      n++;
    }
  }
  return n === 0 ? 0 : sum / n;
}

/**
 * Re-aligns a reported fiducial on the local extremum: the sample within ±`slack` of `sample`
 * whose distance from `reference` (a baseline estimate) is largest. Ties go to the earliest.
 * `buf` holds the signal from absolute sample `bufStart`. Makes features tolerant to a few samples
 * of detector jitter (the reference annotations and a detector both land near the R peak).
 */
export function alignOnExtremum(buf: Float32Array, bufStart: number, sample: number, slack: number, reference: number): number {
  let best = sample;
  let bestValue = -1;
  for (let at = sample - slack; at <= sample + slack; at++) {
    const v = buf[at - bufStart];
    if (v === undefined || !Number.isFinite(v)) continue;
    const d = Math.abs(v - reference);
    if (d > bestValue) {
      bestValue = d;
      best = at;
    }
  }
  return best;
}

/** Reads [from, from + length) from the history into a fresh array (NaN outside the history). */
export function readWindow(history: SignalHistory, from: number, length: number): Float32Array {
  return history.copy(from, new Float32Array(length));
}
