import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Value } from '@sinclair/typebox/value';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerEpisodesCommand } from '../cli/commands/episodes.js';
import { EpisodeManifestSchema, type EpisodeManifest } from '../contracts/episode.js';
import { MIT_CODE_OF_AAMI } from '../functions/aami/index.js';
import {
  EcgFunction, type BeatResult, type EpisodeContinue, type EpisodeEnd, type EpisodeEvent, type EpisodeStart, type GapInfo,
} from '../functions/ecg-function/index.js';
import { recordPackets } from '../functions/ecg-function/run-record.js';
import { BeatClassifier } from '../functions/model/index.js';
import { readAnnotations, readRecord } from '../functions/wfdb/index.js';
import {
  createS3Client, EmbeddedS3, EpisodeStore, INVALID_SAMPLE, S3Objects, parseEpisodeId, recordNameOf, type EpisodeContext, type S3Settings,
} from '../storage/index.js';
import { excerptDir, modelPath } from './support/data.js';

const RATE = 360;
const clock = { sample: 0, epochMs: Date.UTC(2024, 4, 6, 7, 8, 9, 0) };
const isoAt = (sample: number) => new Date(Math.round(clock.epochMs + (sample * 1000) / RATE)).toISOString();

interface Call {
  seq: number;
  result: { events: EpisodeEvent[]; beats: BeatResult[]; gap: GapInfo | null };
}

/** What the function emitted for one episode: the expectation every stored form is checked against. */
interface Emitted {
  id: string;
  start: EpisodeStart;
  startCall: number;
  continues: EpisodeContinue[];
  end: EpisodeEnd;
  endCall: number;
  leads: Int16Array[];
  beats: BeatResult[];
}

let scratch: string;
let s3: EmbeddedS3;
let settings: S3Settings;
let client: S3Client;
let store: EpisodeStore;
let ctx: EpisodeContext;
const calls: Call[] = [];
const episodes: Emitted[] = [];
/** Manifests read right after the start call and a few calls later, by stored id. */
const atStart = new Map<string, EpisodeManifest | null>();
const later = new Map<string, EpisodeManifest | null>();

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-episodes-'));
  // The demo's layout: embedded S3 data in <store>/s3, bucket ecgfaas; the CLI test reads it back so.
  s3 = new EmbeddedS3({ directory: path.join(scratch, 'store', 's3') });
  settings = await s3.start();
  client = createS3Client(settings);
  store = new EpisodeStore({ client, bucket: settings.bucket });

  // Record 119 (ventricular bigeminy) through the real function and model, every result stored as it comes.
  const classifier = await BeatClassifier.load(modelPath('default'));
  try {
    ctx = { monitorId: 'mon-1', streamId: 'a1', model: { name: classifier.info.name, sha256: classifier.info.sha256 }, sampleRate: RATE, clock };
    const record = await readRecord(excerptDir(), '119');
    const fn = new EcgFunction({ monitorId: ctx.monitorId, classifier });
    let lastSeq = 0;
    const openedAt = new Map<string, number>();
    for (const packet of recordPackets(record, ctx.monitorId)) {
      const result = await fn.process(packet);
      calls.push({ seq: packet.seq, result: { events: result.events, beats: result.beats, gap: result.gap } });
      const written = await store.write(ctx, packet.seq, result);
      lastSeq = packet.seq;
      for (const event of result.events) {
        const id = storedIdOf(event);
        if (event.type === 'start') {
          atStart.set(id, await store.get(id));
          openedAt.set(id, packet.seq);
        } else if (event.type === 'continue' && packet.seq === (openedAt.get(id) ?? -1) + 5) {
          later.set(id, await store.get(id));
        }
      }
      if (result.events.length > 0) expect(written.objects).toBeGreaterThanOrEqual(2);
    }
    // End of the recording: flush closes the open episode; it is its own call, with the next seq.
    const tail = await fn.flush();
    calls.push({ seq: lastSeq + 1, result: { ...tail, gap: null } });
    await store.write(ctx, lastSeq + 1, tail);
  } finally {
    await classifier.close();
  }
  episodes.push(...emittedEpisodes(calls));
});

afterAll(async () => {
  client?.destroy();
  await s3?.close();
  await rm(scratch, { recursive: true, force: true });
});

function storedIdOf(event: EpisodeEvent): string {
  return `${ctx.monitorId}.${ctx.streamId}.${event.episodeId.slice(event.episodeId.lastIndexOf('_') + 1)}`;
}

