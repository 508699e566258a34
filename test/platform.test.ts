/**
 * The platform on real processes: a redis-server and an S3 store of this test's own (so they can be
 * killed and restarted on the same port and directory), a gateway and warm workers as child
 * processes (EmbeddedStack, local deploy driver), real HTTP with binary packets of MIT-BIH records.
 *
 * What is checked is "effectively once": every accepted packet's effects (its result
 * `<prefix>:res:<id>`, its latency record, its part of an episode) exist exactly once, also when
 * processing is retried after a worker crash, a Redis crash or an S3 outage.
 *
 * Latency records are counted two ways, because the workers' latency persisters move stream entries
 * to S3 segments (and delete them) while the test runs:
 *   - distinct records per invocationId over the stream plus every persisted segment (a persister may
 *     store the same stream entry twice, which its readers are documented to deduplicate; an entry
 *     is the same record byte for byte, while a second commit of a retried packet is a new record
 *     with its own timestamps, so counting distinct records counts commits);
 *   - the stream's own `entries-added` counter (XINFO STREAM): XADDs during the test must equal the
 *     packets accepted, with none missing, so none is there twice.
 *
 * One stack serves every test (each start costs ~10 s of the 2-core budget); each test uses its own
 * monitors and measures from a drained queue. The most disruptive tests run last.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Client } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EpisodeManifest } from '../contracts/episode.js';
import type { InvocationResult, LatencyRecord } from '../contracts/invocation.js';
import { encodePacket } from '../contracts/packet-binary.js';
import { MIT_CODE_OF_AAMI } from '../functions/aami/index.js';
import { readAnnotations, readRecord, type WfdbRecord } from '../functions/wfdb/index.js';
import { EmbeddedRedis, freePort } from '../queue/embedded-redis.js';
import { invocationIdOf } from '../queue/invocation-id.js';
import { RedisKeys } from '../queue/keys.js';
import { withScripts } from '../queue/scripts.js';
import { EmbeddedStack } from '../stack/index.js';
import { compareStreamIds, createS3Client, EmbeddedS3, EpisodeStore, latencyStreamKey, type S3Settings } from '../storage/index.js';
import { decodeChunk } from '../storage/episodes/parts.js';
import { getText, listKeys } from '../storage/latency/objects.js';
import { excerptDir } from './support/data.js';

const PREFIX = `pt${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const RUN = 'platform-test';
const BUCKET = 'ecgfaas';
const SESSION = 'boot1';
const RATE = 360;
const keys = new RedisKeys(PREFIX);
const STREAM = latencyStreamKey(PREFIX);

let dir: string;
let redisPort: number;
let redisServer: EmbeddedRedis;
let s3Port: number;
let s3Server: EmbeddedS3;
let s3Settings: S3Settings;
let stack: EmbeddedStack;
let gatewayUrl: string;
let redis: Redis;
let s3: S3Client;
let store: EpisodeStore;
const records = new Map<string, WfdbRecord>();

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async function record(name: string): Promise<WfdbRecord> {
  let rec = records.get(name);
  if (rec === undefined) records.set(name, (rec = await readRecord(excerptDir(), name)));
  return rec;
}

/** The binary body of second `second` of a record (both leads, ADC units as recorded) as packet `seq`. */
function body(rec: WfdbRecord, second: number, seq: number): Buffer {
  const first = rec.header.signals[0];
  if (first === undefined) throw new Error('record without signals');
  const from = second * RATE;
  return encodePacket({
    session: SESSION, seq, sentAt: Date.now(), sampleRate: RATE, gain: first.gain, baseline: first.baseline,
    leads: rec.header.signals.map((spec, lead) => ({ name: spec.description, samples: (rec.signals[lead] as Int16Array).subarray(from, from + RATE) })),
  });
}

interface Answer {
  status: number;
  json: Record<string, unknown>;
  /** When the answer arrived (Date.now()). */
  at: number;
}

async function post(monitor: string, packet: Buffer, wait: boolean): Promise<Answer> {
  const response = await fetch(`${gatewayUrl}/v1/monitors/${monitor}/packets${wait ? '?wait=1' : ''}`, {
    method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(packet),
  });
  const json = (await response.json()) as Record<string, unknown>;
  return { status: response.status, json, at: Date.now() };
}

