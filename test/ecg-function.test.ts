import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EcgPacket } from '../contracts/packet.js';
import { createFeatureStream } from '../functions/features/index.js';
import {
  EcgFunction, type BeatClassifierLike, type EpisodeContinue, type EpisodeEvent, type EpisodeStart,
} from '../functions/ecg-function/index.js';
import { recordPackets, runRecord } from '../functions/ecg-function/run-record.js';
import { BeatClassifier, type ModelInfo } from '../functions/model/index.js';
import { readRecord, type WfdbRecord } from '../functions/wfdb/index.js';
import { excerptDir, modelPath } from './support/data.js';

let classifier: BeatClassifier;
let paper: BeatClassifier;
let record208: WfdbRecord;
let record119: WfdbRecord;

beforeAll(async () => {
  classifier = await BeatClassifier.load(modelPath('default'));
  paper = await BeatClassifier.load(modelPath('paper'));
  record208 = await readRecord(excerptDir(), '208');
  record119 = await readRecord(excerptDir(), '119');
});
afterAll(async () => {
  await classifier.close();
  await paper.close();
});

/**
 * Labels beats by their order of classification, from a script. The episode state machine is pure
 * logic whose timing must be checked to the sample; the real model's labels cannot be dictated, so
 * this one stands in for it (features are still computed by the real feature stream).
 */
class ScriptedClassifier implements BeatClassifierLike {
  readonly info: ModelInfo;
  #ordinal = 0;
  readonly #abnormal: (ordinal: number) => boolean;

  constructor(abnormal: (ordinal: number) => boolean) {
    const dim = createFeatureStream('default-v1').dim;
    this.info = { name: 'scripted', sha256: 'scripted', kind: 'multiclass', classes: ['N', 'S', 'V', 'F', 'Q'], featureSet: 'default-v1', dim, metadata: {} };
    this.#abnormal = abnormal;
  }