function emittedEpisodes(all: Call[]): Emitted[] {
  const out: Emitted[] = [];
  all.forEach((call, index) => {
    for (const event of call.result.events) {
      if (event.type !== 'start') continue;
      const id = storedIdOf(event);
      const continues: EpisodeContinue[] = [];
      let end: EpisodeEnd | undefined;
      let endCall = index;
      for (let j = index; j < all.length && end === undefined; j++) {
        for (const e of (all[j] as Call).result.events) {
          if (e.episodeId !== event.episodeId) continue;
          if (e.type === 'continue') continues.push(e);
          if (e.type === 'end') {
            end = e;
            endCall = j;
          }
        }
      }
      if (end === undefined) throw new Error(`episode ${id} never ended`);
      const length = end.endSample - event.fromSample;
      const leads = event.leads.map((lead, l) => {
        const joined = new Int16Array(length);
        let at = 0;
        for (const part of [lead, ...continues.map((c) => c.leads[l] as Int16Array)]) {
          joined.set(part.subarray(0, Math.max(0, Math.min(part.length, length - at))), at);
          at += part.length;
          if (at >= length) break;
        }
        return joined;
      });
      const earlier = (event as { beats?: BeatResult[] }).beats ?? [];
      const beats = [...earlier, ...all.slice(index, endCall + 1).flatMap((c) => c.result.beats)]
        .filter((b) => b.sample >= event.fromSample && b.sample < end.endSample)
        .sort((a, b) => a.sample - b.sample);
      out.push({ id, start: event, startCall: index, continues, end, endCall, leads, beats });
    }
  });
  return out;
}

function countsOf(beats: readonly BeatResult[]) {
  const counts = { N: 0, S: 0, V: 0, F: 0, Q: 0, abnormal: 0 };
  for (const beat of beats) counts[beat.label] += 1;
  return counts;
}

async function snapshot(prefix: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const listed = await client.send(new ListObjectsV2Command({ Bucket: settings.bucket, Prefix: prefix }));
  for (const object of listed.Contents ?? []) {
    const got = await client.send(new GetObjectCommand({ Bucket: settings.bucket, Key: object.Key }));
    out.set(object.Key as string, Buffer.from(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()).toString('base64'));
  }
  return out;
}

/** Synthetic leads, for the hand-built episodes that exercise gaps and losses the excerpt has none of. */
function leadsOver(from: number, to: number): Int16Array[] {
  return [0, 1].map((lead) => Int16Array.from({ length: to - from }, (_, i) => 1024 + (((from + i) * (lead + 3)) % 400) - 200));
}

function beat(sample: number, label: BeatResult['label']): BeatResult {
  return { sample, seq: null, label, abnormal: label !== 'N', probability: 0.9, pAbnormal: label === 'N' ? 0.1 : 0.9 };
}

function startOf(monitor: string, from: number, to: number, trigger: number): EpisodeStart {
  return {
    type: 'start', episodeId: `${monitor}_${from}`, triggerSample: trigger, fromSample: from, toSample: to,
    leadNames: ['MLII', 'V1'], gain: 200, baseline: 1024, leads: leadsOver(from, to), beats: [],
  } as EpisodeStart;
}

function continueOf(monitor: string, episodeFrom: number, seq: number, from: number, to: number): EpisodeContinue {
  return { type: 'continue', episodeId: `${monitor}_${episodeFrom}`, seq, fromSample: from, toSample: to, leads: leadsOver(from, to) };
}

function endOf(monitor: string, episodeFrom: number, endSample: number, lastAbnormalSample: number): EpisodeEnd {
  return { type: 'end', episodeId: `${monitor}_${episodeFrom}`, endSample, lastAbnormalSample, reason: 'quiet' };
}