/**
 * Sends one packet as a device would: on 429 (rate limit) or 503 (Redis away) it sends the same
 * packet again, so the packet is accepted in the end. Returns the accepting answer and the refusals.
 */
async function sendUntilAccepted(monitor: string, packet: Buffer, wait: boolean, deadlineMs = 60_000): Promise<{ answer: Answer; refused: number }> {
  const deadline = Date.now() + deadlineMs;
  let refused = 0;
  for (;;) {
    let answer: Answer | null = null;
    try {
      answer = await post(monitor, packet, wait);
    } catch {
      // the gateway itself never goes away in these tests; a reset connection is retried like a 503
    }
    if (answer !== null && answer.status >= 200 && answer.status < 300) return { answer, refused };
    if (answer !== null && answer.status !== 429 && answer.status !== 503) {
      throw new Error(`packet of ${monitor} refused with ${answer.status}: ${JSON.stringify(answer.json)}`);
    }
    refused += 1;
    if (Date.now() > deadline) throw new Error(`packet of ${monitor} not accepted within ${deadlineMs} ms (last: ${answer?.status ?? 'network error'})`);
    await sleep(answer?.status === 429 ? 300 : 100);
  }
}

interface Expected {
  monitor: string;
  seq: number;
}

/**
 * Accepted packets of a test, by invocation id; checks the gateway's id against the documented
 * function. `duplicate: true` means accepted by an earlier attempt whose answer was lost (possible
 * only around a Redis restart), so it counts as accepted where it is allowed.
 */
class Accepted extends Map<string, Expected> {
  add(monitor: string, seq: number, answer: Answer, allowDuplicate = false): string {
    const id = answer.json.invocationId;
    expect(id).toBe(invocationIdOf(monitor, SESSION, seq));
    if (!allowDuplicate) expect(answer.json.duplicate, `${monitor}#${seq} accepted once`).not.toBe(true);
    this.set(id as string, { monitor, seq });
    return id as string;
  }
}

async function entriesAdded(): Promise<number> {
  const exists = await redis.exists(STREAM);
  if (exists === 0) return 0;
  const info = (await redis.call('XINFO', 'STREAM', STREAM)) as unknown[] | Record<string, unknown>;
  const value = Array.isArray(info) ? info[info.indexOf('entries-added') + 1] : info['entries-added'];
  return Number(value);
}

/**
 * The stored manifest of an episode once `ready` holds: an open episode's manifest is rewritten at
 * intervals under load, and catches up within a storer round once its slot's outbox is idle.
 */
async function manifestOnce(store: EpisodeStore, id: string, ready: (manifest: EpisodeManifest) => boolean, timeoutMs = 5000): Promise<EpisodeManifest | null> {
  const deadline = Date.now() + timeoutMs;
  let manifest = await store.get(id);
  while ((manifest === null || !ready(manifest)) && Date.now() < deadline) {
    await sleep(100);
    manifest = await store.get(id);
  }
  return manifest;
}

async function drain(timeoutMs = 60_000): Promise<void> {
  expect(await stack.drain(timeoutMs), `queues drained within ${timeoutMs} ms`).toBe(true);
}

interface SeenRecord {
  record: LatencyRecord;
  json: string;
}

/**
 * Every latency record of the given monitors, in stream order, a record stored twice (stream and
 * segment, or two segments) counted once. The stream is read first: whatever leaves it afterwards is
 * in a segment read later, so nothing falls between the two reads.
 */
async function latencyRecords(monitors: ReadonlySet<string>): Promise<SeenRecord[]> {
  const items: Array<{ id: string; index: number; json: string }> = [];
  const entries = (await redis.xrange(STREAM, '-', '+')) as Array<[string, string[]]>;
  for (const [id, fields] of entries) {
    const at = fields.indexOf('r');
    if (at >= 0) items.push({ id, index: 0, json: fields[at + 1] as string });
  }
  const segmentPrefix = `runs/${RUN}/latency/`;
  for (const key of await listKeys(s3, BUCKET, segmentPrefix)) {
    const first = key.slice(segmentPrefix.length).split('-')[0]?.replace('_', '-') ?? '0-0';
    const text = (await getText(s3, BUCKET, key)) ?? '';
    text.split('\n').filter((line) => line.trim() !== '').forEach((line, index) => items.push({ id: first, index, json: line }));
  }
  items.sort((a, b) => compareStreamIds(a.id, b.id) || a.index - b.index);
  const seen = new Set<string>();
  const out: SeenRecord[] = [];
  for (const item of items) {
    const record = JSON.parse(item.json) as LatencyRecord;
    const json = JSON.stringify(record);
    if (!monitors.has(record.monitorId) || seen.has(json)) continue;
    seen.add(json);
    out.push({ record, json });
  }
  return out;
}

