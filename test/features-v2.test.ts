/** 'default-v2' (two leads): streaming with a second lead equals one offline pass, across restores. */
import { describe, expect, it } from 'vitest';
import { aamiClassOfCode } from '../functions/aami/index.js';
import { loadLeads, secondaryLeadIndex } from '../functions/features/dataset2.js';
import {
  createFeatureStream, featureSetLeads, featuresOfSignal, restoreFeatureStream, DEFAULT2_FEATURE_NAMES,
  type BeatFeatures, type BeatFeatureStream,
} from '../functions/features/index.js';
import { ArraySignal, SignalRing } from '../functions/signal/ring.js';
import { readAnnotations } from '../functions/wfdb/index.js';
import { excerptDir, mitdbDir } from './support/data.js';

const FS = 360;
const NAME = 'default-v2';

/** Two synthetic leads: lead 1 as in features.test.ts, lead 2 a V1-like (negative, wider) QRS. */
function synthetic2(seconds: number, seed = 1): { primary: Float32Array; secondary: Float32Array; beats: number[] } {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const n = seconds * FS;
  const primary = new Float32Array(n);
  const secondary = new Float32Array(n);
  const beats: number[] = [];
  for (let t = Math.round(0.4 * FS); t < n - 10; ) {
    beats.push(t);
    t += Math.round((rand() < 0.15 ? 0.5 : 0.8 + 0.1 * rand()) * FS);
  }
  for (let i = 0; i < n; i++) {
    primary[i] = 0.2 * Math.sin((2 * Math.PI * i) / (FS * 4)) + 0.01 * (rand() - 0.5);
    secondary[i] = 0.1 * Math.sin((2 * Math.PI * i) / (FS * 6)) + 0.01 * (rand() - 0.5);
  }
  beats.forEach((b, j) => {
    const wide = j % 7 === 3;
    for (let i = Math.max(0, b - 80); i < Math.min(n, b + 150); i++) {
      const d = i - b;
      primary[i] = (primary[i] as number) + (wide ? -1.2 : 1.5) * Math.exp(-(d * d) / (2 * (wide ? 12 : 4) ** 2))
        + 0.3 * Math.exp(-((d - 100) ** 2) / (2 * 20 ** 2));
      secondary[i] = (secondary[i] as number) + (wide ? 1.0 : -0.8) * Math.exp(-(d * d) / (2 * (wide ? 14 : 5) ** 2));
    }
  });
  return { primary, secondary, beats };
}

function streamed2(primary: Float32Array, secondary: Float32Array, beats: readonly number[], packet = 360,
  hook?: (stream: BeatFeatureStream, packetIndex: number) => BeatFeatureStream): BeatFeatures[] {
  const ring1 = new SignalRing(10 * FS);
  const ring2 = new SignalRing(10 * FS);
  let stream = createFeatureStream(NAME, FS);
  const out: BeatFeatures[] = [];
  let next = 0;
  for (let p = 0, from = 0; from < primary.length; p++, from += packet) {
    const to = Math.min(primary.length, from + packet);
    ring1.append(primary.subarray(from, to));
    ring2.append(secondary.subarray(from, to));
    while (next < beats.length && (beats[next] as number) < ring1.end) stream.addBeat(beats[next++] as number);
    out.push(...stream.drain(ring1, ring2));
    if (hook) stream = hook(stream, p);
  }
  out.push(...stream.flush(ring1, ring2));
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

describe('feature set default-v2 (two leads)', () => {
  it('reads two leads, has 80 finite features, and its first 52 are exactly default-v1', () => {
    expect(featureSetLeads(NAME)).toBe(2);
    expect(featureSetLeads('default-v1')).toBe(1);
    expect(secondaryLeadIndex(['MLII', 'V1'])).toBe(1);
    expect(secondaryLeadIndex(['V5', 'MLII'])).toBe(0);
    const { primary, secondary, beats } = synthetic2(90);
    const v2 = featuresOfSignal(NAME, new ArraySignal(primary), beats, FS, new ArraySignal(secondary));
    const v1 = featuresOfSignal('default-v1', new ArraySignal(primary), beats, FS);
    expect(createFeatureStream(NAME).dim).toBe(80);
    expect(DEFAULT2_FEATURE_NAMES.length).toBe(80);
    expect(v2.length).toBe(beats.length);
    v2.forEach((f, i) => {
      expect(f.features.every(Number.isFinite)).toBe(true);
      expect(Array.from(f.features.subarray(0, 52))).toEqual(Array.from((v1[i] as BeatFeatures).features));
    });
    // The second-lead features are used (non-zero) once its template exists.
    expect(v2.slice(20).some((f) => f.features[59] !== 0)).toBe(true);
  });

  it('without a second lead, its features are 0 and the rest is unchanged', () => {
    const { primary, secondary, beats } = synthetic2(40, 5);
    const one = featuresOfSignal(NAME, new ArraySignal(primary), beats, FS);
    const two = featuresOfSignal(NAME, new ArraySignal(primary), beats, FS, new ArraySignal(secondary));
    one.forEach((f, i) => {
      expect(Array.from(f.features.subarray(59))).toEqual(new Array(21).fill(0));
      expect(Array.from(f.features.subarray(0, 59))).toEqual(Array.from((two[i] as BeatFeatures).features.subarray(0, 59)));
    });
  });

  it('streaming in 360- and 97-sample packets equals one offline pass', () => {
    const { primary, secondary, beats } = synthetic2(120, 3);
    const offline = featuresOfSignal(NAME, new ArraySignal(primary), beats, FS, new ArraySignal(secondary));
    expectSame(streamed2(primary, secondary, beats, 360), offline);
    expectSame(streamed2(primary, secondary, beats, 97), offline);
  });

  it('a restored stream (structured clone or JSON state) continues exactly as the uninterrupted one', () => {
    const { primary, secondary, beats } = synthetic2(120, 7);
    const plain = streamed2(primary, secondary, beats);
    let size = 0;
    const cloned = streamed2(primary, secondary, beats, 360, (stream, p) => {
      if (p % 5 !== 2) return stream;
      const state = structuredClone(stream.toState());
      size = Math.max(size, JSON.stringify(state, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v)).length);
      return restoreFeatureStream(NAME, state);
    });
    expectSame(cloned, plain);
    expect(size).toBeLessThan(24_000);
    const viaJson = streamed2(primary, secondary, beats, 360, (stream, p) => {
      if (p !== 40) return stream;
      const json = JSON.stringify(stream.toState(), (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v));
      return restoreFeatureStream(NAME, JSON.parse(json));
    });
    expectSame(viaJson, plain);
    expect(() => restoreFeatureStream(NAME, { v: 1, name: NAME, sampleRate: 360, pending: [], prev: null, stats: {} })).toThrow();
  });
});

describe('default-v2 on MIT-BIH', () => {
  const dirs = [['excerpt', excerptDir()], ['full', mitdbDir()]] as const;
  for (const [label, dir] of dirs) {
    it.skipIf(dir === undefined)(`streaming equals offline on ${label} record 208 (two leads)`, async () => {
      const { primary: p, secondary: s } = await loadLeads(dir as string, '208');
      const primary = p.subarray(0, 5 * 60 * FS);
      const secondary = s.subarray(0, 5 * 60 * FS);
      const beats = (await readAnnotations(dir as string, '208'))
        .filter((a) => aamiClassOfCode(a.code) !== undefined && a.sample < primary.length).map((a) => a.sample);
      expectSame(streamed2(primary, secondary, beats), featuresOfSignal(NAME, new ArraySignal(primary), beats, FS, new ArraySignal(secondary)));
    });
  }
});
