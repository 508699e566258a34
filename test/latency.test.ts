import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LatencyRecord } from '../contracts/invocation.js';
import { EmbeddedRedis } from '../queue/index.js';
import {
  createS3Client, decodeLatencyEntry, EmbeddedS3, encodeLatencyEntry, latencyStreamKey, LatencyPersister, listRuns,
  readRoundTrips, readRunEvents, readRunManifest, readRunRecords, runEventsKey, segmentKey, writeRoundTrips, writeRunEvents, writeRunManifest, type S3Settings,
} from '../storage/index.js';
import { getText, listKeys } from '../storage/latency/objects.js';
import { latencyRecord } from './support/latency-record.js';

const BUCKET = 'latency-test';
const T0 = 1_760_000_000_000;

/** A schema-valid record; seq and times derived from i so sort order and values are known. */
function record(runId: string, i: number, overrides: Partial<LatencyRecord> = {}): LatencyRecord {
  const receivedAt = T0 + i * 7;
  return latencyRecord({ runId, invocationId: `${runId}-inv-${i}`, seq: i, receivedAt, serviceTimeMs: 11 }, {
    monitorId: `m${i % 8}`, session: 's1', workerId: `w${i % 3}`, vm: `vm${i % 3}`,
    hypervisor: i % 2 === 0 ? 'kvm' : 'xen-pv', collocated: 1 + (i % 3),
    enqueuedAt: receivedAt + 1, startedAt: receivedAt + 3, computedAt: receivedAt + 8, storedAt: receivedAt + 9, finishedAt: receivedAt + 10,
    queueWaitMs: 2, computeMs: 5, storageWriteMs: 1,
    gatewayClock: { offsetMs: 0, uncertaintyMs: 0.5 }, workerClock: { offsetMs: 0, uncertaintyMs: 0.5 },
    cpu: { processPct: 40, hostPct: 50, stealPct: 0 },
    ...overrides,
  });
}

let directory: string;
let redisServer: EmbeddedRedis;
let redisUrl: string;
let s3Server: EmbeddedS3;
let settings: S3Settings;
let s3: S3Client;
const connections: Redis[] = [];

async function connect(): Promise<Redis> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  connections.push(redis);
  return redis;
}

async function xadd(redis: Redis, prefix: string, records: LatencyRecord[]): Promise<void> {
  const pipeline = redis.pipeline();
  for (const r of records) pipeline.xadd(latencyStreamKey(prefix), '*', ...encodeLatencyEntry(r));
  await pipeline.exec();
}

async function segmentLines(runId: string): Promise<Array<{ key: string; records: LatencyRecord[] }>> {
  const keys = await listKeys(s3, BUCKET, `runs/${runId}/latency/`);
  return Promise.all(keys.map(async (key) => ({
    key,
    records: ((await getText(s3, BUCKET, key)) ?? '').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LatencyRecord),
  })));
}

const pendingCount = async (redis: Redis, prefix: string): Promise<number> => Number(((await redis.xpending(latencyStreamKey(prefix), 'persist')) as unknown[])[0]);

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'ecgfaas-latency-'));
  redisServer = new EmbeddedRedis({ directory: path.join(directory, 'redis') });
  redisUrl = await redisServer.start();
  s3Server = new EmbeddedS3({ directory: path.join(directory, 's3'), bucket: BUCKET });
  settings = await s3Server.start();
  s3 = createS3Client(settings);
});

afterAll(async () => {
  for (const c of connections) c.disconnect();
  s3?.destroy();
  await s3Server?.close();
  await redisServer?.close();
  await rm(directory, { recursive: true, force: true });
});

describe('latency stream codec', () => {
  it('round-trips a record through the stream fields and refuses what is not one', () => {
    const r = record('run-x', 1);
    const fields = encodeLatencyEntry(r);
    expect(fields[0]).toBe('r');
    expect(decodeLatencyEntry(fields)).toEqual(r);
    expect(() => decodeLatencyEntry(['r', '{"runId":"x"}'])).toThrow(expect.objectContaining({ code: 'LATENCY_DECODE' }));
    expect(() => decodeLatencyEntry(['r', 'not json'])).toThrow(expect.objectContaining({ code: 'LATENCY_DECODE' }));
    expect(() => decodeLatencyEntry(['x', '{}'])).toThrow(expect.objectContaining({ code: 'LATENCY_DECODE' }));
    expect(segmentKey('run-x', '1760000000000-0', '1760000000005-12')).toBe('runs/run-x/latency/1760000000000_0-1760000000005_12.ndjson');
    expect(() => segmentKey('../etc', '1-0', '1-0')).toThrow(expect.objectContaining({ code: 'RUN_ID_INVALID' }));
  });
});

