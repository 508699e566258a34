import { describe, expect, it } from 'vitest';
import { aamiClassOfCode } from '../functions/aami/index.js';
import { loadLead } from '../functions/features/dataset.js';
import {
  createFeatureStream, featuresOfSignal, restoreFeatureStream, DEFAULT2_FEATURE_NAMES, FEATURE_SETS, LOOKAHEAD_SECONDS,
  type BeatFeatures, type BeatFeatureStream,
} from '../functions/features/index.js';
import { ArraySignal, SignalRing } from '../functions/signal/ring.js';
import { readAnnotations } from '../functions/wfdb/index.js';
import { excerptDir, mitdbDir } from './support/data.js';

const FS = 360;

/** A synthetic ECG-like lead: Gaussian QRS/T bumps at the beats, a wandering baseline, some noise. */
function synthetic(seconds: number, seed = 1): { signal: Float32Array; beats: number[] } {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const n = seconds * FS;
  const signal = new Float32Array(n);
  const beats: number[] = [];
  for (let t = Math.round(0.4 * FS); t < n - 10; ) {
    beats.push(t);
    const premature = rand() < 0.15;
    t += Math.round((premature ? 0.5 : 0.8 + 0.1 * rand()) * FS);
  }
  for (let i = 0; i < n; i++) signal[i] = 0.2 * Math.sin((2 * Math.PI * i) / (FS * 4)) + 0.01 * (rand() - 0.5);
  beats.forEach((b, j) => {
    const wide = j % 7 === 3;
    for (let i = Math.max(0, b - 80); i < Math.min(n, b + 150); i++) {
      const d = i - b;
      signal[i] = (signal[i] as number) + (wide ? -1.2 : 1.5) * Math.exp(-(d * d) / (2 * (wide ? 12 : 4) ** 2))
        + 0.3 * Math.exp(-((d - 100) ** 2) / (2 * 20 ** 2));
    }
  });
  return { signal, beats };
}

/** Streams `signal` in packets through a 10 s ring; each beat is reported once its sample is in the ring. */
function streamed(name: string, signal: Float32Array, beats: readonly number[], packet = 360,
  hook?: (stream: BeatFeatureStream, packetIndex: number) => BeatFeatureStream): BeatFeatures[] {
  const ring = new SignalRing(10 * FS);
  let stream = createFeatureStream(name, FS);
  const out: BeatFeatures[] = [];
  let next = 0;
  for (let p = 0, from = 0; from < signal.length; p++, from += packet) {
    ring.append(signal.subarray(from, Math.min(signal.length, from + packet)));
    while (next < beats.length && (beats[next] as number) < ring.end) stream.addBeat(beats[next++] as number);
    out.push(...stream.drain(ring));
    if (hook) stream = hook(stream, p);
  }
  out.push(...stream.flush(ring));
  return out;
}

function expectSame(a: readonly BeatFeatures[], b: readonly BeatFeatures[]): void {
  expect(a.length).toBe(b.length);
  a.forEach((x, i) => {
    const y = b[i] as BeatFeatures;
    expect(x.sample).toBe(y.sample);
    expect(Array.from(x.features)).toEqual(Array.from(y.features));
  });
}