describe('episode store over a real S3 server, fed by the ECG function on record 119', () => {
  it('found episodes in the record, at least one ended by quiet and one by the end of data', () => {
    expect(episodes.length).toBeGreaterThanOrEqual(2);
    expect(episodes.map((e) => e.end.reason)).toContain('quiet');
    expect(episodes.at(-1)?.end.reason).toBe('gap');
  });

  it('keeps an open manifest while the episode runs, growing with each packet', () => {
    for (const episode of episodes) {
      const open = atStart.get(episode.id);
      expect(open, episode.id).not.toBeNull();
      expect(Value.Check(EpisodeManifestSchema, open)).toBe(true);
      const start = episode.start;
      expect(open).toMatchObject({
        id: episode.id, monitor: 'mon-1', streamId: 'a1', start: isoAt(start.fromSample), end: null,
        startSample: start.fromSample, endSample: null, samples: start.toSample - start.fromSample, sampleRate: RATE,
        leadNames: ['MLII', 'V1'], gain: 200, baseline: 1024, triggerSample: start.triggerSample, endReason: null,
        record: null, model: ctx.model, lastSeq: (calls[episode.startCall] as Call).seq, updatedAt: isoAt(start.toSample),
      });
      const grown = later.get(episode.id);
      if (grown !== undefined && grown !== null && grown.end === null) {
        expect(grown.lastSeq).toBe((calls[episode.startCall] as Call).seq + 5);
        expect(grown.samples).toBe(start.toSample - start.fromSample + 5 * RATE);
      }
    }
    expect([...later.values()].some((m) => m !== null && m.end === null)).toBe(true);
  });

  it('closes each episode with a manifest that describes its WFDB record', async () => {
    for (const episode of episodes) {
      const manifest = await store.get(episode.id);
      expect(Value.Check(EpisodeManifestSchema, manifest)).toBe(true);
      const ref = parseEpisodeId(episode.id);
      expect(ref).toEqual({ monitorId: 'mon-1', streamId: 'a1', fromSample: episode.start.fromSample });
      expect(manifest).toMatchObject({
        start: isoAt(episode.start.fromSample), end: isoAt(episode.end.endSample), endSample: episode.end.endSample,
        samples: episode.end.endSample - episode.start.fromSample, gapSamples: 0, endReason: episode.end.reason,
        lastAbnormalSample: episode.end.lastAbnormalSample, beats: countsOf(episode.beats),
        record: recordNameOf(ref as NonNullable<typeof ref>),
        lastSeq: Math.max((calls[episode.startCall] as Call).seq, ...episode.continues.map((c) => c.seq)),
      });
      // "mon-1" has a dash, which record names may not: the monitor part carries a hash instead.
      expect(manifest?.record).toMatch(new RegExp(`^mon_1_h[0-9a-f]{8}_a1_${episode.start.fromSample}$`));
    }
  });

  it('downloads a WFDB record our reader reads back: the samples the function emitted, an annotation at every beat', async () => {
    for (const episode of episodes) {
      const out = path.join(scratch, 'download', episode.id);
      const files = await store.download(episode.id, out);
      const name = (await store.get(episode.id))?.record as string;
      expect(files).toEqual(['hea', 'dat', 'atr'].map((ext) => path.join(out, `${name}.${ext}`)));
      const record = await readRecord(out, name);
      expect(record.header).toMatchObject({ samplingFrequency: RATE, sampleCount: episode.end.endSample - episode.start.fromSample });
      expect(record.header.signals.map((s) => [s.description, s.gain, s.baseline, s.format])).toEqual([['MLII', 200, 1024, 16], ['V1', 200, 1024, 16]]);
      expect(record.header.baseTime).toBe(isoAt(episode.start.fromSample).slice(11, 23));
      expect(record.signals).toEqual(episode.leads);
      const annotations = await readAnnotations(out, name);
      expect(annotations.map((a) => a.sample)).toEqual(episode.beats.map((b) => b.sample - episode.start.fromSample));
      expect(annotations.map((a) => a.code)).toEqual(episode.beats.map((b) => MIT_CODE_OF_AAMI[b.label === 'abnormal' ? 'Q' : b.label]));
      expect(episode.beats.some((b) => b.label === 'V')).toBe(true);
    }
  });

  it('is idempotent: the same calls again, by a fresh store instance, leave every object byte-identical', async () => {
    const before = await snapshot('episodes/mon-1/');
    expect(before.size).toBeGreaterThan(100);
    const again = new EpisodeStore({ client, bucket: settings.bucket });
    const first = episodes[0] as Emitted;
    const replay = [first.startCall, first.startCall + 3, first.endCall, calls.length - 1];
    for (const index of replay) {
      const call = calls[index] as Call;
      const result = await again.write(ctx, call.seq, call.result);
      expect(result.objects).toBeGreaterThanOrEqual(1);
    }
    expect(await snapshot('episodes/mon-1/')).toEqual(before);
  });

  it('lists episodes newest first, and by monitor', async () => {
    const mine = await store.list({ monitor: 'mon-1' });
    expect(mine.map((m) => m.id)).toEqual([...episodes].reverse().map((e) => e.id));
    expect(await store.list({ monitor: 'nobody' })).toEqual([]);
    expect(await store.list({ monitor: 'not a monitor' })).toEqual([]);
  });
});