describe('LatencyPersister', () => {
  it('two concurrent persisters store every record exactly once, grouped by run, and empty the stream', async () => {
    const prefix = 'two';
    const writer = await connect();
    const runA = Array.from({ length: 2400 }, (_, i) => record('run-a', i));
    const runB = Array.from({ length: 1200 }, (_, i) => record('run-b', i, { hypervisor: 'xen-hvm' }));
    // Interleaved, and half of it written while the persisters already run.
    const all = runA.flatMap((r, i) => (i < runB.length ? [r, runB[i] as LatencyRecord] : [r]));
    await xadd(writer, prefix, all.slice(0, 1800));

    const persisters = await Promise.all(['p1', 'p2'].map(async (consumer) => new LatencyPersister({
      redis: await connect(), s3, bucket: BUCKET, prefix, consumer, batchSize: 300, intervalMs: 20,
    })));
    await Promise.all(persisters.map((p) => p.start()));
    for (let i = 1800; i < all.length; i += 200) {
      await xadd(writer, prefix, all.slice(i, i + 200));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await Promise.all(persisters.flatMap((p) => [p.close(), p.close()]));
    await Promise.all(persisters.map((p) => p.close()));

    expect(await writer.xlen(latencyStreamKey(prefix))).toBe(0);
    expect(await pendingCount(writer, prefix)).toBe(0);
    for (const [runId, expected] of [['run-a', runA], ['run-b', runB]] as const) {
      const segments = await segmentLines(runId);
      expect(segments.length).toBeGreaterThan(1);
      const stored = segments.flatMap((s) => s.records);
      // Grouped by run: a run's segments hold only its records; no claims happened, so no copies either.
      expect(stored.every((r) => r.runId === runId)).toBe(true);
      expect(stored).toHaveLength(expected.length);
      for (const segment of segments) expect(segment.key).toMatch(/^runs\/run-[ab]\/latency\/\d+_\d+-\d+_\d+\.ndjson$/);
      const read = await readRunRecords({ s3, bucket: BUCKET, runId });
      expect(read.map((r) => r.invocationId).sort()).toEqual(expected.map((r) => r.invocationId).sort());
      expect(read).toEqual([...expected].sort((a, b) => a.receivedAt - b.receivedAt));
    }
  });

  it('keeps entries pending while S3 is down and stores them once it is back', async () => {
    const prefix = 'down';
    const redis = await connect();
    const records = Array.from({ length: 250 }, (_, i) => record('run-down', i));
    await xadd(redis, prefix, records);
    const persister = new LatencyPersister({ redis, s3, bucket: BUCKET, prefix, consumer: 'p1', intervalMs: 60_000, writeAttempts: 2, retryBaseMs: 10 });
    await persister.start();

    const port = Number(new URL(settings.endpoint as string).port);
    await s3Server.close();
    try {
      await expect(persister.flush()).rejects.toMatchObject({ code: 'LATENCY_PERSIST' });
      expect(await redis.xlen(latencyStreamKey(prefix))).toBe(250);
      expect(await pendingCount(redis, prefix)).toBe(250);
    } finally {
      // Same port and directory: the persister's client reaches it again, and earlier objects are still there.
      s3Server = new EmbeddedS3({ directory: path.join(directory, 's3'), bucket: BUCKET, port });
      await s3Server.start();
    }
    expect(await persister.flush()).toBe(250);
    await persister.close();
    expect(await redis.xlen(latencyStreamKey(prefix))).toBe(0);
    expect(await pendingCount(redis, prefix)).toBe(0);
    const read = await readRunRecords({ s3, bucket: BUCKET, runId: 'run-down' });
    expect(read).toHaveLength(250);
  });

  it('claims the entries of a consumer that died, and files entries that are not records', async () => {
    const prefix = 'claim';
    const redis = await connect();
    const stream = latencyStreamKey(prefix);
    const records = Array.from({ length: 40 }, (_, i) => record('run-claim', i));
    await xadd(redis, prefix, records);
    await redis.xadd(stream, '*', 'r', '{"not":"a record"}');
    await redis.xgroup('CREATE', stream, 'persist', '0', 'MKSTREAM');
    // A worker read everything and died before storing it.
    await redis.xreadgroup('GROUP', 'persist', 'dead', 'COUNT', 1000, 'STREAMS', stream, '>');
    expect(await pendingCount(redis, prefix)).toBe(41);

    const persister = new LatencyPersister({ redis, s3, bucket: BUCKET, prefix, consumer: 'alive', intervalMs: 60_000, claimIdleMs: 50 });
    await persister.start(); // the group exists already (BUSYGROUP is fine)
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await persister.flush()).toBe(40);
    await persister.close();
    expect(await redis.xlen(stream)).toBe(0);
    expect(await pendingCount(redis, prefix)).toBe(0);
    expect(await readRunRecords({ s3, bucket: BUCKET, runId: 'run-claim' })).toHaveLength(40);
    const invalid = await listKeys(s3, BUCKET, 'latency-invalid/');
    expect(invalid).toHaveLength(1);
    expect(await getText(s3, BUCKET, invalid[0] as string)).toContain('does not match the schema');
  });
});

