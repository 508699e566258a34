/**
 * Where latency records live and how they are spelled, in Redis and in S3.
 *
 * Redis: workers XADD every record to the stream `<prefix>:latency` with one field `r` holding the
 * record's JSON (inside their commit, so a record exists exactly when its result was published).
 *
 * S3 (one bucket):
 *   runs/<runId>/run.json                                   run manifest (written by the demo)
 *   runs/<runId>/roundtrips.ndjson                          client round trips (load generator)
 *   runs/<runId>/latency/<firstId>-<lastId>.ndjson          a persisted segment of the stream
 *   latency-invalid/<firstId>-<lastId>.ndjson               stream entries that were not records
 * Stream ids `<ms>-<seq>` are written `<ms>_<seq>` so the `-` between first and last stays unique.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { LatencyRecordSchema, type LatencyRecord } from '../../contracts/invocation.js';
import { StorageError } from '../errors.js';

export const DEFAULT_LATENCY_PREFIX = 'ecgfaas';
/** The stream field holding the record's JSON. */
export const LATENCY_FIELD = 'r';

// Compiled once: reports read every record of a run, and Value.Check re-walks the schema each call.
const recordCheck = TypeCompiler.Compile(LatencyRecordSchema);

export function isLatencyRecord(value: unknown): value is LatencyRecord {
  return recordCheck.Check(value);
}

export function latencyStreamKey(prefix: string = DEFAULT_LATENCY_PREFIX): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) {
    throw new StorageError('LATENCY_CONFIG', `key prefix "${prefix}" must be 1-64 of [A-Za-z0-9_.-]`);
  }
  return `${prefix}:latency`;
}

/** The field/value arguments of the XADD that stores one record. */
export function encodeLatencyEntry(record: LatencyRecord): string[] {
  return [LATENCY_FIELD, JSON.stringify(record)];
}

/** The record of one stream entry (its field/value list); throws LATENCY_DECODE when it is not one. */
export function decodeLatencyEntry(fields: readonly string[]): LatencyRecord {
  let json: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === LATENCY_FIELD) json = fields[i + 1];
  }
  if (json === undefined) throw new StorageError('LATENCY_DECODE', `stream entry has no "${LATENCY_FIELD}" field`);
  return parseLatencyJson(json);
}

export function parseLatencyJson(json: string): LatencyRecord {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new StorageError('LATENCY_DECODE', `latency record is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!recordCheck.Check(value)) {
    const first = recordCheck.Errors(value).First();
    throw new StorageError('LATENCY_DECODE', `latency record does not match the schema${first ? ` at ${first.path || '/'}: ${first.message}` : ''}`);
  }
  return value;
}

/**
 * Run ids become S3 key segments, so they must not contain `/` or be `.`/`..` (the embedded store
 * keeps keys as file paths).
 */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$/;

export function isValidRunId(runId: string): boolean {
  return RUN_ID.test(runId);
}

export function assertRunId(runId: string): string {
  if (!isValidRunId(runId)) {
    throw new StorageError('RUN_ID_INVALID', `run id "${runId}" must be 1-200 of [A-Za-z0-9._:@+=-], starting with a letter or digit`);
  }
  return runId;
}

export const RUNS_PREFIX = 'runs/';
export const INVALID_PREFIX = 'latency-invalid/';

export function runPrefix(runId: string): string {
  return `${RUNS_PREFIX}${assertRunId(runId)}/`;
}

export function runManifestKey(runId: string): string {
  return `${runPrefix(runId)}run.json`;
}

export function roundTripsKey(runId: string): string {
  return `${runPrefix(runId)}roundtrips.ndjson`;
}

/** The scheduler's events during the run (moves, handovers, interference), a JSON array. */
export function runEventsKey(runId: string): string {
  return `${runPrefix(runId)}scheduler-events.json`;
}

export function segmentPrefix(runId: string): string {
  return `${runPrefix(runId)}latency/`;
}

const keyId = (id: string): string => id.replace(/[-:]/g, '_');

/** A segment's name depends only on its entries, so a retried or re-claimed batch overwrites itself. */
export function segmentKey(runId: string, firstEntryId: string, lastEntryId: string): string {
  return `${segmentPrefix(runId)}${keyId(firstEntryId)}-${keyId(lastEntryId)}.ndjson`;
}

export function invalidSegmentKey(firstEntryId: string, lastEntryId: string): string {
  return `${INVALID_PREFIX}${keyId(firstEntryId)}-${keyId(lastEntryId)}.ndjson`;
}

/** Orders stream ids (`<ms>-<seq>`) numerically. */
export function compareStreamIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

export type StreamEntry = [id: string, fields: string[] | null];

/** [[id, [field, value, ...] | null], ...] as Redis returns entries (XRANGE, XREADGROUP, XAUTOCLAIM). */
export function parseEntries(raw: unknown): StreamEntry[] {
  if (!Array.isArray(raw)) return [];
  const entries: StreamEntry[] = [];
  for (const item of raw) {
    if (!Array.isArray(item) || typeof item[0] !== 'string') continue;
    const fields = Array.isArray(item[1]) ? (item[1] as unknown[]).map(String) : null;
    entries.push([item[0], fields]);
  }
  return entries;
}

/**
 * The entries of one stream in an XREAD/XREADGROUP reply: RESP2 gives [[key, entries], ...]; over
 * RESP3 (ioredis 6's default) the reply is a map, which arrives flattened as [key, entries, ...].
 */
export function streamEntriesOf(reply: unknown, stream: string): StreamEntry[] {
  if (reply === null || typeof reply !== 'object') return [];
  if (!Array.isArray(reply)) return parseEntries((reply as Record<string, unknown>)[stream]);
  if (reply.length > 0 && !Array.isArray(reply[0])) {
    for (let i = 0; i + 1 < reply.length; i += 2) if (String(reply[i]) === stream) return parseEntries(reply[i + 1]);
    return [];
  }
  for (const item of reply as unknown[][]) if (String(item[0]) === stream) return parseEntries(item[1]);
  return [];
}