describe('episode store: gaps, lost parts, unknown and open episodes', () => {
  const ctx2 = (): EpisodeContext => ({ ...ctx, monitorId: 'bed7', streamId: 'b2' });

  it('stores a gap the function declared as invalid samples, and counts it', async () => {
    const c = ctx2();
    await store.write(c, 10, { events: [startOf('bed7', 1000, 2000, 1500)], beats: [beat(990, 'N'), beat(1500, 'V')] });
    await store.write(c, 11, { events: [continueOf('bed7', 1000, 11, 2000, 2360)], beats: [beat(2100, 'N')] });
    const gap: GapInfo = { reason: 'seq-gap', missingPackets: 2, fromSample: 2360, toSample: 3080 };
    await store.write(c, 14, { events: [continueOf('bed7', 1000, 14, 3080, 3440)], beats: [beat(3200, 'S')], gap });
    expect(await store.get('bed7.b2.1000')).toMatchObject({ end: null, samples: 2440, gapSamples: 720, beats: { N: 1, V: 1, S: 1 } });
    await store.write(c, 15, { events: [continueOf('bed7', 1000, 15, 3440, 3800), endOf('bed7', 1000, 3600, 3200)], beats: [beat(3500, 'N'), beat(3700, 'N')] });
    const manifest = await store.get('bed7.b2.1000');
    expect(manifest).toMatchObject({ record: 'bed7_b2_1000', samples: 2600, gapSamples: 720, endReason: 'quiet', beats: { N: 2, S: 1, V: 1, F: 0, Q: 0, abnormal: 0 } });
    const out = path.join(scratch, 'gap');
    await store.download('bed7.b2.1000', out);
    const record = await readRecord(out, 'bed7_b2_1000');
    const expected = leadsOver(1000, 3600).map((lead) => lead.fill(INVALID_SAMPLE, 2360 - 1000, 3080 - 1000));
    expect(record.signals).toEqual(expected);
    expect((await readAnnotations(out, 'bed7_b2_1000')).map((a) => [a.sample, a.code])).toEqual([[500, 5], [1100, 1], [2200, 8], [2500, 1]]);
  });

  it('fails the close with EPISODE_PART_MISSING when a part was lost, and closes once it arrives', async () => {
    const c = ctx2();
    // A binary model's 'abnormal' label: counted as such, annotated as Q.
    await store.write(c, 20, { events: [startOf('bed7', 5000, 5360, 5100)], beats: [beat(5100, 'abnormal')] });
    const lost = { events: [continueOf('bed7', 5000, 21, 5360, 5720)], beats: [] };
    const closing = { events: [continueOf('bed7', 5000, 22, 5720, 6080), endOf('bed7', 5000, 6000, 5100)], beats: [] };
    await expect(store.write(c, 22, closing)).rejects.toMatchObject({ code: 'EPISODE_PART_MISSING', message: expect.stringContaining('[5360, 5720)') });
    await expect(store.download('bed7.b2.5000', scratch)).rejects.toMatchObject({ code: 'EPISODE_OPEN' });
    await store.write(c, 21, lost);
    await store.write(c, 22, closing);
    expect(await store.get('bed7.b2.5000')).toMatchObject({ endSample: 6000, samples: 1000, seqs: [[20, 22]], lastSeq: 22, beats: { V: 0, abnormal: 1 } });
    const out = path.join(scratch, 'lost');
    await store.download('bed7.b2.5000', out);
    expect((await readRecord(out, 'bed7_b2_5000')).signals).toEqual(leadsOver(5000, 6000));
    expect((await readAnnotations(out, 'bed7_b2_5000')).map((a) => [a.sample, a.code])).toEqual([[100, 13]]);
    expect((await store.list({ monitor: 'bed7' })).map((m) => m.id).slice(0, 2)).toEqual(['bed7.b2.5000', 'bed7.b2.1000']);
    const all = (await store.list()).map((m) => m.id);
    expect(all).toEqual(expect.arrayContaining(['bed7.b2.5000', ...episodes.map((e) => e.id)]));
  });

  it('closes an episode the device restart ended, though the new session reuses a seq of the episode', async () => {
    const c = ctx2();
    await store.write(c, 0, { events: [startOf('bed7', 8000, 8720, 8400)], beats: [beat(8400, 'V')] });
    await store.write(c, 1, { events: [continueOf('bed7', 8000, 1, 8720, 9080)], beats: [beat(8800, 'N')] });
    // The restarted device's first packet is seq 0 again: the end (and the last beat) come with it.
    const restart = { events: [{ ...endOf('bed7', 8000, 9080, 8400), reason: 'session' as const }], beats: [beat(9000, 'N')] };
    await store.write(c, 0, restart);
    const closed = await store.get('bed7.b2.8000');
    expect(closed).toMatchObject({ endReason: 'session', samples: 1080, seqs: [[0, 1]], lastSeq: 1, beats: { N: 2, V: 1 } });
    const before = await snapshot('episodes/bed7/b2.8000/');
    expect((await store.write(c, 0, restart)).objects).toBe(1);
    expect(await snapshot('episodes/bed7/b2.8000/')).toEqual(before);
    const out = path.join(scratch, 'session');
    await store.download('bed7.b2.8000', out);
    expect((await readRecord(out, 'bed7_b2_8000')).signals).toEqual(leadsOver(8000, 9080));
    expect((await readAnnotations(out, 'bed7_b2_8000')).map((a) => a.sample)).toEqual([400, 800, 1000]);
  });

  it('refuses unknown episodes: get gives null, download EPISODE_NOT_FOUND', async () => {
    expect(await store.get('bed7.b2.999')).toBeNull();
    expect(await store.get('no.such.id.at.all')).toBeNull();
    await expect(store.download('bed7.b2.999', scratch)).rejects.toMatchObject({ name: 'StorageError', code: 'EPISODE_NOT_FOUND' });
    await expect(store.write({ ...ctx2(), streamId: 'Bad.Id' }, 1, { events: [startOf('bed7', 0, 10, 5)], beats: [] }))
      .rejects.toMatchObject({ code: 'EPISODE_BAD_INPUT' });
  });
});

