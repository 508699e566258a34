import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_DELAY_MS, QrsDetector, type QrsDetectorState } from '../functions/detect/index.js';
import { matchBeats, qrsStats, referenceBeatSamples, excludedIntervals } from '../functions/eval/index.js';
import { readAnnotations, readRecord } from '../functions/wfdb/index.js';
import { primaryLeadIndex } from '../functions/datasets.js';
import { mulberry32 as rng } from '../functions/model/mlp.js';

const dir = process.env.ECGFAAS_MITDB;
const FS = 360;

/** A synthetic ECG (P, QRS, T as Gaussians, baseline wander, noise) and its R-peak samples. */
function syntheticEcg(seconds: number, seed = 1): { mv: Float32Array; beats: number[] } {
  const n = Math.round(seconds * FS);
  const mv = new Float32Array(n);
  const rand = rng(seed);
  const beats: number[] = [];
  for (let r = Math.round(0.3 * FS); r < n; r += Math.round((0.65 + 0.35 * rand()) * FS)) beats.push(r);
  const waves: Array<[number, number, number]> = [ // offset s, amplitude mV, sigma s
    [-0.18, 0.15, 0.02], [-0.025, -0.1, 0.008], [0, 1.1, 0.01], [0.025, -0.25, 0.01], [0.26, 0.3, 0.04],
  ];
  for (const r of beats) {
    for (const [off, amp, sd] of waves) {
      const c = r + off * FS;
      const w = sd * FS;
      for (let i = Math.max(0, Math.floor(c - 5 * w)); i < Math.min(n, Math.ceil(c + 5 * w)); i++) {
        mv[i] = (mv[i] as number) + amp * Math.exp(-0.5 * ((i - c) / w) ** 2);
      }
    }
  }
  for (let i = 0; i < n; i++) mv[i] = (mv[i] as number) + 0.3 * Math.sin((2 * Math.PI * 0.25 * i) / FS) + 0.02 * (rand() - 0.5);
  return { mv, beats };
}

function runChunks(mv: Float32Array, sizes: readonly number[], det = new QrsDetector()): number[] {
  const out: number[] = [];
  let at = 0;
  let k = 0;
  while (at < mv.length) {
    const size = sizes.length ? Math.max(1, sizes[k++ % sizes.length] as number) : mv.length;
    out.push(...det.push(mv.subarray(at, Math.min(mv.length, at + size))));
    at += size;
  }
  out.push(...det.flush());
  return out;
}

function expectStrictlyIncreasing(beats: readonly number[]): void {
  for (let i = 1; i < beats.length; i++) expect(beats[i] as number).toBeGreaterThan(beats[i - 1] as number);
}

async function loadLead(record: string, seconds?: number): Promise<{ mv: Float32Array; ref: number[]; excluded: Array<[number, number]> }> {
  const rec = await readRecord(dir as string, record);
  const lead = primaryLeadIndex(rec.header.signals.map((s) => s.description));
  const spec = rec.header.signals[lead]!;
  const adc = rec.signals[lead]!;
  const n = seconds === undefined ? adc.length : Math.min(adc.length, Math.round(seconds * FS));
  const mv = new Float32Array(n);
  for (let i = 0; i < n; i++) mv[i] = ((adc[i] as number) - spec.baseline) / spec.gain;
  const anns = (await readAnnotations(dir as string, record)).filter((a) => a.sample < n);
  return { mv, ref: referenceBeatSamples(anns), excluded: excludedIntervals(anns) };
}

