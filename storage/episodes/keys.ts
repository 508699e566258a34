/**
 * Episode ids, S3 keys and WFDB record names. Layout of one episode (prefix default `episodes/`):
 *
 *   <prefix><monitorId>/monitor.json     a marker, so the monitor is listed (see monitorMarkerKey)
 *   <prefix><monitorId>/<streamId>.<fromSample>/
 *     manifest.json                    rewritten on every write to the episode
 *     start.msgpack                    the start window (history before the trigger through its packet)
 *     packets/<seq, 16 digits>.msgpack one per following packet, zero-padded so keys sort by seq
 *     chunks/<first seq>-<last seq>.msgpack  or several following packets' parts in one object (the
 *                                      outbox storer's rounds); the same seq may be in two chunks
 *                                      after a retried round, with identical bytes
 *     end.msgpack                      the end when its call carried no samples of the episode (after a
 *                                      gap, a device restart or a flush): that call's seq may belong to
 *                                      a new session, so it must not name a packet part
 *     record/<record>.hea|.dat|.atr    the WFDB record, written when the episode ends
 */
import { createHash } from 'node:crypto';
import { EPISODE_ID_PATTERN, STREAM_ID_PATTERN } from '../../contracts/episode.js';
import { MONITOR_ID_PATTERN } from '../../contracts/packet.js';

export const MONITOR_ID = new RegExp(MONITOR_ID_PATTERN);
export const STREAM_ID = new RegExp(STREAM_ID_PATTERN);
const EPISODE_ID = new RegExp(EPISODE_ID_PATTERN);
/** 16 digits hold every seq up to Number.MAX_SAFE_INTEGER. */
const SEQ_DIGITS = 16;
/** WFDB_MAXRNL in wfdb.h: longer record names are refused by the WFDB library. */
const MAX_RECORD_NAME = 50;

export interface EpisodeRef {
  monitorId: string;
  streamId: string;
  fromSample: number;
}

export function episodeIdOf(ref: EpisodeRef): string {
  return `${ref.monitorId}.${ref.streamId}.${ref.fromSample}`;
}

/** The parts of an id, or null when it is not one (such an id can name no stored episode). */
export function parseEpisodeId(id: string): EpisodeRef | null {
  if (!EPISODE_ID.test(id)) return null;
  const [monitorId, streamId, from] = id.split('.') as [string, string, string];
  const fromSample = Number(from);
  return Number.isSafeInteger(fromSample) ? { monitorId, streamId, fromSample } : null;
}

/**
 * The first sample of a function's episode, from the function's own episode id
 * (`<monitorId>_<fromSample>`): continue and end events carry only that id, and the store keeps no
 * memory between calls, so this is how they find their episode's keys.
 */
export function fromSampleOfFunctionEpisode(functionEpisodeId: string): number | null {
  const match = /(?:^|[^0-9])([0-9]{1,16})$/.exec(functionEpisodeId);
  const value = match === null ? NaN : Number(match[1]);
  return Number.isSafeInteger(value) ? value : null;
}

export function normalizePrefix(prefix: string): string {
  if (prefix === '') return '';
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

export class EpisodeKeys {
  readonly base: string;

  constructor(prefix: string, ref: EpisodeRef) {
    this.base = `${prefix}${ref.monitorId}/${ref.streamId}.${ref.fromSample}/`;
  }

  get manifest(): string {
    return `${this.base}manifest.json`;
  }

  get start(): string {
    return `${this.base}start.msgpack`;
  }

  get end(): string {
    return `${this.base}end.msgpack`;
  }

  get packets(): string {
    return `${this.base}packets/`;
  }

  packet(seq: number): string {
    return `${this.packets}${String(seq).padStart(SEQ_DIGITS, '0')}.msgpack`;
  }

  get chunks(): string {
    return `${this.base}chunks/`;
  }

  /** The chunk holding the parts of packets first..last (some seqs in between may be absent). */
  chunk(first: number, last: number): string {
    return `${this.chunks}${String(first).padStart(SEQ_DIGITS, '0')}-${String(last).padStart(SEQ_DIGITS, '0')}.msgpack`;
  }

  record(recordName: string, extension: 'hea' | 'dat' | 'atr'): string {
    return `${this.base}record/${recordName}.${extension}`;
  }
}

/**
 * A small object directly under the monitor's folder. Listing monitors relies on S3's delimiter
 * listing, and s3rver (the embedded store) reports a common prefix only for folders that hold an
 * object themselves, not for deeper ones; real S3 and MinIO would not need it.
 */
export function monitorMarkerKey(prefix: string, monitorId: string): string {
  return `${prefix}${monitorId}/monitor.json`;
}

/**
 * The WFDB record name of an episode: `<monitorId>_<streamId>_<fromSample>`, as PhysioNet's tools
 * take names (letters, digits, underscores; at most 50 characters). When the monitor id has a `-`
 * or the name would be too long, the monitor part becomes its first characters (with `-` as `_`)
 * plus `_h` and 8 hex digits of its SHA-256, so two monitors never share a record name.
 */
export function recordNameOf(ref: EpisodeRef): string {
  const tail = `_${ref.streamId}_${ref.fromSample}`;
  if (/^[A-Za-z0-9_]+$/.test(ref.monitorId) && ref.monitorId.length + tail.length <= MAX_RECORD_NAME) {
    return `${ref.monitorId}${tail}`;
  }
  const hash = `h${createHash('sha256').update(ref.monitorId).digest('hex').slice(0, 8)}`;
  const room = MAX_RECORD_NAME - tail.length - hash.length - 1;
  const head = ref.monitorId.replace(/-/g, '_').slice(0, Math.max(0, room));
  return `${head.length > 0 ? `${head}_` : ''}${hash}${tail}`;
}