describe('episode store: buffered writes (the outbox storer writes each episode as chunks, once per round)', () => {
  const ctx3 = (): EpisodeContext => ({ ...ctx, monitorId: 'bed9', streamId: 'c3' });

  it('stores record 119 in chunks: the same records and manifests as a write per packet, in far fewer objects', async () => {
    // As the worker's storage thread runs it: PUTs and GETs through the lean client.
    const objects = new S3Objects(settings);
    const buffered = new EpisodeStore({ client, bucket: settings.bucket, objects });
    const c: EpisodeContext = { ...ctx, monitorId: 'mon-b' };
    // The calls the first test stored one object per packet, now in rounds of 4 packets.
    for (const [index, call] of calls.entries()) {
      await buffered.write(c, call.seq, call.result, { bufferParts: true });
      if (index % 4 === 3) await buffered.flush();
    }
    await buffered.flush({ all: true });
    expect(buffered.pending).toBe(0);
    const perPacket = await snapshot('episodes/mon-1/');
    const chunked = await snapshot('episodes/mon-b/');
    expect([...chunked.keys()].some((key) => key.includes('/chunks/'))).toBe(true);
    // Only each episode's closing packet is an object of its own.
    expect([...chunked.keys()].filter((key) => key.includes('/packets/')).length).toBeLessThanOrEqual(episodes.length);
    expect(chunked.size).toBeLessThan(perPacket.size / 2);
    for (const episode of episodes) {
      const id = episode.id.replace('mon-1.', 'mon-b.');
      const manifest = await buffered.get(id);
      const reference = await store.get(episode.id);
      expect({ ...manifest, id: null, monitor: null, record: null }).toEqual({ ...reference, id: null, monitor: null, record: null });
      const out = path.join(scratch, 'chunked', id);
      await buffered.download(id, out);
      expect((await readRecord(out, manifest?.record as string)).signals).toEqual(episode.leads);
      expect((await readAnnotations(out, manifest?.record as string)).map((a) => a.sample)).toEqual(episode.beats.map((b) => b.sample - episode.start.fromSample));
    }
    await objects.close();
  });

  it('closes after a crash: a new store whose manifest lags the chunks, re-applying a packet already in one, closes with every sample once', async () => {
    const c = ctx3();
    const first = new EpisodeStore({ client, bucket: settings.bucket, manifestIntervalMs: 60_000 });
    await first.write(c, 30, { events: [startOf('bed9', 1000, 1360, 1200)], beats: [beat(1200, 'V')] }, { bufferParts: true });
    await first.write(c, 31, { events: [continueOf('bed9', 1000, 31, 1360, 1720)], beats: [beat(1500, 'N')] }, { bufferParts: true });
    await first.write(c, 32, { events: [continueOf('bed9', 1000, 32, 1720, 2080)], beats: [] }, { bufferParts: true });
    expect(await first.flush()).toEqual({ chunks: 1, manifests: 1 });
    await first.write(c, 33, { events: [continueOf('bed9', 1000, 33, 2080, 2440)], beats: [beat(2200, 'N')] }, { bufferParts: true });
    await first.write(c, 34, { events: [continueOf('bed9', 1000, 34, 2440, 2800)], beats: [] }, { bufferParts: true });
    // The manifest is not due yet: stored, it still names packets 30-32 only.
    expect(await first.flush()).toEqual({ chunks: 1, manifests: 0 });
    expect(await first.get('bed9.c3.1000')).toMatchObject({ seqs: [[30, 32]], end: null });
    // The worker dies here. Its adopter re-applies packet 34 (its outbox entry was not dropped yet) and closes.
    const adopter = new EpisodeStore({ client, bucket: settings.bucket });
    await adopter.write(c, 34, { events: [continueOf('bed9', 1000, 34, 2440, 2800)], beats: [] }, { bufferParts: true });
    await adopter.write(c, 35, { events: [continueOf('bed9', 1000, 35, 2800, 3160), endOf('bed9', 1000, 3000, 1200)], beats: [beat(2900, 'N')] }, { bufferParts: true });
    const closed = await adopter.get('bed9.c3.1000');
    expect(closed).toMatchObject({ endSample: 3000, samples: 2000, gapSamples: 0, seqs: [[30, 35]], lastSeq: 35, beats: { N: 3, V: 1 } });
    const out = path.join(scratch, 'crash');
    await adopter.download('bed9.c3.1000', out);
    expect((await readRecord(out, 'bed9_c3_1000')).signals).toEqual(leadsOver(1000, 3000));
    expect((await readAnnotations(out, 'bed9_c3_1000')).map((a) => a.sample)).toEqual([200, 500, 1200, 1900]);
    const keys = [...(await snapshot('episodes/bed9/c3.1000/chunks/')).keys()].map((key) => key.slice(key.lastIndexOf('/') + 1));
    expect(keys).toEqual(['0000000000000031-0000000000000032.msgpack', '0000000000000033-0000000000000034.msgpack', '0000000000000034-0000000000000034.msgpack']);
  });
});