describe('QrsDetector on a synthetic ECG', () => {
  const { mv, beats } = syntheticEcg(120);

  it('finds every beat at its R peak, strictly increasing, nothing extra', () => {
    const got = runChunks(mv, [360]);
    expectStrictlyIncreasing(got);
    const r = matchBeats(beats, got, { windowSamples: 54 });
    expect(qrsStats([r])).toMatchObject({ fn: 0, fp: 0 });
    for (const p of r.pairs) expect(Math.abs((got[p.test] as number) - (beats[p.ref] as number))).toBeLessThanOrEqual(3);
  });

  it('gives the same beats however the stream is split (property)', () => {
    const whole = runChunks(mv, []);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 1200 }), { minLength: 1, maxLength: 20 }), (sizes) => {
        expect(runChunks(mv, sizes)).toEqual(whole);
      }),
      { numRuns: 25 },
    );
  });

  it('returns every beat within the documented delay', () => {
    const det = new QrsDetector();
    const maxDelay = Math.round((MAX_DELAY_MS * FS) / 1000);
    for (let i = 0; i < mv.length; i++) {
      for (const b of det.push(mv.subarray(i, i + 1))) expect(det.end - 1 - b).toBeLessThanOrEqual(maxDelay);
    }
  });

  it('finds a beat whose R peak is exactly at a packet boundary once', () => {
    const whole = runChunks(mv, [360]);
    const b = whole[10] as number;
    for (const cut of [b, b + 1]) {
      // One push ending just before the peak (or on it), the next starting there.
      const det = new QrsDetector();
      const got = [...det.push(mv.subarray(0, cut)), ...det.push(mv.subarray(cut)), ...det.flush()];
      expect(got).toEqual(whole);
      expect(got.filter((x) => x === b)).toHaveLength(1);
    }
  });

  it('restores a checkpoint (structured clone of toState) to exactly the same beats', () => {
    const whole = runChunks(mv, [360]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: mv.length - 1 }), fc.integer({ min: 1, max: 720 }), (cut, size) => {
        const det = new QrsDetector();
        const got = [...det.push(mv.subarray(0, cut))];
        const state: QrsDetectorState = structuredClone(det.toState());
        const restored = QrsDetector.fromState(state);
        expect(restored.end).toBe(cut);
        got.push(...runChunks(mv.subarray(cut), [size], restored));
        expect(got).toEqual(whole);
      }),
      { numRuns: 30 },
    );
  });

  it('has a plain, bounded state', () => {
    const det = new QrsDetector();
    det.push(mv.subarray(0, 5000));
    const state = det.toState();
    let bytes = 0;
    for (const value of Object.values(state)) {
      if (ArrayBuffer.isView(value)) bytes += value.byteLength;
      else expect(['number', 'boolean', 'string']).toContain(typeof value);
    }
    expect(bytes).toBeLessThan(10 * FS * 8);
    expect(() => QrsDetector.fromState({ ...state, yHist: new Float64Array(3) })).toThrow();
  });

  it('resynchronises after a gap: beats after it are found, none inside it', () => {
    const gapStart = 60 * FS + 100;
    const gapEnd = 75 * FS + 77; // the stream resumes at this absolute sample
    const det = new QrsDetector();
    const got = [...det.push(mv.subarray(0, gapStart))];
    expect(det.end).toBe(gapStart);
    det.restart(gapEnd);
    expect(det.end).toBe(gapEnd);
    got.push(...det.push(mv.subarray(gapEnd)), ...det.flush());
    expectStrictlyIncreasing(got);
    expect(got.filter((b) => b >= gapStart && b < gapEnd)).toEqual([]);
    // Beats in the last ~0.5 s before the gap are still pending when it comes and are dropped with the
    // filter memory (restart drops pending candidates); the first beat after it needs ~60 ms of signal.
    const keep = (b: number): boolean => b < gapStart - 0.5 * FS || b >= gapEnd + 60;
    const r = matchBeats(beats.filter(keep), got.filter(keep), { windowSamples: 54 });
    expect(qrsStats([r])).toMatchObject({ fn: 0, fp: 0 });
    expect(() => det.restart(det.end - 1)).toThrow(RangeError);
  });

  it('survives non-finite samples', () => {
    const x = mv.slice();
    for (let i = 20 * FS; i < 20 * FS + 50; i++) x[i] = Number.NaN;
    x[30 * FS] = Number.POSITIVE_INFINITY;
    const got = runChunks(x, [360]);
    const late = (b: number): boolean => b > 32 * FS;
    const r = matchBeats(beats.filter(late), got.filter(late), { windowSamples: 54 });
    expect(qrsStats([r])).toMatchObject({ fn: 0, fp: 0 });
  });

  it('works at other sampling rates and rejects absurd ones', () => {
    expect(() => new QrsDetector({ sampleRate: 50 })).toThrow(RangeError);
    // 250 Hz: resample the synthetic record by linear interpolation.
    const n = Math.floor((mv.length * 250) / FS);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const p = (i * FS) / 250;
      const k = Math.floor(p);
      x[i] = (mv[k] as number) + ((mv[Math.min(k + 1, mv.length - 1)] as number) - (mv[k] as number)) * (p - k);
    }
    const got = runChunks(x, [250], new QrsDetector({ sampleRate: 250 }));
    const r = matchBeats(beats.map((b) => Math.round((b * 250) / FS)), got, { windowSamples: 38 });
    expect(qrsStats([r])).toMatchObject({ fn: 0, fp: 0 });
  });
});

describe('QrsDetector on MIT-BIH', () => {
  it.skipIf(!dir)('gives the same beats however a real record is split (property, 203 first 3 min)', async () => {
    const { mv } = await loadLead('203', 180);
    const whole = runChunks(mv, []);
    expectStrictlyIncreasing(whole);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 12 }), (sizes) => {
        expect(runChunks(mv, sizes)).toEqual(whole);
      }),
      { numRuns: 12 },
    );
    // One sample per push: same beats, each within the documented delay.
    const det = new QrsDetector();
    const maxDelay = Math.round((MAX_DELAY_MS * FS) / 1000);
    const one: number[] = [];
    for (let i = 0; i < mv.length; i++) {
      for (const b of det.push(mv.subarray(i, i + 1))) {
        expect(det.end - 1 - b).toBeLessThanOrEqual(maxDelay);
        one.push(b);
      }
    }
    one.push(...det.flush());
    expect(one).toEqual(whole);
  });

  it.skipIf(!dir)('restores checkpoints mid-stream on a real record (108 first 3 min)', async () => {
    const { mv } = await loadLead('108', 180);
    const whole = runChunks(mv, [360]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: mv.length - 1 }), (cut) => {
        const det = new QrsDetector();
        const got = [...det.push(mv.subarray(0, cut))];
        const restored = QrsDetector.fromState(structuredClone(det.toState()));
        got.push(...runChunks(mv.subarray(cut), [360], restored));
        expect(got).toEqual(whole);
      }),
      { numRuns: 10 },
    );
  });

  it.skipIf(!dir)('detects beats of real records (5 min of 101, 119, 208) with Se and +P >= 99 %', async () => {
    for (const record of ['101', '119', '208']) {
      const { mv, ref, excluded } = await loadLead(record, 300);
      const got = runChunks(mv, [360]);
      const s = qrsStats([matchBeats(ref, got, { excluded })]);
      expect(s.se).toBeGreaterThanOrEqual(0.99);
      expect(s.ppv).toBeGreaterThanOrEqual(0.99);
    }
  });

  it.skipIf(!dir)('finds a real beat at a packet boundary once (118)', async () => {
    const { mv } = await loadLead('118', 60);
    const whole = runChunks(mv, [360]);
    for (const b of whole.slice(5, 10)) {
      const det = new QrsDetector();
      const got = [...det.push(mv.subarray(0, b)), ...det.push(mv.subarray(b, b + 1)), ...det.push(mv.subarray(b + 1)), ...det.flush()];
      expect(got).toEqual(whole);
    }
  });
});
