/**
 * The gateway over real HTTP, in this process: a redis-server of the test's own (so it can be stopped
 * and started again on the same port and directory), the embedded S3 store over HTTP, one warm
 * worker with the default model and a Gateway listening on a free port. Packets are seconds of
 * MIT-BIH record 208 (both leads, ADC units with the header's gain and baseline).
 *
 * Every HTTP call goes through `call()`, which keeps a tally of the answers (error codes, accepted
 * and duplicate packets by format) so /metrics can be checked against what was actually sent.
 * Tests run in order and each one waits for the results of the packets it had accepted; the Redis
 * restart runs last.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { Value } from '@sinclair/typebox/value';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorBodySchema, InvocationResultSchema, LatencyRecordSchema, type InvocationResult, type LatencyRecord } from '../contracts/invocation.js';
import { BINARY_CONTENT_TYPE, encodePacket, type AdcPacket } from '../contracts/packet-binary.js';
import { PacketBodySchema } from '../contracts/packet.js';
import { readRecord, type WfdbRecord } from '../functions/wfdb/index.js';
import { Gateway } from '../gateway/index.js';
import { EmbeddedRedis } from '../queue/index.js';
import { invocationIdOf } from '../queue/invocation-id.js';
import { RedisKeys } from '../queue/keys.js';
import { createS3Client, EmbeddedS3, EpisodeStore, latencyStreamKey } from '../storage/index.js';
import { getText, listKeys } from '../storage/latency/objects.js';
import { WarmWorker } from '../worker/index.js';
import { excerptDir, modelPath } from './support/data.js';

const PREFIX = 'gwtest';
const RATE = 360;
const STREAM = latencyStreamKey(PREFIX);
const keys = new RedisKeys(PREFIX);
const silent = pino({ level: 'silent' });
/** ?wait=1 deadline of the gateway under test (default 1000 ms; more, for a loaded 2-core machine). */
const WAIT_TIMEOUT_MS = 3000;

let dir: string;
let redisDir: string;
let redisServer: EmbeddedRedis;
let redisUrl: string;
let s3Server: EmbeddedS3;
let s3: S3Client;
let bucket: string;
let episodes: EpisodeStore;
let worker: WarmWorker;
let gateway: Gateway;
let base: string;
let redis: Redis;
let rec: WfdbRecord;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-gateway-'));
  redisDir = path.join(dir, 'redis');
  redisServer = new EmbeddedRedis({ directory: redisDir, appendfsync: 'always' });
  redisUrl = await redisServer.start();
  s3Server = new EmbeddedS3({ directory: path.join(dir, 's3') });
  const settings = await s3Server.start();
  bucket = settings.bucket;
  s3 = createS3Client(settings);
  episodes = new EpisodeStore({ client: s3, bucket });
  worker = newWorker();
  await worker.start();
  gateway = new Gateway({ redisUrl, keyPrefix: PREFIX, logger: silent, port: 0, waitTimeoutMs: WAIT_TIMEOUT_MS });
  base = await gateway.start();
  redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  rec = await readRecord(excerptDir(), '208');
});