/**
 * The effectively-once check of a test's accepted packets: each has one result, 'processed', and
 * one latency record; no record of these monitors belongs to a packet that was not accepted; and
 * the stream got exactly one XADD per accepted packet since `addedBefore`.
 */
async function expectEffectsOnce(accepted: Accepted, addedBefore: number): Promise<{ results: Map<string, InvocationResult>; latency: SeenRecord[] }> {
  const ids = [...accepted.keys()];
  const values = ids.length === 0 ? [] : await redis.mget(...ids.map((id) => keys.result(id)));
  const results = new Map<string, InvocationResult>();
  const missingResults: string[] = [];
  ids.forEach((id, index) => {
    const json = values[index];
    if (json === null || json === undefined) missingResults.push(`${accepted.get(id)?.monitor}#${accepted.get(id)?.seq}`);
    else results.set(id, JSON.parse(json) as InvocationResult);
  });
  expect(missingResults, 'accepted packets without a result').toEqual([]);
  // Every monitor sends seqs 0, 1, 2, ... with none missing: a gap in a result means the function
  // received a packet before an earlier one (which then comes out 'late': never processed).
  const wrong = [...results].filter(([id, result]) => {
    const expected = accepted.get(id) as Expected;
    return result.status !== 'processed' || result.seq !== expected.seq || result.monitorId !== expected.monitor || result.gap !== null;
  }).map(([id, result]) => `${accepted.get(id)?.monitor}#${accepted.get(id)?.seq}: ${result.status} seq ${result.seq}${result.gap === null ? '' : ` after a ${result.gap.reason}`}`);
  if (wrong.length > 0) {
    // The timeline of the monitors concerned, for the failure report.
    const bad = new Set(wrong.map((line) => line.split('#')[0]));
    const timeline = [...results.values()].filter((r) => bad.has(r.monitorId)).sort((a, b) => a.latency.startedAt - b.latency.startedAt)
      .map((r) => `${r.monitorId}#${r.seq} ${r.status} on ${r.latency.workerId} enqueued ${r.latency.enqueuedAt.toFixed(0)} started ${r.latency.startedAt.toFixed(0)}`);
    console.error(`processing order of the monitors with wrong results:\n${timeline.join('\n')}`);
  }
  expect(wrong, 'results that are not the packet processed in order').toEqual([]);

  const monitors = new Set([...accepted.values()].map((each) => each.monitor));
  const latency = await latencyRecords(monitors);
  const count = new Map<string, number>();
  for (const { record } of latency) count.set(record.invocationId, (count.get(record.invocationId) ?? 0) + 1);
  const label = (id: string) => `${accepted.get(id)?.monitor}#${accepted.get(id)?.seq}`;
  expect({
    lost: ids.filter((id) => !count.has(id)).map(label),
    duplicated: [...count].filter(([, n]) => n > 1).map(([id, n]) => `${label(id)} x${n}`),
    unexpected: [...count.keys()].filter((id) => !accepted.has(id)),
    notProcessed: latency.filter(({ record }) => record.status !== 'processed').map(({ record }) => `${record.monitorId}#${record.seq}: ${record.status}`),
  }, 'latency records, once per accepted packet').toEqual({ lost: [], duplicated: [], unexpected: [], notProcessed: [] });
  expect(await entriesAdded() - addedBefore, 'XADDs to the latency stream').toBe(accepted.size);
  return { results, latency };
}

