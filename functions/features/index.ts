/**
 * Beat features, computed by the same streaming code online (a 10 s `SignalRing`) and offline (an
 * `ArraySignal` over a whole record, for training), so a model sees at run time exactly the
 * features it was trained on. Feature sets: 'paper-v1' (raw 1 s window), 'default-v1' (RR,
 * morphology and per-patient template features) and 'default-v2' (default-v1 plus signal-quality,
 * neighbouring-beat and rhythm context); see paper.ts, default.ts and default2.ts.
 */
import type { SignalHistory } from '../signal/ring.js';
import { DefaultFeatures } from './default.js';
import { Default2Features } from './default2.js';
import { PaperFeatures } from './paper.js';
import { FeatureStream, type BeatFeatures, type FeatureSet, type StreamState } from './stream.js';

export type { BeatFeatures } from './stream.js';
export { LOOKAHEAD_SECONDS, DETECTOR_MARGIN_SECONDS } from './stream.js';
export { DEFAULT_FEATURE_NAMES } from './default.js';
export { DEFAULT2_FEATURE_NAMES } from './default2.js';

/** One per monitor; streaming; the same code runs offline over a whole record for training. */
export interface BeatFeatureStream {
  /** Feature set id, e.g. 'paper-v1', 'default-v1' (stored in the ONNX metadata). */
  readonly name: string;
  readonly dim: number;
  /** The detector found a beat at absolute sample `sample` (ascending). */
  addBeat(sample: number): void;
  /**
   * After each packet, with the signal so far: features of the beats that are now computable (their
   * window is inside the history, and the next beat is known or `end` is more than
   * LOOKAHEAD_SECONDS + DETECTOR_MARGIN_SECONDS past them; the next RR is then capped at the lookahead),
   * in order, each once.
   */
  drain(history: SignalHistory): BeatFeatures[];
  /** End of stream: features for all beats still pending. */
  flush(history: SignalHistory): BeatFeatures[];
  /** A gap: drop pending beats and the RR chain (no RR across a gap); keep per-patient long-run statistics. */
  restart(atSample: number): void;
  /** Plain data only (numbers, arrays, typed arrays, plain objects), a few KB. */
  toState(): unknown;
}

export const FEATURE_SETS = ['paper-v1', 'default-v1', 'default-v2'] as const;
export type FeatureSetName = (typeof FEATURE_SETS)[number];

function makeSet(name: string, sampleRate: number): FeatureSet {
  if (!(sampleRate > 0) || !Number.isFinite(sampleRate)) throw new RangeError(`bad sample rate ${sampleRate}`);
  switch (name) {
    case 'paper-v1':
      return new PaperFeatures(sampleRate);
    case 'default-v1':
      return new DefaultFeatures(sampleRate);
    case 'default-v2':
      return new Default2Features(sampleRate);
    default:
      throw new RangeError(`unknown feature set "${name}" (known: ${FEATURE_SETS.join(', ')})`);
  }
}

export function createFeatureStream(name: string, sampleRate = 360): BeatFeatureStream {
  return new FeatureStream(makeSet(name, sampleRate));
}

export function restoreFeatureStream(name: string, state: unknown): BeatFeatureStream {
  const s = state as StreamState;
  if (!s || s.v !== 1 || s.name !== name || typeof s.sampleRate !== 'number' || !Array.isArray(s.pending)) {
    throw new TypeError(`cannot restore feature stream "${name}" from this state`);
  }
  const stream = new FeatureStream(makeSet(name, s.sampleRate));
  stream.restore(s);
  return stream;
}

/** Offline: features of the given beats over a whole signal (one pass, as in training). */
export function featuresOfSignal(name: string, history: SignalHistory, beats: readonly number[], sampleRate = 360): BeatFeatures[] {
  const stream = createFeatureStream(name, sampleRate);
  for (const b of beats) stream.addBeat(b);
  return [...stream.drain(history), ...stream.flush(history)];
}
