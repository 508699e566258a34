/** Reading a run back: its latency records (S3 segments plus what is still in Redis), manifest and client round trips. */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Redis } from 'ioredis';
import pLimit from 'p-limit';
import type { LatencyRecord } from '../../contracts/invocation.js';
import { StorageError } from '../errors.js';
import { assertRunId, decodeLatencyEntry, latencyStreamKey, parseEntries, parseLatencyJson, roundTripsKey, runEventsKey, runManifestKey, RUNS_PREFIX, segmentPrefix } from './codec.js';
import { getText, listKeys, putText } from './objects.js';

export interface RunStore {
  s3: S3Client;
  bucket: string;
}

export interface ReadRunRecordsOptions extends RunStore {
  runId: string;
  /** Also include the run's records still in the stream (not yet persisted). */
  redis?: Redis;
  /** Redis key prefix (default `ecgfaas`). */
  prefix?: string;
}

/**
 * Every record of a run, once each (by invocationId), sorted by receivedAt. The stream is read
 * before the segments: an entry leaves the stream only after its segment is stored, so a record
 * persisted between the two reads is still seen.
 */
export async function readRunRecords(options: ReadRunRecordsOptions): Promise<LatencyRecord[]> {
  const { s3, bucket, runId } = options;
  assertRunId(runId);
  const byInvocation = new Map<string, LatencyRecord>();
  const keep = (record: LatencyRecord) => {
    if (record.runId === runId && !byInvocation.has(record.invocationId)) byInvocation.set(record.invocationId, record);
  };
  if (options.redis !== undefined) {
    for await (const record of streamRecords(options.redis, latencyStreamKey(options.prefix))) keep(record);
  }
  const keys = (await listKeys(s3, bucket, segmentPrefix(runId))).filter((key) => key.endsWith('.ndjson')).sort();
  const segments = await pLimit(8).map(keys, async (key) => ({ key, text: (await getText(s3, bucket, key)) ?? '' }));
  for (const { key, text } of segments) {
    let line = 0;
    for (const json of text.split('\n')) {
      line++;
      if (json.trim() === '') continue;
      try {
        keep(parseLatencyJson(json));
      } catch (error) {
        throw new StorageError('LATENCY_DECODE', `${key} line ${line}: ${(error as Error).message}`, { cause: error });
      }
    }
  }
  return [...byInvocation.values()].sort((a, b) => a.receivedAt - b.receivedAt || (a.invocationId < b.invocationId ? -1 : a.invocationId > b.invocationId ? 1 : 0));
}

/** The stream's records in pages (entries that are not records are skipped: the persister files them separately). */
async function* streamRecords(redis: Redis, stream: string, pageSize = 5000): AsyncGenerator<LatencyRecord> {
  let start = '-';
  for (;;) {
    const entries = parseEntries(await redis.call('XRANGE', stream, start, '+', 'COUNT', pageSize));
    for (const [, fields] of entries) {
      if (fields === null) continue;
      try {
        yield decodeLatencyEntry(fields);
      } catch {
        // not a record
      }
    }
    const last = entries[entries.length - 1];
    if (last === undefined || entries.length < pageSize) return;
    start = `(${last[0]}`;
  }
}

export interface RunSummary {
  runId: string;
  /** Latency segments stored in S3 (records still in Redis are not counted). */
  segments: number;
  hasManifest: boolean;
  hasRoundTrips: boolean;
}

/** Every run with anything stored under runs/, by run id. */
export async function listRuns({ s3, bucket }: RunStore): Promise<RunSummary[]> {
  const runs = new Map<string, RunSummary>();
  for (const key of await listKeys(s3, bucket, RUNS_PREFIX)) {
    const rest = key.slice(RUNS_PREFIX.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) continue;
    const runId = rest.slice(0, slash);
    const file = rest.slice(slash + 1);
    let run = runs.get(runId);
    if (run === undefined) runs.set(runId, (run = { runId, segments: 0, hasManifest: false, hasRoundTrips: false }));
    if (file.startsWith('latency/') && file.endsWith('.ndjson')) run.segments++;
    else if (file === 'run.json') run.hasManifest = true;
    else if (file === 'roundtrips.ndjson') run.hasRoundTrips = true;
  }
  return [...runs.values()].sort((a, b) => (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0));
}

/** What a run was: free-form, with at least these fields. */
export interface RunManifest {
  runId: string;
  /** ISO time or epoch ms. */
  startedAt: string | number;
  config: unknown;
  [key: string]: unknown;
}

export async function writeRunManifest({ s3, bucket, manifest }: RunStore & { manifest: RunManifest }): Promise<void> {
  checkManifest(manifest, 'run manifest');
  await putText(s3, bucket, runManifestKey(manifest.runId), `${JSON.stringify(manifest, null, 2)}\n`, 'application/json');
}