afterAll(async () => {
  await gateway?.close();
  await worker?.close();
  redis?.disconnect();
  await redisServer?.close();
  s3?.destroy();
  await s3Server?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function newWorker(): WarmWorker {
  return new WarmWorker({
    redisUrl, keyPrefix: PREFIX, modelPath: modelPath('default'), storage: { kind: 'inline', episodes }, s3: { client: s3, bucket }, logger: silent,
  });
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/** Second `second` of record 208, both leads, in ADC units with the header's gain and baseline. */
function packetOf(second: number, seq: number, session?: string): AdcPacket {
  const first = rec.header.signals[0];
  if (first === undefined) throw new Error('record 208 has no signals');
  const from = second * RATE;
  return {
    ...(session !== undefined ? { session } : {}),
    seq, sentAt: Date.now(), sampleRate: RATE, gain: first.gain, baseline: first.baseline,
    leads: rec.header.signals.map((spec, lead) => ({ name: spec.description, samples: (rec.signals[lead] as Int16Array).slice(from, from + RATE) })),
  };
}

/** The JSON body of a packet: ADC units with gain and baseline, or mV without gain. */
function jsonOf(packet: AdcPacket, unit: 'adc' | 'mv'): Record<string, unknown> {
  const body: Record<string, unknown> = {
    ...(packet.session !== undefined ? { session: packet.session } : {}),
    seq: packet.seq, sampleRate: packet.sampleRate,
  };
  if (unit === 'adc') {
    body.gain = packet.gain;
    body.baseline = packet.baseline;
  }
  body.leads = packet.leads.map((lead) => ({
    name: lead.name,
    samples: Array.from(lead.samples, (value) => (unit === 'adc' ? value : (value - packet.baseline) / packet.gain)),
  }));
  return body;
}

// ---------------------------------------------------------------------------------------------
// HTTP, with a tally of every answer
// ---------------------------------------------------------------------------------------------

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body when it is JSON. */
  body: Record<string, unknown>;
}

const tally = { errors: new Map<string, number>(), packets: new Map<string, number>() };
const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

/** One request to the gateway under test (or to `to`, another gateway, whose answers are not tallied). */
async function call(method: string, url: string, init: { contentType?: string; body?: string | Uint8Array; to?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (init.contentType !== undefined) headers['content-type'] = init.contentType;
  const response = await fetch(`${init.to ?? base}${url}`, {
    method, headers,
    ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : new Uint8Array(init.body) } : {}),
  });
  const text = await response.text();
  let body: Record<string, unknown> = {};
  if ((response.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(text) as Record<string, unknown>;
  if (init.to !== undefined) return { status: response.status, headers: response.headers, text, body };
  if (response.status >= 400 && typeof body.code === 'string') bump(tally.errors, body.code);
  if (method === 'POST' && response.status < 300) {
    const format = init.contentType === BINARY_CONTENT_TYPE ? 'binary' : 'json';
    bump(tally.packets, `${body.duplicate === true ? 'duplicate' : 'accepted'}/${format}`);
  }
  return { status: response.status, headers: response.headers, text, body };
}

function postBinary(monitor: string, packet: AdcPacket | Uint8Array, query = ''): Promise<Answer> {
  const body = packet instanceof Uint8Array ? packet : encodePacket(packet);
  return call('POST', `/v1/monitors/${monitor}/packets${query}`, { contentType: BINARY_CONTENT_TYPE, body });
}

function postJson(monitor: string, body: unknown, query = ''): Promise<Answer> {
  return call('POST', `/v1/monitors/${monitor}/packets${query}`, { contentType: 'application/json', body: typeof body === 'string' ? body : JSON.stringify(body) });
}

function expectError(answer: Answer, status: number, code: string): void {
  expect({ status: answer.status, code: answer.body.code }, answer.text).toEqual({ status, code });
  expect(Value.Check(ErrorBodySchema, answer.body), answer.text).toBe(true);
  expect(answer.body.statusCode).toBe(status);
  expect(answer.body.message).not.toBe('');
}

function expectAccepted(answer: Answer, monitor: string, seq: number, session?: string): string {
  expect(answer.status, answer.text).toBe(202);
  const id = invocationIdOf(monitor, session, seq);
  expect(answer.body).toEqual({ invocationId: id });
  return id;
}

/** GET /v1/invocations/:id until it answers 200 (results are written when the worker commits). */
async function resultOf(id: string, timeoutMs = 15_000): Promise<InvocationResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await call('GET', `/v1/invocations/${id}`);
    if (answer.status === 200) {
      expect(Value.Check(InvocationResultSchema, answer.body), answer.text).toBe(true);
      return answer.body as unknown as InvocationResult;
    }
    expect([404, 503], answer.text).toContain(answer.status);
    if (Date.now() > deadline) throw new Error(`no result for invocation ${id} within ${timeoutMs} ms (last: ${answer.status} ${answer.text})`);
    await sleep(100);
  }
}

/** Latency records per invocation id, over the Redis stream and the segments the persister moved to S3. */
async function latencyCounts(): Promise<Map<string, LatencyRecord[]>> {
  // The stream first: an entry that leaves it afterwards is in a segment listed below.
  const entries = (await redis.xrange(STREAM, '-', '+')) as Array<[string, string[]]>;
  const jsons: string[] = [];
  for (const [, fields] of entries) {
    const at = fields.indexOf('r');
    if (at >= 0) jsons.push(fields[at + 1] as string);
  }
  for (const key of await listKeys(s3, bucket, 'runs/')) {
    if (!key.includes('/latency/')) continue;
    jsons.push(...((await getText(s3, bucket, key)) ?? '').split('\n').filter((line) => line.trim() !== ''));
  }
  // The persister may store one stream entry twice (documented); that is the same record byte for byte.
  const seen = new Set<string>();
  const byId = new Map<string, LatencyRecord[]>();
  for (const json of jsons) {
    const record = JSON.parse(json) as LatencyRecord;
    const canonical = JSON.stringify(record);
    if (seen.has(canonical)) continue;
    seen.add(canonical);
    expect(Value.Check(LatencyRecordSchema, record)).toBe(true);
    byId.set(record.invocationId, [...(byId.get(record.invocationId) ?? []), record]);
  }
  return byId;
}

/**
 * Waits until every one of `ids` has a latency record (a record may follow its result: the worker
 * adds the record of a packet with episode writes once they are stored), then checks that each has
 * exactly one.
 */
async function expectOneLatencyRecordEach(ids: readonly string[], timeoutMs = 20_000): Promise<Map<string, LatencyRecord[]>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = await latencyCounts();
    const missing = ids.filter((id) => !records.has(id));
    if (missing.length === 0 || Date.now() > deadline) {
      expect(missing, 'invocations without a latency record').toEqual([]);
      expect(ids.map((id) => records.get(id)?.length), 'latency records per invocation').toEqual(ids.map(() => 1));
      return records;
    }
    await sleep(200);
  }
}

/** The fields of a latency record fixed when its packet is committed (storage times may be completed later). */
const committedPart = (record: LatencyRecord | undefined) => record && {
  invocationId: record.invocationId, monitorId: record.monitorId, session: record.session, seq: record.seq, status: record.status,
  workerId: record.workerId, receivedAt: record.receivedAt, enqueuedAt: record.enqueuedAt, startedAt: record.startedAt,
  computedAt: record.computedAt, publishedAt: record.publishedAt, beats: record.beats, abnormalBeats: record.abnormalBeats,
};