describe('reading a run', () => {
  it('merges the stream and the segments without duplicates', async () => {
    const prefix = 'merge';
    const redis = await connect();
    const records = Array.from({ length: 100 }, (_, i) => record('run-merge', i));
    await xadd(redis, prefix, records.slice(0, 60));
    const persister = new LatencyPersister({ redis, s3, bucket: BUCKET, prefix, consumer: 'p1', intervalMs: 60_000 });
    await persister.start();
    expect(await persister.flush()).toBe(60);
    await persister.close();
    // 50..59 again in the stream (a record seen twice), and a copy of a segment (a claim race).
    await xadd(redis, prefix, [...records.slice(50, 100), record('other-run', 1)]);
    const [segment] = await segmentLines('run-merge');
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'runs/run-merge/latency/9_0-9_9.ndjson', Body: `${segment?.records.map((r) => JSON.stringify(r)).join('\n')}\n` }));

    const merged = await readRunRecords({ s3, bucket: BUCKET, runId: 'run-merge', redis, prefix });
    expect(merged.map((r) => r.invocationId)).toEqual(records.map((r) => r.invocationId));
    expect(await readRunRecords({ s3, bucket: BUCKET, runId: 'run-merge' })).toHaveLength(60);
    expect(await readRunRecords({ s3, bucket: BUCKET, runId: 'no-such-run', redis, prefix })).toEqual([]);
  });

  it('stores manifests and client round trips, and lists runs', async () => {
    await writeRunManifest({ s3, bucket: BUCKET, manifest: { runId: 'run-meta', startedAt: '2025-10-09T12:00:00Z', config: { monitors: 8 } } });
    expect(await readRunManifest({ s3, bucket: BUCKET, runId: 'run-meta' })).toEqual({ runId: 'run-meta', startedAt: '2025-10-09T12:00:00Z', config: { monitors: 8 } });
    expect(await readRunManifest({ s3, bucket: BUCKET, runId: 'run-none' })).toBeNull();
    await expect(writeRunManifest({ s3, bucket: BUCKET, manifest: { runId: 'a/b', startedAt: 1, config: {} } })).rejects.toMatchObject({ code: 'RUN_ID_INVALID' });

    expect(await writeRoundTrips({ s3, bucket: BUCKET, runId: 'run-meta', roundTrips: [{ invocationId: 'a', roundTripMs: 12.5 }, { invocationId: 'b', roundTripMs: null }] })).toBe(2);
    expect(await readRoundTrips({ s3, bucket: BUCKET, runId: 'run-meta' })).toEqual(new Map([['a', 12.5], ['b', null]]));
    expect(await readRoundTrips({ s3, bucket: BUCKET, runId: 'run-none' })).toBeNull();
    await expect(writeRoundTrips({ s3, bucket: BUCKET, runId: 'run-meta', roundTrips: [{ invocationId: 'a', roundTripMs: -1 }] })).rejects.toMatchObject({ code: 'ROUNDTRIPS_INVALID' });

    const runs = await listRuns({ s3, bucket: BUCKET });
    expect(runs.find((r) => r.runId === 'run-meta')).toEqual({ runId: 'run-meta', segments: 0, hasManifest: true, hasRoundTrips: true });
    expect(runs.find((r) => r.runId === 'run-merge')).toMatchObject({ segments: 2, hasManifest: false });
  });

  it('stores a run\'s scheduler events, and refuses a stored file that is not a list of events', async () => {
    const events = [{ at: T0, type: 'monitor-moved', reason: 'interference', monitorId: 'm1' }, { at: T0 + 5, type: 'handover-done', reason: 'move' }];
    await writeRunEvents({ s3, bucket: BUCKET, runId: 'run-events', events });
    expect(await readRunEvents({ s3, bucket: BUCKET, runId: 'run-events' })).toEqual(events);
    expect(await readRunEvents({ s3, bucket: BUCKET, runId: 'run-no-events' })).toEqual([]);
    const put = (runId: string, body: string) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: runEventsKey(runId), Body: body }));
    await put('run-events-torn', '[{"at": 1, "type": "monitor-mo');
    await expect(readRunEvents({ s3, bucket: BUCKET, runId: 'run-events-torn' })).rejects.toMatchObject({ code: 'RUN_EVENTS_INVALID', message: expect.stringContaining('is not JSON') });
    await put('run-events-shape', JSON.stringify([{ at: 'yesterday', type: 'monitor-moved', reason: 'x' }]));
    await expect(readRunEvents({ s3, bucket: BUCKET, runId: 'run-events-shape' })).rejects.toMatchObject({ code: 'RUN_EVENTS_INVALID', message: expect.stringContaining('not a list of events') });
    await put('run-events-object', JSON.stringify({ events: [] }));
    await expect(readRunEvents({ s3, bucket: BUCKET, runId: 'run-events-object' })).rejects.toMatchObject({ code: 'RUN_EVENTS_INVALID' });
  });
});