/** The run's manifest, or null when none was written. */
export async function readRunManifest({ s3, bucket, runId }: RunStore & { runId: string }): Promise<RunManifest | null> {
  const key = runManifestKey(runId);
  const text = await getText(s3, bucket, key);
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new StorageError('RUN_MANIFEST_INVALID', `${key} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  return checkManifest(value, key);
}

function checkManifest(value: unknown, what: string): RunManifest {
  const m = value as Partial<RunManifest> | null;
  if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof m.runId !== 'string'
    || (typeof m.startedAt !== 'string' && typeof m.startedAt !== 'number') || !('config' in m)) {
    throw new StorageError('RUN_MANIFEST_INVALID', `${what} must be an object with runId, startedAt and config`);
  }
  assertRunId(m.runId);
  return m as RunManifest;
}

/** One device-side timing: send to receipt, null when no answer came before the client's deadline. */
export interface RoundTrip {
  invocationId: string;
  roundTripMs: number | null;
}

/** Writes the load generator's round trips of a run (replacing any earlier file). */
export async function writeRoundTrips({ s3, bucket, runId, roundTrips }: RunStore & { runId: string; roundTrips: Iterable<RoundTrip> | ReadonlyMap<string, number | null> }): Promise<number> {
  const lines: string[] = [];
  const items: Iterable<RoundTrip> = isMap(roundTrips)
    ? [...roundTrips].map(([invocationId, roundTripMs]) => ({ invocationId, roundTripMs }))
    : roundTrips;
  for (const item of items) {
    checkRoundTrip(item, 'round trip');
    lines.push(JSON.stringify({ invocationId: item.invocationId, roundTripMs: item.roundTripMs }));
  }
  await putText(s3, bucket, roundTripsKey(runId), lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'application/x-ndjson');
  return lines.length;
}

/** The run's round trips by invocationId (a repeated id keeps its last line), or null when none were saved. */
export async function readRoundTrips({ s3, bucket, runId }: RunStore & { runId: string }): Promise<Map<string, number | null> | null> {
  const key = roundTripsKey(runId);
  const text = await getText(s3, bucket, key);
  if (text === null) return null;
  const roundTrips = new Map<string, number | null>();
  let line = 0;
  for (const json of text.split('\n')) {
    line++;
    if (json.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch (error) {
      throw new StorageError('ROUNDTRIPS_INVALID', `${key} line ${line} is not JSON`, { cause: error });
    }
    const item = checkRoundTrip(value, `${key} line ${line}`);
    roundTrips.set(item.invocationId, item.roundTripMs);
  }
  return roundTrips;
}

function checkRoundTrip(value: unknown, what: string): RoundTrip {
  const item = value as Partial<RoundTrip> | null;
  const ms = item?.roundTripMs;
  if (typeof item?.invocationId !== 'string' || item.invocationId === '' || !(ms === null || (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0))) {
    throw new StorageError('ROUNDTRIPS_INVALID', `${what} must be {"invocationId": string, "roundTripMs": number >= 0 | null}`);
  }
  return item as RoundTrip;
}

function isMap(value: unknown): value is ReadonlyMap<string, number | null> {
  return value instanceof Map;
}

/** A scheduler event as stored with a run (scheduler/events.ts writes them; reports read them). */
export interface StoredRunEvent {
  at: number;
  type: string;
  reason: string;
  [key: string]: unknown;
}

/** Stores the scheduler's events of a run beside its records, so `ecgfaas report` shows them later. */
export async function writeRunEvents({ s3, bucket, runId, events }: RunStore & { runId: string; events: readonly StoredRunEvent[] }): Promise<void> {
  await putText(s3, bucket, runEventsKey(runId), JSON.stringify(events), 'application/json');
}

/** The run's scheduler events, or [] when none were stored. */
export async function readRunEvents({ s3, bucket, runId }: RunStore & { runId: string }): Promise<StoredRunEvent[]> {
  const key = runEventsKey(runId);
  const text = await getText(s3, bucket, key);
  if (text === null) return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new StorageError('RUN_EVENTS_INVALID', `${key} is not JSON`, { cause: error });
  }
  const valid = (event: unknown): event is StoredRunEvent => typeof event === 'object' && event !== null
    && typeof (event as StoredRunEvent).at === 'number' && typeof (event as StoredRunEvent).type === 'string' && typeof (event as StoredRunEvent).reason === 'string';
  if (!Array.isArray(value) || !value.every(valid)) throw new StorageError('RUN_EVENTS_INVALID', `${key} is not a list of events {at, type, reason}`);
  return value;
}