async function metricsText(): Promise<Map<string, number>> {
  const answer = await call('GET', '/metrics');
  expect(answer.status).toBe(200);
  const values = new Map<string, number>();
  for (const line of answer.text.split('\n')) {
    const match = /^(ecgfaas_gateway_(?:packets|errors)_total\{[^}]*\})\s+(\S+)$/.exec(line);
    if (match) values.set(match[1] as string, Number(match[2]));
  }
  return values;
}

// ---------------------------------------------------------------------------------------------
// SSE client
// ---------------------------------------------------------------------------------------------

interface SseEvent {
  event: string;
  data: string;
}

class SseClient {
  readonly events: SseEvent[] = [];
  readonly #abort = new AbortController();
  #done: Promise<void> = Promise.resolve();
  readonly comments: string[] = [];
  /** The server ended the stream (as opposed to this client aborting it). */
  endedByServer = false;

  async open(url: string): Promise<Response> {
    const response = await fetch(url, { signal: this.#abort.signal, headers: { accept: 'text/event-stream' } });
    const reader = response.body?.getReader();
    if (reader === undefined) throw new Error('SSE answer without a body');
    this.#done = (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) {
            this.endedByServer = true;
            return;
          }
          buffer += decoder.decode(value, { stream: true });
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length > 0) this.events.push({ event, data: data.join('\n') });
          }
        }
      } catch {
        // aborted
      }
    })();
    return response;
  }

  async waitFor(predicate: (events: readonly SseEvent[]) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.events)) {
      if (Date.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('gateway over real HTTP', () => {
  it('accepts binary and JSON packets, answers ?wait=1 with the result, and serves it by id', async () => {
    const monitor = 'gw-accept';
    const control = 'gw-accept-bin';

    const first = await postBinary(monitor, packetOf(0, 0));
    const firstId = expectAccepted(first, monitor, 0);

    const waited = await postBinary(monitor, packetOf(1, 1), '?wait=1');
    expect(waited.status, waited.text).toBe(200);
    expect(Value.Check(InvocationResultSchema, waited.body), waited.text).toBe(true);
    const result = waited.body as unknown as InvocationResult;
    expect(result).toMatchObject({ invocationId: invocationIdOf(monitor, undefined, 1), monitorId: monitor, session: null, seq: 1, status: 'processed', startSample: RATE, endSample: 2 * RATE });
    expect(result.latency).toMatchObject({ invocationId: result.invocationId, monitorId: monitor, seq: 1, status: 'processed', workerId: worker.id });
    expect(result.latency.receivedAt).toBeLessThanOrEqual(result.latency.enqueuedAt);
    expect(result.latency.enqueuedAt).toBeLessThanOrEqual(result.latency.publishedAt);

    // JSON: second 2 in ADC units with gain, second 3 in mV without gain.
    const adc = await postJson(monitor, jsonOf(packetOf(2, 2), 'adc'));
    const adcId = expectAccepted(adc, monitor, 2);
    const mv = await postJson(monitor, jsonOf(packetOf(3, 3), 'mv'), '?wait=1');
    expect(mv.status, mv.text).toBe(200);
    const mvResult = mv.body as unknown as InvocationResult;
    expect(mvResult).toMatchObject({ seq: 3, status: 'processed', startSample: 3 * RATE, endSample: 4 * RATE });

    // The same four seconds, all binary, to another monitor: the JSON forms carry the same signal (the
    // mV form converts back to the same ADC values), so the function finds the same beats with the
    // same labels and probabilities (which depend on amplitudes: a wrong gain or baseline shows).
    // Beats are reported up to ~4 s after their R peak: four more seconds bring those of seconds 2 and 3.
    const later: string[] = [];
    for (let s = 4; s < 8; s++) later.push(expectAccepted(await postBinary(monitor, packetOf(s, s)), monitor, s));
    for (let s = 0; s < 8; s++) expectAccepted(await postBinary(control, packetOf(s, s)), control, s);
    const results = await Promise.all([firstId, result.invocationId, adcId, mvResult.invocationId, ...later].map((id) => resultOf(id)));
    const controlResults = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((s) => resultOf(invocationIdOf(control, undefined, s))));
    const beatsOf = (list: InvocationResult[]) => list.flatMap((r) => r.beats.map((b) => ({ sample: b.sample, seq: b.seq, label: b.label, probability: b.probability })));
    const beats = beatsOf(results);
    expect(beats.some((b) => b.seq === 2) && beats.some((b) => b.seq === 3), 'beats of the two JSON packets were classified').toBe(true);
    for (const beat of beats) expect(['N', 'S', 'V', 'F', 'Q']).toContain(beat.label);
    expect(beats).toEqual(beatsOf(controlResults));
    expect(results.every((r) => r.status === 'processed')).toBe(true);

    // GET returns the very object ?wait=1 answered with, latency record included.
    const again = await call('GET', `/v1/invocations/${result.invocationId}`);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(waited.body);
    expect(Value.Check(LatencyRecordSchema, (again.body as unknown as InvocationResult).latency)).toBe(true);

    expectError(await call('GET', `/v1/invocations/${invocationIdOf(monitor, undefined, 999)}`), 404, 'NOT_FOUND');
    // An id no invocation can have is just as unknown (it used to answer 400 INVALID_MONITOR_ID).
    expectError(await call('GET', '/v1/invocations/bad.id'), 404, 'NOT_FOUND');
    expectError(await call('GET', `/v1/invocations/${'a'.repeat(65)}`), 404, 'NOT_FOUND');
  });

  it('answers a repeated (monitor, session, seq) as a duplicate, queued and processed once', async () => {
    const monitor = 'gw-dup';
    const ingestBefore = { ...(gateway.ingestStats ?? { packets: 0, duplicates: 0 }) };
    const workerBefore = worker.stats.packets;

    const original = await postBinary(monitor, packetOf(0, 0, 's1'));
    const id = expectAccepted(original, monitor, 0, 's1');
    const repeated = await postBinary(monitor, packetOf(0, 0, 's1'));
    expect(repeated.status, repeated.text).toBe(200);
    expect(repeated.body).toEqual({ invocationId: id, duplicate: true });
    // The JSON form of the same packet, waiting: still the duplicate answer, not a second result.
    const repeatedJson = await postJson(monitor, jsonOf(packetOf(0, 0, 's1'), 'adc'), '?wait=1');
    expect(repeatedJson.status, repeatedJson.text).toBe(200);
    expect(repeatedJson.body).toEqual({ invocationId: id, duplicate: true });

    // The same packet of a third session sent five times at once: one is queued, four are duplicates.
    const burst = await Promise.all(Array.from({ length: 5 }, () => postBinary(monitor, packetOf(0, 0, 's3'))));
    const burstId = invocationIdOf(monitor, 's3', 0);
    expect(burst.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 202]);
    for (const answer of burst) expect(answer.body).toEqual(answer.status === 202 ? { invocationId: burstId } : { invocationId: burstId, duplicate: true });

    // A new session restarts the count: the same seq is a new packet.
    const restarted = await postBinary(monitor, packetOf(2, 0, 's2'), '?wait=1');
    expect(restarted.status, restarted.text).toBe(200);
    const restartedResult = restarted.body as unknown as InvocationResult;
    expect(restartedResult.invocationId).toBe(invocationIdOf(monitor, 's2', 0));
    expect(restartedResult.invocationId).not.toBe(id);
    expect(restartedResult).toMatchObject({ session: 's2', seq: 0, status: 'processed', gap: { reason: 'new-session' } });

    // The slot's queue is FIFO: s2's result exists, so the duplicates would have been processed by now had they been queued.
    const original1 = await resultOf(id);
    expect(original1).toMatchObject({ session: 's1', seq: 0, status: 'processed' });
    expect(await resultOf(burstId)).toMatchObject({ session: 's3', seq: 0, status: 'processed' });
    expect(gateway.ingestStats?.packets).toBe(ingestBefore.packets + 3);
    expect(gateway.ingestStats?.duplicates).toBe(ingestBefore.duplicates + 6);
    expect(worker.stats.packets - workerBefore, 'packets the worker saw').toBe(3);

    // One latency record each, over the Redis stream and the segments already moved to S3.
    const records = await expectOneLatencyRecordEach([id, burstId, restartedResult.invocationId]);
    expect(committedPart(records.get(id)?.[0])).toEqual(committedPart(original1.latency));
  });

  it('refuses bad requests with their status and code, and loses nothing already accepted', async () => {
    const monitor = 'gw-bad';
    const accepted = expectAccepted(await postBinary(monitor, packetOf(0, 0)), monitor, 0);
    const before = await resultOf(accepted);

    const good = () => jsonOf(packetOf(1, 1), 'adc');
    const goodBinary = encodePacket(packetOf(1, 1));
    const lead = (samples: number[]) => ({ name: 'MLII', samples });
    const json = (body: unknown) => ({ contentType: 'application/json', body: typeof body === 'string' ? body : JSON.stringify(body) });
    const binary = (body: Uint8Array) => ({ contentType: BINARY_CONTENT_TYPE, body });
    const garbled = Buffer.from(goodBinary);
    garbled[0] = 0x7b; // not the magic
    const badLayout = Buffer.from(goodBinary);
    badLayout[1] = 9; // unknown layout version
    const rate250 = encodePacket({ ...packetOf(1, 1), sampleRate: 250 });
    const huge = JSON.stringify({ ...good(), leads: [lead(new Array(RATE).fill(1024)), lead(new Array(RATE).fill(1024))], pad: 'x'.repeat(70 * 1024) });
    const nanText = JSON.stringify(good()).replace('"seq":1', '"seq":NaN');
    expect(nanText).toContain('NaN');

    const cases: Array<{ name: string; monitor?: string; query?: string; request: { contentType?: string; body?: string | Uint8Array }; status: number; code: string }> = [
      { name: 'seq as a string', request: json({ ...good(), seq: '1' }), status: 400, code: 'INVALID_PACKET' },
      { name: 'sample as a string', request: json({ ...good(), leads: [lead(['1024' as unknown as number])] }), status: 400, code: 'INVALID_PACKET' },
      { name: 'missing leads', request: json({ seq: 1, sampleRate: RATE }), status: 400, code: 'INVALID_PACKET' },
      { name: 'missing seq', request: json({ sampleRate: RATE, leads: [lead([1])] }), status: 400, code: 'INVALID_PACKET' },
      { name: 'unknown field', request: json({ ...good(), extra: 1 }), status: 400, code: 'INVALID_PACKET' },
      { name: 'unknown lead field', request: json({ ...good(), leads: [{ ...lead([1]), unit: 'mV' }] }), status: 400, code: 'INVALID_PACKET' },
      { name: '361 samples', request: json({ ...good(), leads: [lead(new Array(RATE + 1).fill(1024))] }), status: 400, code: 'INVALID_PACKET' },
      { name: 'three leads', request: json({ ...good(), leads: [lead([1]), lead([1]), lead([1])] }), status: 400, code: 'INVALID_PACKET' },
      { name: 'negative seq', request: json({ ...good(), seq: -1 }), status: 400, code: 'INVALID_PACKET' },
      { name: 'JSON array', request: json([1, 2]), status: 400, code: 'INVALID_PACKET' },
      { name: 'JSON null', request: json('null'), status: 400, code: 'INVALID_PACKET' },
      { name: 'leads of different lengths', request: json({ ...good(), leads: [lead(new Array(RATE).fill(1024)), { name: 'V1', samples: new Array(RATE - 1).fill(1024) }] }), status: 422, code: 'LEAD_LENGTH_MISMATCH' },
      { name: 'sampleRate 250 (JSON)', request: json({ ...good(), sampleRate: 250 }), status: 422, code: 'UNSUPPORTED_SAMPLE_RATE' },
      { name: 'sampleRate 250 (binary)', request: binary(rate250), status: 422, code: 'UNSUPPORTED_SAMPLE_RATE' },
      { name: 'ADC sample 40000', request: json({ ...good(), leads: [lead([1024, 40000, 1024])] }), status: 422, code: 'SAMPLE_OUT_OF_RANGE' },
      { name: 'ADC sample 1.5', request: json({ ...good(), leads: [lead([1024, 1.5])] }), status: 422, code: 'SAMPLE_OUT_OF_RANGE' },
      { name: 'mV sample 40', request: json({ seq: 1, sampleRate: RATE, leads: [lead([0.1, 40])] }), status: 422, code: 'SAMPLE_OUT_OF_RANGE' },
      { name: 'NaN in JSON', request: json(nanText), status: 400, code: 'BAD_JSON' },
      { name: 'truncated JSON', request: json('{"seq":1,"sampleRate":360,'), status: 400, code: 'BAD_JSON' },
      { name: 'empty JSON body', request: { contentType: 'application/json', body: '' }, status: 400, code: 'BAD_JSON' },
      { name: '__proto__ key', request: json(JSON.stringify(good()).replace('{', '{"__proto__":{"seq":2},')), status: 400, code: 'BAD_JSON' },
      { name: 'truncated binary', request: binary(goodBinary.subarray(0, goodBinary.length - 3)), status: 400, code: 'BAD_BINARY_PACKET' },
      { name: 'binary header only', request: binary(goodBinary.subarray(0, 20)), status: 400, code: 'BAD_BINARY_PACKET' },
      { name: 'garbled binary', request: binary(garbled), status: 400, code: 'BAD_BINARY_PACKET' },
      { name: 'empty binary body', request: binary(new Uint8Array(0)), status: 400, code: 'BAD_BINARY_PACKET' },
      { name: 'unknown binary layout', request: binary(badLayout), status: 400, code: 'BAD_BINARY_PACKET' },
      { name: 'JSON sent as binary', request: binary(Buffer.from(JSON.stringify(good()))), status: 400, code: 'BAD_BINARY_PACKET' },
      { name: 'huge JSON body', request: json(huge), status: 413, code: 'PAYLOAD_TOO_LARGE' },
      { name: 'huge binary body', request: binary(Buffer.alloc(65 * 1024, 0xec)), status: 413, code: 'PAYLOAD_TOO_LARGE' },
      { name: 'text/plain', request: { contentType: 'text/plain', body: JSON.stringify(good()) }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'application/xml', request: { contentType: 'application/xml', body: '<packet seq="1"/>' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'no content type', request: { body: goodBinary }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'no content type, no body', request: {}, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'monitor id with a dot', monitor: 'bad.id', request: json(good()), status: 400, code: 'INVALID_MONITOR_ID' },
      { name: 'monitor id of 65 characters', monitor: 'm'.repeat(65), request: json(good()), status: 400, code: 'INVALID_MONITOR_ID' },
      { name: 'monitor id with a space', monitor: 'a%20b', request: json(good()), status: 400, code: 'INVALID_MONITOR_ID' },
      { name: 'monitor id that is a space', monitor: '%20', request: binary(goodBinary), status: 400, code: 'INVALID_MONITOR_ID' },
      { name: 'monitor id with an encoded slash', monitor: 'a%2Fb', request: binary(goodBinary), status: 400, code: 'INVALID_MONITOR_ID' },
      { name: '?wait=yes', query: '?wait=yes', request: json(good()), status: 400, code: 'INVALID_QUERY' },
      { name: '?wait= (empty)', query: '?wait=', request: binary(goodBinary), status: 400, code: 'INVALID_QUERY' },
      { name: '?wait=1&wait=0', query: '?wait=1&wait=0', request: binary(goodBinary), status: 400, code: 'INVALID_QUERY' },
      { name: 'unknown query parameter', query: '?timeout=5', request: json(good()), status: 400, code: 'INVALID_QUERY' },
    ];
    const queuedBefore = gateway.ingestStats?.packets;
    const outcomes: Array<{ name: string; status: number; code: unknown }> = [];
    for (const c of cases) {
      const answer = await call('POST', `/v1/monitors/${c.monitor ?? monitor}/packets${c.query ?? ''}`, c.request);
      expect(Value.Check(ErrorBodySchema, answer.body), `${c.name}: ${answer.text}`).toBe(true);
      expect(answer.body.statusCode, c.name).toBe(answer.status);
      outcomes.push({ name: c.name, status: answer.status, code: answer.body.code });
    }
    expect(outcomes).toEqual(cases.map((c) => ({ name: c.name, status: c.status, code: c.code })));
    expect(gateway.ingestStats?.packets, 'no refused packet was queued').toBe(queuedBefore);
    expectError(await call('GET', '/v1/monitors/bad.id/events'), 400, 'INVALID_MONITOR_ID');

    // Nothing accepted before is lost or changed, and the next good packet goes through.
    expect(await resultOf(accepted)).toEqual(before);
    const next = await postJson(monitor, good(), '?wait=1');
    expect(next.status, next.text).toBe(200);
    expect(next.body).toMatchObject({ invocationId: invocationIdOf(monitor, undefined, 1), seq: 1, status: 'processed', gap: null, startSample: RATE });
  });

  it('rate-limits a monitor that sends too fast with 429 and Retry-After, and only that monitor', async () => {
    const monitor = 'gw-rate';
    const answers = await Promise.all(Array.from({ length: 40 }, (_, seq) => postBinary(monitor, packetOf(seq, seq))));
    const accepted = answers.filter((a) => a.status === 202);
    const limited = answers.filter((a) => a.status === 429);
    expect(accepted.length + limited.length, answers.map((a) => a.status).join(',')).toBe(40);
    // Burst 30, then 5/s: the 40 arrive within well under two seconds.
    expect(accepted.length).toBeGreaterThanOrEqual(30);
    expect(limited.length).toBeGreaterThanOrEqual(1);
    for (const answer of limited) {
      expectError(answer, 429, 'MONITOR_RATE_LIMITED');
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }

    // Another monitor is not affected (accepted at once; its result waits behind the burst in the one worker's queue).
    const otherId = expectAccepted(await postBinary('gw-rate-other', packetOf(0, 0)), 'gw-rate-other', 0);

    // After Retry-After the limited monitor is accepted again.
    const retryAfter = Number(limited[0]?.headers.get('retry-after'));
    await sleep(retryAfter * 1000);
    expectAccepted(await postBinary(monitor, packetOf(40, 40)), monitor, 40);

    const ids = [...accepted.map((a) => a.body.invocationId as string), invocationIdOf(monitor, undefined, 40)];
    const results = await Promise.all(ids.map((id) => resultOf(id, 30_000)));
    expect(results.every((r) => r.monitorId === monitor)).toBe(true);
    expect(await resultOf(otherId)).toMatchObject({ monitorId: 'gw-rate-other', seq: 0, status: 'processed' });
  });

  it('streams results and episode starts to a bedside display over SSE', async () => {
    const monitor = 'gw-sse';
    const sse = new SseClient();
    const response = await sse.open(`${base}/v1/monitors/${monitor}/events`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const otherMonitor = 'gw-sse-other';

    const results: InvocationResult[] = [];
    for (let seq = 0; seq < 20; seq++) {
      const answer = await postBinary(monitor, packetOf(seq, seq), '?wait=1');
      // 200 with the result; 202 only if the worker was slower than the wait deadline (a loaded machine).
      expect([200, 202], answer.text).toContain(answer.status);
      results.push(answer.status === 200 ? (answer.body as unknown as InvocationResult) : await resultOf(answer.body.invocationId as string));
      if (seq === 0) expect([200, 202]).toContain((await postBinary(otherMonitor, packetOf(0, 0), '?wait=1')).status);
      if (seq >= 14 && results.some((r) => r.events.some((e) => e.type === 'start'))) break;
    }
    const start = results.flatMap((r) => r.events).find((e) => e.type === 'start');
    expect(start, 'record 208 opens an episode within its first seconds (PVCs from 0.6 s)').toBeDefined();
    const abnormal = results.flatMap((r) => r.beats).filter((b) => b.abnormal);
    expect(abnormal.length).toBeGreaterThan(0);

    expect(await sse.waitFor((events) => events.filter((e) => e.event === 'result').length >= results.length, 5000)).toBe(true);
    const streamed = sse.events.filter((e) => e.event === 'result').map((e) => JSON.parse(e.data) as InvocationResult);
    // Exactly this monitor's results, each once, in order, as the waiting requests received them.
    expect(streamed.map((r) => r.invocationId)).toEqual(results.map((r) => r.invocationId));
    expect(streamed).toEqual(results);
    const episodesStreamed = sse.events.filter((e) => e.event === 'episode').map((e) => JSON.parse(e.data) as Record<string, unknown>);
    expect(episodesStreamed).toContainEqual({ monitorId: monitor, ...start });
    expect(episodesStreamed.every((e) => e.type === 'start' || e.type === 'end')).toBe(true);
    expect(sse.comments).toContain(`monitor ${monitor}`);

    // The episode the event names is stored (its objects may be written shortly after the result).
    let manifest = await episodes.get(start?.episodeId ?? '');
    for (const deadline = Date.now() + 10_000; manifest === null && Date.now() < deadline;) {
      await sleep(100);
      manifest = await episodes.get(start?.episodeId ?? '');
    }
    expect(manifest).toMatchObject({ id: start?.episodeId, monitor, triggerSample: start?.triggerSample });

    const metrics = await call('GET', '/metrics');
    expect(metrics.text).toMatch(/^ecgfaas_gateway_sse_clients 1$/m);
    await sse.close();
    const deadline = Date.now() + 5000;
    while (!/^ecgfaas_gateway_sse_clients 0$/m.test((await call('GET', '/metrics')).text) && Date.now() < deadline) await sleep(50);
    expect((await call('GET', '/metrics')).text).toMatch(/^ecgfaas_gateway_sse_clients 0$/m);
  });

  it('serves health, readiness, metrics matching what was sent, and its OpenAPI document', async () => {
    const health = await call('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });

    const ready = await call('GET', '/readyz');
    expect(ready.status, ready.text).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', redis: 'ready' });
    expect(ready.body.workers).toBeGreaterThanOrEqual(1);

    const metrics = await metricsText();
    expect([...metrics.keys()].some((key) => key.startsWith('ecgfaas_gateway_packets_total'))).toBe(true);
    for (const [key, count] of tally.packets) {
      const [outcome, format] = key.split('/');
      expect(metrics.get(`ecgfaas_gateway_packets_total{outcome="${outcome}",format="${format}"}`), key).toBe(count);
    }
    for (const [code, count] of tally.errors) expect(metrics.get(`ecgfaas_gateway_errors_total{code="${code}"}`), code).toBe(count);

    const ui = await call('GET', '/docs');
    expect(ui.status).toBe(200);
    expect(ui.headers.get('content-type')).toContain('text/html');
    expect(ui.text).toMatch(/swagger/i);

    const doc = await call('GET', '/docs/json');
    expect(doc.status).toBe(200);
    expect(String(doc.body.openapi)).toMatch(/^3\./);
    const paths = doc.body.paths as Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> }; responses: Record<string, unknown> }>>;
    const post = paths['/v1/monitors/{monitorId}/packets']?.post;
    expect(post).toBeDefined();
    const content = post?.requestBody?.content ?? {};
    expect(Object.keys(content).sort()).toEqual(['application/json', 'application/octet-stream']);
    expect(Object.keys(content['application/json']?.schema.properties ?? {}).sort()).toEqual(Object.keys(PacketBodySchema.properties).sort());
    expect(Object.keys(post?.responses ?? {})).toEqual(expect.arrayContaining(['200', '202', '400', '413', '415', '422', '429', '503']));
    expect(paths['/v1/invocations/{id}']?.get).toBeDefined();
    expect(paths['/v1/monitors/{monitorId}/events']?.get).toBeDefined();
  });

  it('without a live worker answers 503 NO_WORKERS, and closes promptly while a display is connected', async () => {
    // A second gateway on another key prefix: no worker has ever heartbeat there.
    const idle = new Gateway({ redisUrl, keyPrefix: `${PREFIX}-idle`, logger: silent, port: 0 });
    const to = await idle.start();
    const sse = new SseClient();
    try {
      const refused = await call('POST', '/v1/monitors/gw-idle/packets', { to, contentType: BINARY_CONTENT_TYPE, body: encodePacket(packetOf(0, 0)) });
      expectError(refused, 503, 'NO_WORKERS');
      expect(refused.headers.get('retry-after')).toBe('1');
      const ready = await call('GET', '/readyz', { to });
      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({ status: 'not-ready', redis: 'ready', workers: 0 });

      expect((await sse.open(`${to}/v1/monitors/gw-idle/events`)).status).toBe(200);
      expect(await sse.waitFor(() => sse.comments.includes('monitor gw-idle'), 2000)).toBe(true);
      // A bedside display never hangs up by itself: closing must end its stream, not wait for it.
      const closing = idle.close();
      // A packet arriving while the gateway closes: our 503 with its code and Retry-After, not fastify's bare one.
      const during = await idle.app?.inject({
        method: 'POST', url: '/v1/monitors/gw-idle/packets', headers: { 'content-type': BINARY_CONTENT_TYPE }, payload: encodePacket(packetOf(1, 1)),
      });
      expect(during?.statusCode).toBe(503);
      expect(during?.json()).toMatchObject({ statusCode: 503, code: 'SHUTTING_DOWN' });
      expect(during?.headers['retry-after']).toBe('1');
      const closed = await Promise.race([closing.then(() => true), sleep(3000).then(() => false)]);
      expect(closed, 'Gateway.close() returned within 3 s with an SSE client connected').toBe(true);
      expect(await sse.waitFor(() => sse.endedByServer, 2000), 'the server ended the SSE stream').toBe(true);
    } finally {
      await sse.close();
      await idle.close();
    }
  });

  it('answers 503 REDIS_UNAVAILABLE while Redis is down, then accepts again without a restart, losing nothing', async () => {
    const monitor = 'gw-redis';
    const port = Number(new URL(redisUrl).port);
    const sse = new SseClient();
    expect((await sse.open(`${base}/v1/monitors/${monitor}/events`)).status).toBe(200);
    // Hold the worker's queue so the packets accepted before the stop are still queued when Redis stops.
    const queue = new Queue(keys.queueName(worker.slot), { connection: redis, prefix: keys.bullPrefix });
    queue.on('error', () => {});
    try {
      await queue.pause();
      const before = await Promise.all(Array.from({ length: 6 }, (_, seq) => postBinary(monitor, packetOf(seq, seq))));
      const ids = before.map((answer, seq) => expectAccepted(answer, monitor, seq));
      expect(await redis.hget(keys.assignments, monitor)).toBe(worker.slot);
      // ?wait=1 with no result by the deadline: 202, the packet accepted all the same.
      const waitStarted = Date.now();
      const waited = await postBinary(monitor, packetOf(6, 6), '?wait=1');
      expect(Date.now() - waitStarted).toBeGreaterThanOrEqual(WAIT_TIMEOUT_MS - 100);
      ids.push(expectAccepted(waited, monitor, 6));
      const queued = await queue.getJobCounts('wait', 'active');
      expect(queued.wait ?? 0, JSON.stringify(queued)).toBeGreaterThanOrEqual(1);
      expectError(await call('GET', `/v1/invocations/${ids[0]}`), 404, 'NOT_FOUND');

      await redisServer.close();
      const refused = [
        await postBinary(monitor, packetOf(7, 7)),
        await postBinary(monitor, packetOf(7, 7), '?wait=1'),
        await postJson(monitor, jsonOf(packetOf(7, 7), 'adc')),
        await postBinary(`${monitor}-new`, packetOf(0, 0)),
      ];
      for (const answer of refused) {
        expectError(answer, 503, 'REDIS_UNAVAILABLE');
        expect(answer.headers.get('retry-after')).toBe('1');
      }
      expectError(await call('GET', `/v1/invocations/${ids[0]}`), 503, 'REDIS_UNAVAILABLE');
      const notReady = await call('GET', '/readyz');
      expect(notReady.status).toBe(503);
      expect(notReady.body).toMatchObject({ status: 'not-ready', workers: 0 });
      expect(notReady.body.redis).not.toBe('ready');
      expect((await call('GET', '/healthz')).status).toBe(200);

      redisServer = new EmbeddedRedis({ directory: redisDir, port, appendfsync: 'always' });
      expect(await redisServer.start()).toBe(redisUrl);
      const deadline = Date.now() + 15_000;
      let ready = await call('GET', '/readyz');
      while (ready.status !== 200 && Date.now() < deadline) {
        await sleep(100);
        ready = await call('GET', '/readyz');
      }
      expect(ready.status, ready.text).toBe(200);

      // Redis came back from its append-only file: the queued jobs and the duplicate memory are there.
      expect(await queue.getJobCounts('wait', 'active'), 'queued jobs after the restart').toEqual(queued);
      const again = await postBinary(monitor, packetOf(0, 0));
      expect(again.status, again.text).toBe(200);
      expect(again.body).toEqual({ invocationId: ids[0], duplicate: true });
      ids.push(expectAccepted(await postBinary(monitor, packetOf(7, 7)), monitor, 7));
      const newMonitorId = expectAccepted(await postBinary(`${monitor}-new`, packetOf(0, 0)), `${monitor}-new`, 0);
      await queue.resume();

      // The worker reconnected too: every packet is processed, once.
      const results = await Promise.all([...ids, newMonitorId].map((id) => resultOf(id, 20_000)));
      expect(results.map((r) => [r.monitorId, r.seq, r.status])).toEqual([
        ...[0, 1, 2, 3, 4, 5, 6, 7].map((seq) => [monitor, seq, 'processed']),
        [`${monitor}-new`, 0, 'processed'],
      ]);
      // The gateway's result subscription came back: ?wait=1 and the display's stream work again.
      const live = await postBinary(monitor, packetOf(8, 8), '?wait=1');
      expect(live.status, live.text).toBe(200);
      expect(live.body).toMatchObject({ monitorId: monitor, seq: 8, status: 'processed' });
      ids.push(live.body.invocationId as string);
      expect(await sse.waitFor((events) => events.filter((e) => e.event === 'result').length >= ids.length, 5000)).toBe(true);
      const streamed = sse.events.filter((e) => e.event === 'result').map((e) => (JSON.parse(e.data) as InvocationResult).invocationId);
      expect(streamed).toEqual(ids);

      await expectOneLatencyRecordEach([...ids, newMonitorId]);
    } finally {
      await sse.close();
      await queue.close();
    }
  });
});