describe('episode ids and record names', () => {
  it('parses ids back, and derives WFDB record names PhysioNet\'s tools take', () => {
    expect(parseEpisodeId('bed7.b2.1000')).toEqual({ monitorId: 'bed7', streamId: 'b2', fromSample: 1000 });
    expect(parseEpisodeId('bed7.B2.1000')).toBeNull();
    expect(parseEpisodeId('bed7.b2.01')).toBeNull();
    expect(recordNameOf({ monitorId: 'bed7', streamId: 'b2', fromSample: 1000 })).toBe('bed7_b2_1000');
    const long = recordNameOf({ monitorId: 'x'.repeat(64), streamId: 'z'.repeat(16), fromSample: Number.MAX_SAFE_INTEGER });
    expect(long).toMatch(/^[A-Za-z0-9_]{1,50}$/);
    // Monitors that differ only in - and _ still get different records.
    expect(recordNameOf({ monitorId: 'a-b', streamId: 's', fromSample: 0 })).not.toBe(recordNameOf({ monitorId: 'a_b', streamId: 's', fromSample: 0 }));
  });
});

describe('episode store when S3 is down', () => {
  it('retries while the store is down and succeeds once it is back on the same port', async () => {
    const port = Number(new URL(settings.endpoint as string).port);
    await s3.close();
    const c: EpisodeContext = { ...ctx, monitorId: 'ward3', streamId: 'c3' };
    const started = Date.now();
    const writing = store.write(c, 1, { events: [startOf('ward3', 0, 720, 400)], beats: [beat(400, 'V')] });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    s3 = new EmbeddedS3({ directory: path.join(scratch, 'store', 's3'), port });
    await s3.start();
    const result = await writing;
    expect(result.retries).toBeGreaterThan(0);
    expect(result.objects).toBe(3); // the monitor marker, the start part, the manifest
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(await store.get('ward3.c3.0')).toMatchObject({ samples: 720, beats: { V: 1 } });
  });

  it('gives up after the deadline with S3_WRITE naming the key', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as { port: number };
        server.close(() => resolve(free));
      });
    });
    const deadClient = createS3Client({ ...settings, endpoint: `http://127.0.0.1:${port}` });
    const dead = new EpisodeStore({ client: deadClient, bucket: settings.bucket, retry: { deadlineMs: 300, baseDelayMs: 20 } });
    const started = Date.now();
    await expect(dead.write({ ...ctx, monitorId: 'ward4', streamId: 'd4' }, 3, { events: [startOf('ward4', 0, 360, 100)], beats: [] }))
      .rejects.toMatchObject({ code: 'S3_WRITE', message: expect.stringMatching(/cannot write s3:\/\/ecgfaas\/episodes\/ward4\/\S+: \d+ attempts/) });
    expect(Date.now() - started).toBeLessThan(5000);
    deadClient.destroy();
  });
});