  async classify(batch: readonly Float32Array[]): Promise<Float32Array[]> {
    return batch.map(() => (this.#abnormal(this.#ordinal++) ? Float32Array.from([0.1, 0, 0.9, 0, 0]) : Float32Array.from([0.9, 0, 0.1, 0, 0])));
  }
}

function packetsOf(record: WfdbRecord, monitorId = 'm1'): EcgPacket[] {
  return recordPackets(record, monitorId);
}

describe('EcgFunction on real ECG', () => {
  it('resumed from a checkpoint after every packet, gives exactly the output of an uninterrupted run', async () => {
    const whole = await runRecord(record208, classifier);
    expect(whole.beats.length).toBeGreaterThan(200);
    expect(whole.events.some((e) => e.type === 'start')).toBe(true);
    const sizes: number[] = [];
    const resumed = await runRecord(record208, classifier, {
      afterPacket: (fn) => {
        const bytes = fn.toBytes();
        sizes.push(bytes.length);
        return EcgFunction.fromBytes(bytes, classifier);
      },
    });
    expect(resumed.beats).toEqual(whole.beats);
    expect(resumed.events).toEqual(whole.events);
    expect(Math.max(...sizes)).toBeLessThan(64 * 1024);
  });

  it('works the same with the paper model (binary labels)', async () => {
    const run = await runRecord(record119, paper);
    expect(run.beats.length).toBeGreaterThan(150);
    expect(new Set(run.beats.map((b) => b.label))).toEqual(new Set(['N', 'abnormal']));
    const resumed = await runRecord(record119, paper, { afterPacket: (fn) => EcgFunction.fromBytes(fn.toBytes(), paper) });
    expect(resumed.beats).toEqual(run.beats);
  });

  it('ignores a duplicate packet idempotently and refuses a late one, changing no state', async () => {
    const fn = new EcgFunction({ monitorId: 'm1', classifier });
    const packets = packetsOf(record208);
    for (const packet of packets.slice(0, 8)) await fn.process(packet);
    const before = fn.toBytes();
    const duplicate = await fn.process(packets[5] as EcgPacket);
    expect(duplicate).toMatchObject({ status: 'duplicate', seq: 5, beats: [], events: [], startSample: null });
    expect(fn.toBytes()).toEqual(before);
    // seq 9 skipped, 10 processed, then 9 arrives: late, not processed, not misaligned.
    await fn.process(packets[10] as EcgPacket);
    const afterTen = fn.toBytes();
    expect(await fn.process(packets[9] as EcgPacket)).toMatchObject({ status: 'late', seq: 9, beats: [] });
    expect(fn.toBytes()).toEqual(afterTen);
  });

  it('records a seq gap, keeps the timeline aligned and resynchronises the detector', async () => {
    const packets = packetsOf(record208);
    const whole = await runRecord(record208, classifier);
    const fn = new EcgFunction({ monitorId: 'm1', classifier });
    const beats: number[] = [];
    for (const packet of packets) {
      if (packet.seq >= 40 && packet.seq < 45) continue;
      const result = await fn.process(packet);
      if (packet.seq === 45) {
        expect(result.gap).toEqual({ reason: 'seq-gap', missingPackets: 5, fromSample: 40 * 360, toSample: 45 * 360 });
        expect(result.startSample).toBe(45 * 360);
      }
      beats.push(...result.beats.map((b) => b.sample));
    }
    beats.push(...(await fn.flush()).beats.map((b) => b.sample));
    expect(beats.some((s) => s >= 40 * 360 && s < 45 * 360)).toBe(false);
    // Beats well before and well after the gap are the uninterrupted run's beats, at the same samples.
    const far = (s: number) => s < 39 * 360 || s > 48 * 360;
    const reference = whole.beats.map((b) => b.sample).filter(far);
    const found = beats.filter(far);
    const common = found.filter((s) => reference.includes(s)).length;
    expect(common / reference.length).toBeGreaterThan(0.98);
    expect(found.length).toBeLessThanOrEqual(reference.length + 2);
  });

  it('treats a new session as a restart, and a retried packet of the old session as late', async () => {
    const packets = packetsOf(record119);
    const fn = new EcgFunction({ monitorId: 'm1', classifier });
    for (const packet of packets.slice(0, 5)) await fn.process({ ...packet, session: 'a' });
    const restarted = await fn.process({ ...(packets[5] as EcgPacket), seq: 0, session: 'b' });
    expect(restarted.status).toBe('processed');
    expect(restarted.gap).toMatchObject({ reason: 'new-session', missingPackets: null, fromSample: 5 * 360, toSample: 6 * 360 });
    expect(await fn.process({ ...(packets[4] as EcgPacket), session: 'a', seq: 9 })).toMatchObject({ status: 'late' });
    expect(await fn.process({ ...(packets[6] as EcgPacket), seq: 1, session: 'b' })).toMatchObject({ status: 'processed', startSample: 7 * 360 });
  });

  it.each([
    ['a packet of another monitor', (p: EcgPacket) => ({ ...p, monitorId: 'other' }), 'FN_WRONG_MONITOR'],
    ['another sample rate', (p: EcgPacket) => ({ ...p, sampleRate: 250 }), 'FN_SAMPLE_RATE'],
    ['more than one second', (p: EcgPacket) => ({ ...p, leads: p.leads.map((l) => ({ ...l, samples: new Array(361).fill(1024) })) }), 'FN_PACKET_LENGTH'],
    ['leads of different lengths', (p: EcgPacket) => ({ ...p, leads: [p.leads[0]!, { name: 'V1', samples: [1, 2] }] }), 'FN_PACKET_LENGTH'],
    ['NaN in a lead', (p: EcgPacket) => ({ ...p, leads: p.leads.map((l) => ({ ...l, samples: [Number.NaN, ...Array.from(l.samples).slice(1)] })) }), 'FN_BAD_SAMPLE'],
    ['an ADC value out of int16', (p: EcgPacket) => ({ ...p, leads: p.leads.map((l) => ({ ...l, samples: [70000, ...Array.from(l.samples).slice(1)] })) }), 'FN_BAD_SAMPLE'],
    ['a changed lead set', (p: EcgPacket) => ({ ...p, leads: [{ ...p.leads[0]!, name: 'V5' }, p.leads[1]!] }), 'FN_LEADS_CHANGED'],
  ])('refuses %s with a stable code, keeping its state', async (_, mutate, code) => {
    const fn = new EcgFunction({ monitorId: 'm1', classifier });
    const packets = packetsOf(record119);
    await fn.process(packets[0] as EcgPacket);
    const before = fn.toBytes();
    await expect(fn.process(mutate(packets[1] as EcgPacket))).rejects.toMatchObject({ code });
    expect(fn.toBytes()).toEqual(before);
    await expect(fn.process(packets[1] as EcgPacket)).resolves.toMatchObject({ status: 'processed' });
  });

  it('accepts packets in mV (no gain) and stores them at µV resolution', async () => {
    const fn = new EcgFunction({ monitorId: 'm1', classifier });
    const packet = packetsOf(record119)[0] as EcgPacket;
    const mv: EcgPacket = {
      monitorId: 'm1', seq: 0, sampleRate: 360,
      leads: packet.leads.map((l) => ({ name: l.name, samples: Array.from(l.samples, (s) => (s - 1024) / 200) })),
    };
    await expect(fn.process(mv)).resolves.toMatchObject({ status: 'processed', startSample: 0, endSample: 360 });
    expect(() => EcgFunction.fromBytes(Uint8Array.from([1, 2, 3]), classifier)).toThrow(expect.objectContaining({ code: 'FN_BAD_CHECKPOINT' }));
    expect(() => EcgFunction.fromBytes(fn.toBytes(), paper)).toThrow(expect.objectContaining({ code: 'FN_MODEL_MISMATCH' }));
  });
});

describe('episodes (paper semantics: 10 s before the abnormal beat, then every packet until 10 s without one)', () => {
  async function runScripted(abnormal: (ordinal: number) => boolean, record: WfdbRecord) {
    const scripted = new ScriptedClassifier(abnormal);
    const fn = new EcgFunction({ monitorId: 'm1', classifier: scripted });
    const events: EpisodeEvent[] = [];
    const beats: Array<{ sample: number; abnormal: boolean; classifiedInPacket: number }> = [];
    for (const packet of packetsOf(record)) {
      const result = await fn.process(packet);
      events.push(...result.events);
      beats.push(...result.beats.map((b) => ({ sample: b.sample, abnormal: b.abnormal, classifiedInPacket: packet.seq })));
    }
    return { events, beats };
  }

  it('opens with the 10 s before the first abnormal beat, continues packet by packet, closes after 10 quiet seconds', async () => {
    // Beats 100 and 105 abnormal: one episode.
    const { events, beats } = await runScripted((n) => n === 100 || n === 105, record208);
    const first = beats[100]!;
    const last = beats[105]!;
    const starts = events.filter((e): e is EpisodeStart => e.type === 'start');
    expect(starts).toHaveLength(1);
    const start = starts[0]!;
    expect(start.triggerSample).toBe(first.sample);
    expect(start.fromSample).toBe(first.sample - 3600);
    expect(start.toSample).toBe((first.classifiedInPacket + 1) * 360);
    expect(start.leads[0]!.length).toBe(start.toSample - start.fromSample);
    expect(Array.from(start.leads[0]!)).toEqual(Array.from(record208.signals[0]!.subarray(start.fromSample, start.toSample)));
    const end = events.find((e) => e.type === 'end');
    expect(end).toMatchObject({ episodeId: start.episodeId, reason: 'quiet', lastAbnormalSample: last.sample, endSample: last.sample + 3600 });
    // The continue events tile the episode after the start window: contiguous, no overlap, through the end.
    const continues = events.filter((e): e is EpisodeContinue => e.type === 'continue');
    let cursor = start.toSample;
    for (const c of continues) {
      expect(c.fromSample).toBe(cursor);
      expect(Array.from(c.leads[1]!)).toEqual(Array.from(record208.signals[1]!.subarray(c.fromSample, c.toSample)));
      cursor = c.toSample;
    }
    expect(cursor).toBeGreaterThanOrEqual(last.sample + 3600);
    expect(cursor - (last.sample + 3600)).toBeLessThan(6 * 360);
    // Nothing after the end event.
    expect(events.at(-1)?.type).toBe('end');
  });

  it('starts a second episode when an abnormal beat comes after the first one closed', async () => {
    const { events, beats } = await runScripted((n) => n === 20 || n === 200, record208);
    expect(beats[200]!.sample - beats[20]!.sample).toBeGreaterThan(3600 * 2);
    expect(events.filter((e) => e.type === 'start')).toHaveLength(2);
    expect(events.filter((e) => e.type === 'end')).toHaveLength(2);
  });

  it('never opens an episode when every beat is normal', async () => {
    const { events } = await runScripted(() => false, record119);
    expect(events).toEqual([]);
  });
});
