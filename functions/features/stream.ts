/**
 * The beat-scheduling machinery shared by every feature set: it holds the beats the detector has
 * reported but whose features cannot be computed yet, decides when each one becomes computable
 * (its window is inside the history and its next beat is known or a bounded lookahead has passed),
 * and hands them, in order and once each, to a feature set's `compute`, which may keep per-patient
 * running statistics. Offline training runs the very same code over an `ArraySignal` of a whole
 * record, so training and streaming features are identical (tested).
 */
import type { SignalHistory } from '../signal/ring.js';

export interface BeatFeatures {
  /** The beat's sample as given to `addBeat` (not the re-aligned fiducial). */
  sample: number;
  features: Float32Array;
}

/** What a feature set sees for one beat. */
export interface BeatContext {
  /** The beat's sample as reported. */
  sample: number;
  /** The previous beat's sample, or null when unknown (first beat, or first after a restart). */
  prev: number | null;
  /** The next beat's sample, or null when it is not known within the lookahead. */
  next: number | null;
  history: SignalHistory;
}

/** A feature set: window geometry plus the per-beat computation (which may update running stats). */
export interface FeatureSet {
  readonly name: string;
  readonly dim: number;
  readonly sampleRate: number;
  /** Samples needed before the beat (including re-alignment slack). */
  readonly before: number;
  /** Samples needed after the beat (including re-alignment slack). */
  readonly after: number;
  /** Whether the features use the next RR interval (then a beat waits for its successor or the lookahead). */
  readonly needsNext: boolean;
  compute(ctx: BeatContext, out: Float32Array): void;
  /** Long-run per-patient statistics, plain data. */
  statsState(): unknown;
  restoreStats(state: unknown): void;
}

export interface StreamState {
  v: 1;
  name: string;
  sampleRate: number;
  pending: number[];
  prev: number | null;
  stats: unknown;
}

/** Waiting for the next beat is bounded: after this long it counts as unknown (and RR is capped). */
export const LOOKAHEAD_SECONDS = 2;
/** Extra wait for the detector's reporting delay beyond the lookahead. */
export const DETECTOR_MARGIN_SECONDS = 0.5;

export class FeatureStream {
  readonly #set: FeatureSet;
  #pending: number[] = [];
  #prev: number | null = null;
  readonly #waitSamples: number;

  constructor(set: FeatureSet) {
    this.#set = set;
    this.#waitSamples = Math.round((LOOKAHEAD_SECONDS + DETECTOR_MARGIN_SECONDS) * set.sampleRate);
  }

  get name(): string {
    return this.#set.name;
  }

  get dim(): number {
    return this.#set.dim;
  }

  addBeat(sample: number): void {
    if (!Number.isFinite(sample)) throw new RangeError(`beat sample must be finite, got ${sample}`);
    const last = this.#pending.length > 0 ? this.#pending[this.#pending.length - 1] : this.#prev;
    if (last !== undefined && last !== null && sample <= last) {
      throw new RangeError(`beats must be added in ascending order (${sample} after ${last})`);
    }
    this.#pending.push(sample);
  }

  drain(history: SignalHistory): BeatFeatures[] {
    return this.#emit(history, false);
  }

  flush(history: SignalHistory): BeatFeatures[] {
    return this.#emit(history, true);
  }

  restart(atSample: number): void {
    void atSample;
    this.#pending = [];
    this.#prev = null;
  }

  toState(): StreamState {
    return {
      v: 1,
      name: this.#set.name,
      sampleRate: this.#set.sampleRate,
      pending: this.#pending.slice(),
      prev: this.#prev,
      stats: this.#set.statsState(),
    };
  }

  restore(state: StreamState): void {
    this.#pending = state.pending.slice();
    this.#prev = state.prev;
    this.#set.restoreStats(state.stats);
  }

  #emit(history: SignalHistory, all: boolean): BeatFeatures[] {
    const out: BeatFeatures[] = [];
    const set = this.#set;
    let i = 0;
    for (; i < this.#pending.length; i++) {
      const sample = this.#pending[i] as number;
      const following = i + 1 < this.#pending.length ? (this.#pending[i + 1] as number) : null;
      if (!all) {
        if (sample + set.after > history.end) break;
        if (set.needsNext && following === null && history.end < sample + this.#waitSamples) break;
      }
      const features = new Float32Array(set.dim);
      set.compute({ sample, prev: this.#prev, next: following, history }, features);
      out.push({ sample, features });
      this.#prev = sample;
    }
    if (i > 0) this.#pending.splice(0, i);
    return out;
  }
}