describe.each(FEATURE_SETS)('feature set %s', (name) => {
  it('has the documented dimension and only finite values', () => {
    const { signal, beats } = synthetic(60);
    const feats = featuresOfSignal(name, new ArraySignal(signal), beats, FS);
    expect(feats.length).toBe(beats.length);
    const dim = createFeatureStream(name).dim;
    expect(dim).toBe(name === 'paper-v1' ? 360 : name === 'default-v2' ? DEFAULT2_FEATURE_NAMES.length : 52);
    for (const f of feats) {
      expect(f.features.length).toBe(dim);
      expect(f.features.every(Number.isFinite)).toBe(true);
    }
  });

  it('streaming drain over 360-sample packets equals one offline pass (synthetic)', () => {
    const { signal, beats } = synthetic(120);
    const offline = featuresOfSignal(name, new ArraySignal(signal), beats, FS);
    expectSame(streamed(name, signal, beats, 360), offline);
    expectSame(streamed(name, signal, beats, 97), offline);
  });

  it('emits each beat within a bounded delay', () => {
    const { signal, beats } = synthetic(60);
    const ring = new SignalRing(10 * FS);
    const stream = createFeatureStream(name, FS);
    let next = 0;
    for (let from = 0; from < signal.length; from += 36) {
      ring.append(signal.subarray(from, from + 36));
      while (next < beats.length && (beats[next] as number) < ring.end) stream.addBeat(beats[next++] as number);
      for (const f of stream.drain(ring)) expect(ring.end - f.sample).toBeLessThanOrEqual((LOOKAHEAD_SECONDS + 0.5) * FS + 36);
    }
  });

  it('a restored stream continues exactly as the uninterrupted one', () => {
    const { signal, beats } = synthetic(120, 7);
    const plain = streamed(name, signal, beats);
    let sizes = 0;
    const restored = streamed(name, signal, beats, 360, (stream, p) => {
      if (p % 5 !== 2) return stream;
      const state = structuredClone(stream.toState()); // plain data survives structured cloning
      sizes = Math.max(sizes, JSON.stringify(state, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v)).length);
      return restoreFeatureStream(name, state);
    });
    expectSame(restored, plain);
    expect(sizes).toBeLessThan(16_000);
  });

  it('a state that went through JSON (typed arrays as arrays) restores to the same stream', () => {
    const { signal, beats } = synthetic(120, 11);
    const plain = streamed(name, signal, beats);
    const restored = streamed(name, signal, beats, 360, (stream, p) => {
      if (p !== 40) return stream;
      const json = JSON.stringify(stream.toState(), (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v));
      return restoreFeatureStream(name, JSON.parse(json));
    });
    expectSame(restored, plain);
    expect(() => restoreFeatureStream(name, { v: 1, name: 'other' })).toThrow();
  });

  it('restart drops pending beats and the RR chain', () => {
    const { signal, beats } = synthetic(60, 3);
    const history = new ArraySignal(signal);
    const stream = createFeatureStream(name, FS);
    const cut = beats.findIndex((b) => b > 30 * FS);
    for (const b of beats.slice(0, cut)) stream.addBeat(b);
    stream.drain(history);
    stream.restart(beats[cut + 5] as number - 10);
    const after = beats.slice(cut + 5);
    for (const b of after) stream.addBeat(b);
    const out = [...stream.drain(history), ...stream.flush(history)];
    expect(out.map((f) => f.sample)).toEqual(after);
    if (name === 'default-v1' || name === 'default-v2') {
      const first = (out[0] as BeatFeatures).features;
      const gapRr = ((after[0] as number) - (beats[cut - 1] as number)) / FS;
      expect(first[0]).not.toBeCloseTo(gapRr, 3);
      // With no previous beat the pre-RR takes the local average (feature 2), so pre/local = 1.
      expect(first[0]).toBeCloseTo(first[2] as number, 6);
      expect(first[4]).toBeCloseTo(1, 6);
      expect(first[10]).toBeCloseTo(1, 6); // pre/previous-pre: the RR before the gap is not used
      // The next beat has a real RR again.
      expect((out[1] as BeatFeatures).features[0]).toBeCloseTo(((after[1] as number) - (after[0] as number)) / FS, 5);
    }
  });
});

describe('feature set default-v2', () => {
  it('starts with the default-v1 features, bit for bit, and has finite context features', () => {
    const { signal, beats } = synthetic(120, 5);
    const v1 = featuresOfSignal('default-v1', new ArraySignal(signal), beats, FS);
    const v2 = featuresOfSignal('default-v2', new ArraySignal(signal), beats, FS);
    expect(v2.length).toBe(v1.length);
    v2.forEach((f, i) => {
      const g = (v1[i] as BeatFeatures).features;
      expect(Array.from(f.features.subarray(0, g.length))).toEqual(Array.from(g));
      expect(f.features.length).toBe(DEFAULT2_FEATURE_NAMES.length);
      expect(f.features.every(Number.isFinite)).toBe(true);
    });
  });

  it('rejects a state without the context lists', () => {
    const stream = createFeatureStream('default-v2', FS);
    const state = stream.toState() as { stats: Record<string, unknown> };
    expect(() => restoreFeatureStream('default-v2', structuredClone(state))).not.toThrow();
    const bad = structuredClone(state);
    delete bad.stats.rr;
    expect(() => restoreFeatureStream('default-v2', bad)).toThrow();
  });
});

describe('features on MIT-BIH', () => {
  const dirs = [['excerpt', excerptDir()], ['full', mitdbDir()]] as const;
  for (const [label, dir] of dirs) {
    it.skipIf(dir === undefined)(`streaming equals offline on ${label} record 208`, async () => {
      const { signal: whole } = await loadLead(dir as string, '208');
      const signal = whole.subarray(0, 5 * 60 * FS);
      const beats = (await readAnnotations(dir as string, '208'))
        .filter((a) => aamiClassOfCode(a.code) !== undefined && a.sample < signal.length).map((a) => a.sample);
      for (const name of FEATURE_SETS) {
        expectSame(streamed(name, signal, beats), featuresOfSignal(name, new ArraySignal(signal), beats, FS));
      }
    });
  }
});
