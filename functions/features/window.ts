/** Window helpers shared by the feature sets: reading, fiducial re-alignment, robust baseline. */
import type { SignalHistory } from '../signal/ring.js';

/**
 * Median of the finite values of `values[from, to)`; 0 when there are none. A typed-array copy with
 * the native numeric sort: several times faster than sorting a JS array with a comparator, and
 * this runs for every beat.
 */
export function medianOf(values: Float32Array, from = 0, to = values.length): number {
  const finite = new Float64Array(Math.max(0, to - from));
  let n = 0;
  for (let i = from; i < to; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) finite[n++] = v;
  }
  if (n === 0) return 0;
  const sorted = finite.subarray(0, n).sort();
  const mid = n >> 1;
  return n % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
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