/** Polls GET /v1/invocations/:id (real HTTP) until every result is there. */
async function fetchResults(ids: readonly string[], timeoutMs = 30_000): Promise<Map<string, InvocationResult>> {
  const out = new Map<string, InvocationResult>();
  const deadline = Date.now() + timeoutMs;
  for (const id of ids) {
    for (;;) {
      const response = await fetch(`${gatewayUrl}/v1/invocations/${id}`);
      if (response.status === 200) {
        out.set(id, (await response.json()) as InvocationResult);
        break;
      }
      await response.arrayBuffer();
      expect(response.status).toBe(404);
      if (Date.now() > deadline) throw new Error(`no result for ${id} within ${timeoutMs} ms`);
      await sleep(100);
    }
  }
  return out;
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function logTails(): Promise<string> {
  const logs = path.join(dir, 'logs');
  const files = await readdir(logs).catch(() => [] as string[]);
  const parts: string[] = [];
  for (const file of files) {
    const text = await readFile(path.join(logs, file), 'utf8').catch(() => '');
    parts.push(`--- ${file} (last 3000 chars)\n${text.slice(-3000)}`);
  }
  return parts.join('\n');
}

async function startS3(): Promise<void> {
  s3Server = new EmbeddedS3({ directory: path.join(dir, 'own-s3'), bucket: BUCKET, port: s3Port });
  s3Settings = await s3Server.start();
}

async function startRedis(): Promise<void> {
  redisServer = new EmbeddedRedis({ directory: path.join(dir, 'own-redis'), port: redisPort, appendfsync: 'always' });
  await redisServer.start();
}

// ---------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-platform-'));
  redisPort = await freePort();
  await startRedis();
  s3Port = 0;
  await startS3();
  s3Port = Number(new URL(s3Settings.endpoint as string).port);

  // EmbeddedStack takes S3 from the environment when ECGFAAS_S3_ENDPOINT is set and hands it to its children.
  const env = {
    ECGFAAS_S3_ENDPOINT: s3Settings.endpoint, ECGFAAS_S3_BUCKET: BUCKET, ECGFAAS_S3_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: s3Settings.accessKeyId, AWS_SECRET_ACCESS_KEY: s3Settings.secretAccessKey,
  };
  const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  try {
    stack = new EmbeddedStack({
      dir, redisUrl: redisServer.url as string, workers: 2, keyPrefix: PREFIX, runId: RUN, logger: pino({ level: 'silent' }),
    });
    const info = await stack.start();
    gatewayUrl = info.gatewayUrl;
    expect(info.embeddedS3).toBe(false);
    expect(info.embeddedRedis).toBe(false);
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  redis = new Redis(redisServer.url as string, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  s3 = createS3Client(s3Settings);
  store = new EpisodeStore({ client: s3, bucket: BUCKET });
}, 120_000);

beforeEach(({ onTestFailed }) => {
  onTestFailed(async () => {
    console.error(`platform test failed; child logs of ${dir}:\n${await logTails()}`);
  });
});

afterAll(async () => {
  await stack?.close();
  redis?.disconnect();
  s3?.destroy();
  await s3Server?.close();
  await redisServer?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe.sequential('platform, effectively once', () => {
  it('1. end to end: results for every seq, episodes listed, a closed episode holds exactly the samples sent', async () => {
    const addedBefore = await entriesAdded();
    const accepted = new Accepted();
    // 208 opens an episode at once and stays in it (frequent PVCs); 223 has episodes that close.
    const streams = [
      { monitor: 'e2e_208', rec: await record('208'), packets: 25 },
      { monitor: 'e2e_223', rec: await record('223'), packets: 40 },
    ];
    const ids = new Map<string, string[]>();
    await Promise.all(streams.map(async ({ monitor, rec, packets }) => {
      const list: string[] = [];
      ids.set(monitor, list);
      for (let seq = 0; seq < packets; seq++) {
        const { answer } = await sendUntilAccepted(monitor, body(rec, seq, seq), true);
        list.push(accepted.add(monitor, seq, answer));
        if (answer.status === 200) expect(answer.json).toMatchObject({ seq, status: 'processed', monitorId: monitor });
        else expect(answer.status).toBe(202); // the wait deadline passed first
      }
    }));
    const results = await fetchResults([...accepted.keys()]);
    for (const [id, { monitor, seq }] of accepted) {
      // sample 0 is the first sample the monitor sent; every packet is one second, no gaps
      expect(results.get(id)).toMatchObject({ monitorId: monitor, seq, status: 'processed', startSample: seq * RATE, endSample: (seq + 1) * RATE, gap: null });
    }
    await drain();
    expect(await stack.failedJobs()).toBe(0);
    await expectEffectsOnce(accepted, addedBefore);

    const resultsOf = (monitor: string) => (ids.get(monitor) ?? []).map((id) => results.get(id) as InvocationResult);
    const episodes = await store.list();

    // 208: one episode, open, holding every packet from its start through the last one sent.
    const r208 = resultsOf('e2e_208');
    const starts208 = r208.flatMap((r) => r.events.filter((e) => e.type === 'start'));
    expect(starts208.length).toBeGreaterThanOrEqual(1);
    expect(episodes.find((m) => m.id === starts208[0]?.episodeId), 'the episode 208 opened is listed').toBeDefined();
    const open = await manifestOnce(store, starts208[0]?.episodeId as string, (m) => m.lastSeq === 24) ?? undefined;
    if (open !== undefined) {
      expect(open.monitor).toBe('e2e_208');
      expect(open.end).toBeNull();
      expect(open.startSample).toBe(starts208[0]?.fromSample);
      expect(open.samples).toBe(25 * RATE - open.startSample);
      expect(open.lastSeq).toBe(24);
    }

    // 223: every episode its results ended is closed in storage, with the end the results gave.
    const r223 = resultsOf('e2e_223');
    const ends = r223.flatMap((r) => r.events.filter((e) => e.type === 'end'));
    expect(ends.length, 'episodes of 223 that closed within 40 s').toBeGreaterThanOrEqual(1);
    const rec = await record('223');
    const beats = new Map<number, string>();
    for (const r of r223) for (const beat of r.beats) beats.set(beat.sample, beat.label);
    for (const end of ends) {
      const manifest = episodes.find((m) => m.id === end.episodeId);
      expect(manifest, `closed episode ${end.episodeId} listed`).toBeDefined();
      if (manifest === undefined) continue;
      expect(manifest).toMatchObject({ monitor: 'e2e_223', endSample: end.endSample, endReason: end.reason, gapSamples: 0 });
      const startSample = manifest.startSample;
      const endSample = manifest.endSample as number;
      expect(manifest.samples).toBe(endSample - startSample);

      const out = path.join(dir, 'download', manifest.id);
      const files = await store.download(manifest.id, out);
      expect(files.map((file) => path.basename(file)).sort()).toEqual(['atr', 'dat', 'hea'].map((ext) => `${manifest.record}.${ext}`));
      const stored = await readRecord(out, manifest.record as string);
      expect(stored.header.signals.map((s) => s.description)).toEqual(['MLII', 'V1']);
      expect(stored.header.signals.map((s) => [s.gain, s.baseline])).toEqual([[200, 1024], [200, 1024]]);
      // The monitor started at record sample 0, so stream sample k is record sample k.
      stored.signals.forEach((samples, lead) => {
        const sent = (rec.signals[lead] as Int16Array).subarray(startSample, endSample);
        expect(samples.length).toBe(sent.length);
        expect(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).equals(Buffer.from(sent.buffer, sent.byteOffset, sent.byteLength)),
          `lead ${lead} of ${manifest.id} equals record 223 [${startSample}, ${endSample})`).toBe(true);
      });
      // The annotations are the beats the results reported inside the episode, at record positions.
      const annotations = await readAnnotations(out, manifest.record as string);
      const expected = [...beats].filter(([sample]) => sample >= startSample && sample < endSample).sort((a, b) => a[0] - b[0])
        .map(([sample, label]) => [sample - startSample, MIT_CODE_OF_AAMI[label === 'abnormal' ? 'Q' : label as keyof typeof MIT_CODE_OF_AAMI]]);
      expect(annotations.map((a) => [a.sample, a.code])).toEqual(expected);
      expect(Object.values(manifest.beats).reduce((sum, n) => sum + n, 0)).toBe(expected.length);
    }
  }, 90_000);

  it('2. per-monitor order under concurrency: 20 monitors x 10 pipelined packets, all processed, in seq order', async () => {
    const addedBefore = await entriesAdded();
    const accepted = new Accepted();
    const names = ['101', '119', '208', '209', '223'];
    const monitors = Array.from({ length: 20 }, (_, i) => `order_${String(i).padStart(2, '0')}`);
    await Promise.all(monitors.map(async (monitor, i) => {
      const rec = await record(names[i % names.length] as string);
      // One connection per monitor, requests pipelined on it: fired without waiting for answers, in order on the wire.
      const client = new Client(gatewayUrl, { pipelining: 10 });
      try {
        const answers = await Promise.all(Array.from({ length: 10 }, async (_, seq) => {
          const response = await client.request({
            path: `/v1/monitors/${monitor}/packets`, method: 'POST',
            headers: { 'content-type': 'application/octet-stream' }, body: body(rec, 20 + i + seq, seq),
          });
          return { status: response.statusCode, json: (await response.body.json()) as Record<string, unknown>, at: Date.now() };
        }));
        answers.forEach((answer, seq) => {
          expect(answer.status, `${monitor}#${seq}: ${JSON.stringify(answer.json)}`).toBe(202);
          accepted.add(monitor, seq, answer);
        });
      } finally {
        await client.close();
      }
    }));
    expect(accepted.size).toBe(200);
    await drain();
    expect(await stack.failedJobs()).toBe(0);
    const { latency } = await expectEffectsOnce(accepted, addedBefore);

    const assignment = await redis.hmget(keys.assignments, ...monitors);
    expect(new Set(assignment).size, 'monitors spread over both workers').toBe(2);
    for (const monitor of monitors) {
      const mine = latency.filter(({ record: r }) => r.monitorId === monitor).map(({ record: r }) => r);
      expect(mine.map((r) => r.seq), `${monitor}: stream order`).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(mine.every((r) => r.status === 'processed')).toBe(true);
      for (let k = 1; k < mine.length; k++) {
        expect((mine[k] as LatencyRecord).startedAt, `${monitor}: seq ${k} started after seq ${k - 1}`).toBeGreaterThanOrEqual((mine[k - 1] as LatencyRecord).startedAt);
      }
    }
  }, 60_000);

  it('a packet committed again (a retried job) adds no second latency record: the record goes with the result', async () => {
    const scripted = withScripts(new Redis(redisServer.url as string, { maxRetriesPerRequest: null }));
    const ck = `${PREFIX}:test-commit`;
    try {
      await scripted.set(`${ck}:lease`, 'w1');
      const ops = (json: string) => ['R', `${ck}:res`, json, 60, 'X', `${ck}:latency`, json, 'L', `${ck}:log`, 'packet', 60];
      expect(await scripted.commit(`${ck}:lease`, 'w1', ...ops('{"first":true}'))).toBe(1);
      expect(await scripted.commit(`${ck}:lease`, 'w1', ...ops('{"first":false}'))).toBe(1);
      expect(await scripted.get(`${ck}:res`)).toBe('{"first":true}');
      expect((await scripted.xrange(`${ck}:latency`, '-', '+')).map(([, fields]) => fields[1])).toEqual(['{"first":true}']);
      // Fenced: a worker that no longer holds the slot writes nothing at all.
      expect(await scripted.commit(`${ck}:lease`, 'w2', 'R', `${ck}:res2`, '{}', 60, 'X', `${ck}:latency`, '{}')).toBe(0);
      expect(await scripted.exists(`${ck}:res2`)).toBe(0);
      expect(await scripted.xlen(`${ck}:latency`)).toBe(1);
    } finally {
      await scripted.del(`${ck}:lease`, `${ck}:res`, `${ck}:latency`, `${ck}:log`);
      scripted.disconnect();
    }
  });

  it('5. S3 down: results still come; episode writes wait in the outbox and are stored once S3 is back; no failed jobs', async () => {
    const addedBefore = await entriesAdded();
    const accepted = new Accepted();
    const monitor = 's3down_208';
    const rec = await record('208');
    // 208 from its 5th second: its PVCs open an episode as soon as the learning period (the first
    // 8 beats) is over; send until one is open, then 2 more packets before the outage.
    let opening: InvocationResult | undefined;
    let pre = 0;
    for (let extra = 2; extra > 0 && pre < 20; pre++) {
      accepted.add(monitor, pre, (await sendUntilAccepted(monitor, body(rec, 5 + pre, pre), true)).answer);
      const results = await fetchResults([...accepted.keys()]);
      opening ??= [...results.values()].find((r) => r.events.some((e) => e.type === 'start'));
      if (opening !== undefined) extra -= 1;
    }
    expect(opening, 'the monitor is inside an episode before the outage').toBeDefined();
    const episodeId = opening?.events.find((e) => e.type === 'start')?.episodeId as string;
    const startSeq = opening?.seq as number;
    const last = pre + 7;

    await s3Server.close();
    const outageIds: string[] = [];
    for (let seq = pre; seq <= last; seq++) {
      // Accepted while S3 is down: the gateway needs only Redis.
      const { answer } = await sendUntilAccepted(monitor, body(rec, 5 + seq, seq), false);
      expect(answer.status).toBe(202);
      outageIds.push(accepted.add(monitor, seq, answer));
    }
    // Classification does not wait for archival: the results come while S3 is down; the episode
    // writes wait in the slot's outbox (and the invocations' latency records with them).
    await fetchResults(outageIds, 30_000);
    const outbox = await redis.llen(keys.outbox(stack.workers.map((w) => w.ready?.workerId as string).find((id) => id !== undefined) as string))
      + (await Promise.all(stack.workers.slice(1).map((w) => redis.llen(keys.outbox(w.ready?.workerId as string))))).reduce((a, b) => a + b, 0);
    expect(outbox, 'episode writes of the outage wait in the outbox').toBeGreaterThan(0);
    await startS3();

    await drain();
    expect(await stack.failedJobs()).toBe(0);
    await expectEffectsOnce(accepted, addedBefore);

    const manifest = await manifestOnce(store, episodeId, (m) => m.lastSeq === last);
    expect(manifest).not.toBeNull();
    expect(manifest?.end).toBeNull();
    expect(manifest?.lastSeq).toBe(last);
    // Every packet from the episode's start through the last one sent, once, the outage's included.
    expect(manifest?.seqs).toEqual([[startSeq, last]]);
    expect(manifest?.samples).toBe((last + 1) * RATE - (manifest?.startSample ?? 0));
    // Its packets after the start are in chunks (one per storer round), each seq at least once.
    const base = `episodes/${monitor}/${episodeId.slice(monitor.length + 1)}/`;
    const partSeqs = new Set<number>();
    for (const key of await listKeys(s3, BUCKET, `${base}chunks/`)) {
      const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      for (const part of decodeChunk(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(), key)) partSeqs.add(part.seq);
    }
    for (const key of await listKeys(s3, BUCKET, `${base}packets/`)) partSeqs.add(Number(path.basename(key, '.msgpack')));
    expect([...partSeqs].sort((a, b) => a - b)).toEqual(Array.from({ length: last - startSeq }, (_, k) => startSeq + 1 + k));
  }, 90_000);

  it('3. worker SIGKILL mid-stream: the survivor adopts the slot; lost 0, duplicated 0', async () => {
    const addedBefore = await entriesAdded();
    const accepted = new Accepted();
    const names = ['101', '119', '208', '209', '223'];
    const monitors = Array.from({ length: 10 }, (_, i) => `kill_${i}`);
    let stop = false;
    let refusals = 0;
    const senders = monitors.map(async (monitor, i) => {
      const rec = await record(names[i % names.length] as string);
      const offset = 60 + i * 3;
      for (let seq = 0; !stop || seq < 3; seq++) {
        const tick = Date.now();
        const { answer, refused } = await sendUntilAccepted(monitor, body(rec, offset + seq, seq), false);
        refusals += refused;
        accepted.add(monitor, seq, answer);
        await sleep(Math.max(0, 200 - (Date.now() - tick)));
      }
    });

    await sleep(2500);
    const assignment = await redis.hgetall(keys.assignments);
    const load = new Map<string, number>();
    for (const monitor of monitors) {
      const slot = assignment[monitor];
      if (slot !== undefined) load.set(slot, (load.get(slot) ?? 0) + 1);
    }
    const [victimSlot] = [...load].sort((a, b) => b[1] - a[1])[0] ?? [];
    const victim = stack.workers.find((worker) => worker.running && worker.ready?.workerId === victimSlot);
    const survivor = stack.workers.find((worker) => worker.running && worker !== victim);
    expect(victim, 'the worker owning most monitors').toBeDefined();
    expect(survivor).toBeDefined();
    // Kill it in the middle of a job: stop it (SIGSTOP) until a job of its queue is active, then SIGKILL.
    const activeKey = `${keys.bullPrefix}:${keys.queueName(victimSlot as string)}:active`;
    const pid = victim?.pid as number;
    let activeAtKill: string[] = [];
    for (let attempt = 0; attempt < 200 && activeAtKill.length === 0; attempt++) {
      process.kill(pid, 'SIGSTOP');
      activeAtKill = await redis.lrange(activeKey, 0, -1);
      if (activeAtKill.length === 0) {
        process.kill(pid, 'SIGCONT');
        await sleep(10);
      }
    }
    const killedAt = Date.now();
    await victim?.kill();
    expect(victim?.running).toBe(false);
    expect(activeAtKill.length, 'the victim died with a job in hand').toBeGreaterThan(0);

    await sleep(5000);
    stop = true;
    await Promise.all(senders);
    // The dead slot's queue waits until its lease lapses and the survivor adopts it (~15 s), then drains.
    await drain(60_000);
    const adoptedAfterMs = Date.now() - killedAt;
    expect(await redis.get(keys.slotLease(victimSlot as string)), 'the survivor holds the dead slot').toBe(survivor?.ready?.workerId);
    expect(await stack.failedJobs()).toBe(0);
    expect(refusals, 'packets refused while a worker was dead (its monitors stay queued)').toBe(0);
    const { latency } = await expectEffectsOnce(accepted, addedBefore);
    for (const monitor of monitors) {
      const seqs = latency.filter(({ record: r }) => r.monitorId === monitor).map(({ record: r }) => r.seq).sort((a, b) => a - b);
      const sent = [...accepted.values()].filter((each) => each.monitor === monitor).length;
      expect(seqs, `${monitor}: every seq once (adopted after ${adoptedAfterMs} ms)`).toEqual(Array.from({ length: sent }, (_, k) => k));
    }
    // Back to two workers for the tests after this one.
    await stack.addWorker();
  }, 120_000);

  it('4. Redis SIGKILLed mid-stream and restarted: no packet answered 2xx is lost, none is done twice', async () => {
    const addedBefore = await entriesAdded();
    const accepted = new Accepted();
    const monitors = ['redis_0', 'redis_1', 'redis_2', 'redis_3'];
    const rec = await record('209');
    let stop = false;
    let killedAt = Number.POSITIVE_INFINITY;
    let refusals = 0;
    const beforeKill = new Set<string>();
    const senders = monitors.map(async (monitor, i) => {
      for (let seq = 0; !stop || seq < 3; seq++) {
        const tick = Date.now();
        // A device keeps a packet until it is accepted: the same seq again after a 503.
        const { answer, refused } = await sendUntilAccepted(monitor, body(rec, i * 20 + seq, seq), false);
        refusals += refused;
        const id = accepted.add(monitor, seq, answer, true);
        if (answer.at < killedAt) beforeKill.add(id);
        await sleep(Math.max(0, 200 - (Date.now() - tick)));
      }
    });

    await sleep(2000);
    killedAt = Date.now();
    await redisServer.kill();
    await sleep(3000);
    await startRedis();
    await sleep(3000);
    stop = true;
    await Promise.all(senders);
    expect(refusals, 'packets refused (503) while Redis was down').toBeGreaterThan(0);
    expect(beforeKill.size).toBeGreaterThan(0);

    await drain(60_000);
    // The packets answered 2xx before the kill: each has its result after the restart.
    const values = await redis.mget(...[...beforeKill].map((id) => keys.result(id)));
    expect(values.filter((v) => v === null).length, 'results missing for packets accepted before the kill').toBe(0);
    expect(await stack.failedJobs()).toBe(0);
    await expectEffectsOnce(accepted, addedBefore);
    for (const monitor of monitors) {
      const sent = [...accepted.values()].filter((each) => each.monitor === monitor).map((each) => each.seq).sort((a, b) => a - b);
      expect(sent).toEqual(Array.from({ length: sent.length }, (_, k) => k));
    }
  }, 90_000);

  it('close() stops every process the stack started', async () => {
    const pids = stack.pids();
    const all = [pids.gateway, ...pids.workers].filter((pid): pid is number => pid !== null);
    expect(all.length).toBe(1 + stack.workers.length);
    expect(stack.workers.filter((worker) => worker.running).length).toBeGreaterThanOrEqual(2);
    await stack.close();
    expect(all.filter((pid) => !isGone(pid)), 'processes still alive after close()').toEqual([]);
    expect(stack.workers.every((worker) => !worker.running)).toBe(true);
  }, 60_000);
});