describe('ecgfaas episodes (after the platform has stopped)', () => {
  async function cli(...args: string[]): Promise<string> {
    const program = new Command('ecgfaas').exitOverride();
    registerEpisodesCommand(program);
    for (const command of program.commands) {
      command.exitOverride();
      for (const sub of command.commands) sub.exitOverride();
    }
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    }) as typeof process.stdout.write);
    try {
      await program.parseAsync(args, { from: 'user' });
    } finally {
      spy.mockRestore();
    }
    return out;
  }

  let expected: EpisodeManifest[];
  beforeAll(async () => {
    expected = await store.list();
    await s3.close();
  });

  it('ls --json prints the manifests from the embedded store on disk, newest first', async () => {
    const printed = JSON.parse(await cli('episodes', 'ls', '--json', '--store', path.join(scratch, 'store')));
    expect(printed).toEqual(expected);
    const bed = JSON.parse(await cli('episodes', 'ls', '--monitor', 'bed7', '--json', '--store', path.join(scratch, 'store')));
    expect(bed.map((m: EpisodeManifest) => m.id)).toEqual(['bed7.b2.8000', 'bed7.b2.5000', 'bed7.b2.1000']);
  });

  it('ls prints a table with every episode', async () => {
    const table = await cli('episodes', 'ls', '--store', path.join(scratch, 'store'));
    for (const m of expected) expect(table).toContain(m.id);
    expect(table).toContain('ended (quiet)');
  });

  it('get writes the record files and prints their paths; an unknown id fails with exit code 1', async () => {
    const episode = episodes[0] as Emitted;
    const out = path.join(scratch, 'cli-get');
    const printed = (await cli('episodes', 'get', episode.id, '--out', out, '--store', path.join(scratch, 'store'))).trim().split('\n');
    expect(printed).toHaveLength(3);
    for (const file of printed) expect(existsSync(file)).toBe(true);
    const record = await readRecord(out, path.basename(printed[0] as string, '.hea'));
    expect(record.signals).toEqual(episode.leads);
    await expect(cli('episodes', 'get', 'mon-1.a1.1', '--out', out, '--store', path.join(scratch, 'store')))
      .rejects.toMatchObject({ name: 'CliError', code: 'CLI_EPISODE_NOT_FOUND', exitCode: 1 });
    await expect(cli('episodes', 'ls', '--store', path.join(scratch, 'nowhere')))
      .rejects.toMatchObject({ code: 'CLI_NO_STORE', exitCode: 1 });
  });

  it('reads an S3 endpoint from --s3-endpoint and the environment instead', async () => {
    const running = new EmbeddedS3({ directory: path.join(scratch, 'store', 's3') });
    const other = await running.start();
    vi.stubEnv('AWS_ACCESS_KEY_ID', other.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', other.secretAccessKey);
    try {
      const printed = JSON.parse(await cli('episodes', 'ls', '--json', '--s3-endpoint', other.endpoint as string, '--bucket', other.bucket, '--monitor', 'ward3'));
      expect(printed.map((m: EpisodeManifest) => m.id)).toEqual(['ward3.c3.0']);
    } finally {
      vi.unstubAllEnvs();
      await running.close();
    }
  });
});
