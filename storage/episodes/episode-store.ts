/**
 * The episode store: what the ECG function reports about abnormal episodes, written to S3 as it
 * happens, and a WFDB record (.hea, .dat, .atr) of each episode once it ends.
 *
 * Stateless between calls: every write reads what it needs (the manifest, and at the end every
 * part) back from S3, so any worker process may continue an episode another one started. Writes for
 * one monitor must not run concurrently (the worker runs one invocation per monitor at a time): the
 * manifest is read, updated and written back. The manifest names the packets (seqs) it has taken
 * in, which makes a retried call a no-op beyond rewriting identical parts, lets a part that arrives
 * late still join its episode, and tells the close which parts to read without listing them.
 *
 * Error codes (StorageError): S3_WRITE / S3_READ (S3 unreachable or failing past the retry
 * deadline), EPISODE_BAD_INPUT (a context or seq out of contract), EPISODE_BAD_EVENT (events that do
 * not fit together), EPISODE_NO_START (a continue or end for an episode whose start was never
 * stored), EPISODE_CLOSED (data for an episode that already ended), EPISODE_PART_MISSING (a hole in
 * the parts at close), EPISODE_BAD_PART / EPISODE_BAD_MANIFEST (stored objects that do not decode),
 * EPISODE_NOT_FOUND, EPISODE_OPEN (download of an episode that has not ended), EPISODE_RECORD_MISSING.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import pLimit from 'p-limit';
import {
  EPISODE_MANIFEST_VERSION, EpisodeManifestSchema, type EpisodeBeatCounts, type EpisodeManifest,
} from '../../contracts/episode.js';
import { MIT_CODE_OF_AAMI } from '../../functions/aami/index.js';
import type {
  BeatResult, EpisodeContinue, EpisodeEnd, EpisodeEvent, EpisodeStart, GapInfo,
} from '../../functions/ecg-function/types.js';
import { annotation, encodeAnnotations } from '../../functions/wfdb/annotations.js';
import { encodeRecord } from '../../functions/wfdb/record.js';
import { StorageError } from '../errors.js';
import {
  EpisodeKeys, MONITOR_ID, STREAM_ID, episodeIdOf, fromSampleOfFunctionEpisode, monitorMarkerKey, normalizePrefix,
  parseEpisodeId, recordNameOf, type EpisodeRef,
} from './keys.js';
import { canonicalBeat, decodeChunk, decodePart, encodeChunk, encodePart, type EpisodePart } from './parts.js';
import { describeS3Error, resolveRetry, retrying, type ResolvedRetry, type RetryOptions, type RetryStats } from './retry.js';

export interface EpisodeContext {
  /** [A-Za-z0-9_-]{1,64} */
  monitorId: string;
  /** [a-z0-9]{1,16}, fixed for the life of the monitor's function state; makes ids unique across restarts. */
  streamId: string;
  model: { name: string; sha256: string };
  /** Samples per second (360). */
  sampleRate: number;
  /** Wall-clock anchor: sample `sample` of the stream was taken at `epochMs` (ms since epoch). */
  clock: { sample: number; epochMs: number };
}

/** What the store needs for single objects; storage/s3-objects.ts's S3Objects is a lean one. */
export interface ObjectIo {
  put(key: string, body: Uint8Array, contentType: string, signal: AbortSignal): Promise<void>;
  /** null when there is no such key. */
  get(key: string, signal: AbortSignal): Promise<Uint8Array | null>;
}

export interface EpisodeStoreOptions {
  client: S3Client;
  /** PUTs and GETs of single objects through this instead of `client` (which still lists). Same bucket. */
  objects?: ObjectIo;
  bucket: string;
  /** Key prefix of every episode (default `episodes/`). */
  prefix?: string;
  retry?: RetryOptions;
  /**
   * With writes that buffer (see write()), flush() rewrites an open episode's manifest at most this
   * often (ms; default 10 s); a new or closed episode's manifest is written at once.
   */
  manifestIntervalMs?: number;
}

export interface EpisodeWriteOptions {
  /**
   * Keep the parts of packets that neither start nor end an episode in memory until flush(), which
   * writes each episode's buffered parts as one chunk object: one PUT per episode per flush instead
   * of one per packet; an open episode's manifest waits for flush() too. The caller must keep its input until flush() resolves
   * (the outbox does: entries leave Redis only after it), and re-apply it after a crash.
   */
  bufferParts?: boolean;
}

/**
 * What one invocation reports. A PacketResult fits as it is; pass it whole, because its `gap` is
 * what tells a hole the function declared (missing packets, filled with invalid samples in the
 * record) from a part the store lost (an error at close).
 */
export interface EpisodeWriteInput {
  events: readonly EpisodeEvent[];
  beats: readonly BeatResult[];
  gap?: GapInfo | null;
}

/** A chunk of buffered parts stored by flush(): whose, which packets, and the PUT's wall time (ms). */
export interface ChunkWrite {
  monitorId: string;
  seqs: number[];
  ms: number;
}

export interface EpisodeWriteResult {
  /** Objects written and their bytes. */
  objects: number;
  bytes: number;
  /** Wall time of the call, retries and backoff included. */
  ms: number;
  /** S3 requests sent (reads included) and how many of them were retries. */
  requests: number;
  retries: number;
  /** Stored ids of the episodes this call wrote to. */
  episodes: string[];
}

/** WFDB's invalid-sample value for format 16: how the record marks the samples of a declared gap. */
export const INVALID_SAMPLE = -32768;
/** Parallel GETs when reading an episode's parts or many manifests. */
const READ_CONCURRENCY = 8;
const checkManifest = TypeCompiler.Compile(EpisodeManifestSchema);

/** The stored id of the episode a function event belongs to (for results and latency records). */
export function storedEpisodeId(ctx: Pick<EpisodeContext, 'monitorId' | 'streamId'>, event: EpisodeEvent): string {
  const fromSample = event.type === 'start' ? event.fromSample : fromSampleOfFunctionEpisode(event.episodeId);
  if (fromSample === null) {
    throw new StorageError('EPISODE_BAD_EVENT', `function episode id "${event.episodeId}" does not end in its first sample`);
  }
  return episodeIdOf({ monitorId: ctx.monitorId, streamId: ctx.streamId, fromSample });
}

/** MIT code of each label. The binary model's 'abnormal' says only "not normal": Q (unclassifiable), as `ecgfaas annotate` writes it. */
function mitCodeOf(label: BeatResult['label']): number {
  return MIT_CODE_OF_AAMI[label === 'abnormal' ? 'Q' : label];
}

function emptyCounts(): EpisodeBeatCounts {
  return { N: 0, S: 0, V: 0, F: 0, Q: 0, abnormal: 0 };
}

function addCounts(counts: EpisodeBeatCounts, beats: readonly BeatResult[]): EpisodeBeatCounts {
  const out = { ...counts };
  for (const beat of beats) out[beat.label] += 1;
  return out;
}

/** The manifest with its keys in one fixed order, so equal manifests serialize to equal bytes. */
function canonicalManifest(m: EpisodeManifest): EpisodeManifest {
  return {
    version: m.version, id: m.id, monitor: m.monitor, streamId: m.streamId, start: m.start, end: m.end,
    startSample: m.startSample, endSample: m.endSample, samples: m.samples, gapSamples: m.gapSamples,
    sampleRate: m.sampleRate, leadNames: [...m.leadNames], gain: m.gain, baseline: m.baseline,
    triggerSample: m.triggerSample, lastAbnormalSample: m.lastAbnormalSample, endReason: m.endReason,
    beats: { N: m.beats.N, S: m.beats.S, V: m.beats.V, F: m.beats.F, Q: m.beats.Q, abnormal: m.beats.abnormal },
    model: { name: m.model.name, sha256: m.model.sha256 }, record: m.record,
    seqs: m.seqs.map(([first, last]) => [first, last] as [number, number]), lastSeq: m.lastSeq, updatedAt: m.updatedAt,
  };
}

type SeqRanges = Array<[number, number]>;

function hasSeq(ranges: SeqRanges, seq: number): boolean {
  return ranges.some(([first, last]) => seq >= first && seq <= last);
}

/** The ranges with `seq` added: sorted, adjacent ranges merged. */
function addSeq(ranges: SeqRanges, seq: number): SeqRanges {
  if (hasSeq(ranges, seq)) return ranges.map(([first, last]) => [first, last]);
  const sorted = [...ranges.map(([first, last]) => [first, last] as [number, number]), [seq, seq] as [number, number]].sort((a, b) => a[0] - b[0]);
  const merged: SeqRanges = [];
  for (const range of sorted) {
    const top = merged.at(-1);
    if (top !== undefined && range[0] <= top[1] + 1) top[1] = Math.max(top[1], range[1]);
    else merged.push(range);
  }
  return merged;
}

function lastOf(ranges: SeqRanges): number {
  return ranges.at(-1)?.[1] ?? 0;
}

/**
 * Where a call's part for an episode goes: the start window, its packet by seq, or, for an end
 * that came with no samples of the episode, `end.msgpack` (its call may be a restarted device's
 * first packet, whose seq could name a packet part of this very episode).
 */
function partKey(keys: EpisodeKeys, group: EpisodeGroup, part: EpisodePart, seq: number): string {
  if (group.start !== null) return keys.start;
  return part.fromSample === null ? keys.end : keys.packet(seq);
}

function seqsIn(ranges: SeqRanges): number[] {
  const out: number[] = [];
  for (const [first, last] of ranges) for (let seq = first; seq <= last; seq++) out.push(seq);
  return out;
}

function isNotFound(error: unknown): boolean {
  const name = (error as { name?: unknown }).name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchBucket');
}

/** The events of one call that concern one episode. */
interface EpisodeGroup {
  ref: EpisodeRef;
  id: string;
  start: EpisodeStart | null;
  continues: EpisodeContinue[];
  end: EpisodeEnd | null;
}

interface Tally extends RetryStats {
  objects: number;
  bytes: number;
}

const MANIFEST_CACHE_SIZE = 20_000;

export class EpisodeStore {
  readonly #client: S3Client;
  readonly #objects: ObjectIo;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #retry: ResolvedRetry;
  /** Open episodes' manifests as this store last wrote them, by key. */
  readonly #manifests = new Map<string, EpisodeManifest>();
  /** Monitors whose marker object this store has written. */
  readonly #markers = new Set<string>();
  /** Manifests of buffering writes not yet flushed. */
  readonly #dirty = new Set<string>();
  /** When each open episode's manifest was last written (ms, performance.now()). */
  readonly #manifestWrittenAt = new Map<string, number>();
  /** Parts buffered by bufferParts writes, per episode (by manifest key), in seq order. */
  readonly #buffered = new Map<string, { keys: EpisodeKeys; monitorId: string; parts: EpisodePart[] }>();
  readonly #manifestIntervalMs: number;

  constructor(options: EpisodeStoreOptions) {
    this.#client = options.client;
    this.#bucket = options.bucket;
    this.#objects = options.objects ?? sdkObjects(options.client, options.bucket);
    this.#prefix = normalizePrefix(options.prefix ?? 'episodes/');
    this.#retry = resolveRetry(options.retry);
    this.#manifestIntervalMs = options.manifestIntervalMs ?? 10_000;
  }

  /**
   * Writes what one invocation (packet `seq`) contributes: its start/continue/end events and its
   * beats. Idempotent: the same call again writes byte-identical objects under the same keys (and
   * leaves a manifest that already includes this seq alone), so a retried job is safe.
   */
  async write(ctx: EpisodeContext, seq: number, result: EpisodeWriteInput, options: EpisodeWriteOptions = {}): Promise<EpisodeWriteResult> {
    const started = performance.now();
    checkContext(ctx);
    if (!Number.isSafeInteger(seq) || seq < 0) throw new StorageError('EPISODE_BAD_INPUT', `seq ${seq} is not a non-negative integer`);
    const tally: Tally = { objects: 0, bytes: 0, requests: 0, retries: 0 };
    const groups = groupEvents(ctx, result.events);
    for (const group of groups) await this.#writeEpisode(ctx, seq, group, result, tally, options.bufferParts === true);
    return {
      objects: tally.objects, bytes: tally.bytes, ms: performance.now() - started,
      requests: tally.requests, retries: tally.retries, episodes: groups.map((group) => group.id),
    };
  }

  /**
   * Writes what deferring writes left in memory: every episode's buffered parts as one chunk, then
   * the manifests of new episodes and of those not written for manifestIntervalMs (all of them
   * with `all`). Buffered parts leave memory only once written, so a failed flush can be retried.
   * Returns the objects written; `onChunk` hears of each chunk stored: its monitor, its packets and
   * how long its PUT took (retries included), so each packet's own write time can be told.
   */
  async flush(options: { all?: boolean; onChunk?: (chunk: ChunkWrite) => void } = {}): Promise<{ chunks: number; manifests: number }> {
    const tally = newTally() as Tally;
    const buffered = [...this.#buffered.keys()];
    await pLimit(READ_CONCURRENCY).map(buffered, (manifestKey) => this.#writeChunk(manifestKey, tally, options.onChunk));
    const now = performance.now();
    const due = [...this.#dirty].filter((key) => options.all === true || now - (this.#manifestWrittenAt.get(key) ?? -Infinity) >= this.#manifestIntervalMs);
    await pLimit(READ_CONCURRENCY).map(due, async (key) => {
      const manifest = this.#manifests.get(key);
      if (manifest !== undefined) await this.#put(key, `${JSON.stringify(canonicalManifest(manifest), null, 2)}\n`, 'application/json', tally);
      this.#dirty.delete(key);
      this.#manifestWrittenAt.set(key, now);
    });
    return { chunks: buffered.length, manifests: due.length };
  }

  /** Writes an episode's buffered parts as one chunk; they leave the buffer once stored. */
  async #writeChunk(manifestKey: string, tally: Tally, onChunk?: (chunk: ChunkWrite) => void): Promise<void> {
    const pending = this.#buffered.get(manifestKey);
    if (pending === undefined || pending.parts.length === 0) return;
    const parts = [...pending.parts];
    const started = performance.now();
    await this.#put(pending.keys.chunk((parts[0] as EpisodePart).seq, (parts.at(-1) as EpisodePart).seq), encodeChunk(parts), 'application/x-msgpack', tally);
    onChunk?.({ monitorId: pending.monitorId, seqs: parts.map((part) => part.seq), ms: performance.now() - started });
    // Parts buffered while the PUT was in flight (another slot's storer shares this store) stay.
    const written = new Set(parts);
    const now = this.#buffered.get(manifestKey);
    if (now === undefined) return;
    now.parts = now.parts.filter((part) => !written.has(part));
    if (now.parts.length === 0) this.#buffered.delete(manifestKey);
  }

  /** Episodes with parts or manifests waiting for flush(). */
  get pending(): number {
    return this.#buffered.size + this.#dirty.size;
  }

  /** Every stored episode (optionally of one monitor), newest first. */
  async list(filter: { monitor?: string } = {}): Promise<EpisodeManifest[]> {
    const tally = newTally();
    let monitors: string[];
    if (filter.monitor !== undefined) {
      if (!MONITOR_ID.test(filter.monitor)) return [];
      monitors = [`${this.#prefix}${filter.monitor}/`];
    } else {
      monitors = await this.#commonPrefixes(this.#prefix, tally);
    }
    const episodes: string[] = [];
    for (const monitor of monitors) {
      const prefixes = await this.#commonPrefixes(monitor, tally);
      episodes.push(...prefixes.filter((prefix) => /\/[a-z0-9]{1,16}\.[0-9]+\/$/.test(prefix)));
    }
    // An episode whose start write never completed has parts but no manifest: not an episode yet.
    const manifests = (await pLimit(READ_CONCURRENCY).map(episodes, (prefix) => this.#readManifest(`${prefix}manifest.json`, tally)))
      .filter((m): m is EpisodeManifest => m !== null);
    return manifests.sort((a, b) => (a.start < b.start ? 1 : a.start > b.start ? -1 : a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  }

  /** The manifest of one episode, or null when there is no such episode. */
  async get(id: string): Promise<EpisodeManifest | null> {
    const ref = parseEpisodeId(id);
    if (ref === null) return null;
    return this.#readManifest(new EpisodeKeys(this.#prefix, ref).manifest, newTally());
  }

  /** Writes <record>.hea, <record>.dat, <record>.atr of a closed episode into outDir; returns their paths. */
  async download(id: string, outDir: string): Promise<string[]> {
    const manifest = await this.get(id);
    if (manifest === null) throw new StorageError('EPISODE_NOT_FOUND', `episode ${id} not found`);
    if (manifest.end === null || manifest.record === null) {
      throw new StorageError('EPISODE_OPEN', `episode ${id} is still open: its record is written when it ends`);
    }
    const keys = new EpisodeKeys(this.#prefix, parseEpisodeId(id) as EpisodeRef);
    const tally = newTally();
    const files: Array<[string, Uint8Array]> = [];
    for (const extension of ['hea', 'dat', 'atr'] as const) {
      const key = keys.record(manifest.record, extension);
      const bytes = await this.#get(key, tally);
      if (bytes === null) throw new StorageError('EPISODE_RECORD_MISSING', `episode ${id} is closed but ${key} is missing`);
      files.push([path.join(outDir, `${manifest.record}.${extension}`), bytes]);
    }
    await mkdir(outDir, { recursive: true });
    for (const [file, bytes] of files) await writeFile(file, bytes);
    return files.map(([file]) => file);
  }

  async #writeEpisode(
    ctx: EpisodeContext, seq: number, group: EpisodeGroup, result: EpisodeWriteInput, tally: Tally, bufferParts: boolean,
  ): Promise<void> {
    const keys = new EpisodeKeys(this.#prefix, group.ref);
    const part = buildPart(group, seq, result);
    if (group.start !== null && !this.#markers.has(ctx.monitorId)) {
      await this.#put(monitorMarkerKey(this.#prefix, ctx.monitorId), `${JSON.stringify({ monitor: ctx.monitorId })}\n`, 'application/json', tally);
      this.#markers.add(ctx.monitorId);
    }
    // A packet in the middle of an episode waits for the next flush, in its episode's chunk; a start
    // or an end is written at once (the start opens the episode, the end reads every part back).
    const buffer = bufferParts && group.start === null && group.end === null && part.fromSample !== null;
    if (!buffer) await this.#put(partKey(keys, group, part, seq), encodePart(part), 'application/x-msgpack', tally);

    // The manifest this store wrote last saves a GET per packet; another worker continuing the
    // episode after a failover has none cached and reads it from S3.
    const previous = this.#manifests.get(keys.manifest) ?? await this.#readManifest(keys.manifest, tally);
    // The manifest is the last object a call writes to an episode: one that already names this seq
    // (or already holds this end) means the call was applied whole before (a retried job), and
    // rewriting it could regress it.
    if (previous !== null) {
      const applied = group.end !== null && previous.end !== null
        ? previous.endSample === group.end.endSample
        : part.fromSample !== null && hasSeq(previous.seqs, seq);
      if (applied) return;
    }
    if (buffer) {
      let pending = this.#buffered.get(keys.manifest);
      if (pending === undefined) this.#buffered.set(keys.manifest, (pending = { keys, monitorId: ctx.monitorId, parts: [] }));
      pending.parts.push(part);
    }
    let manifest: EpisodeManifest;
    if (previous !== null && previous.end !== null) {
      throw new StorageError('EPISODE_CLOSED', `episode ${group.id} ended at packet ${previous.lastSeq}; packet ${seq} stored but not added`);
    } else if (group.end !== null) {
      // Its buffered parts first: the close reads every part back from the store.
      await this.#writeChunk(keys.manifest, tally);
      manifest = await this.#close(ctx, seq, group, part, keys, previous, tally);
    } else if (group.start !== null) {
      if (previous !== null) {
        throw new StorageError('EPISODE_BAD_EVENT', `episode ${group.id} started at packet ${previous.seqs[0]?.[0]}; packet ${seq} starts it again`);
      }
      manifest = openManifest(ctx, seq, group, part);
    } else if (previous === null) {
      throw new StorageError('EPISODE_NO_START', `episode ${group.id}: packet ${seq} stored, but the episode's start never was`);
    } else {
      manifest = updateManifest(ctx, seq, previous, part);
    }
    if (bufferParts && manifest.end === null) {
      // An open episode's manifest may lag its parts until flush(): the caller (the outbox
      // storer) flushes once per round, and re-applies its entries after a crash.
      this.#dirty.add(keys.manifest);
    } else {
      await this.#put(keys.manifest, `${JSON.stringify(canonicalManifest(manifest), null, 2)}\n`, 'application/json', tally);
      this.#dirty.delete(keys.manifest);
      this.#manifestWrittenAt.set(keys.manifest, performance.now());
    }
    this.#manifests.delete(keys.manifest);
    if (manifest.end !== null) this.#manifestWrittenAt.delete(keys.manifest);
    if (manifest.end === null) {
      this.#manifests.set(keys.manifest, manifest);
      // Bounded: the oldest entries (Map keeps insertion order) go first; a miss only costs a GET.
      if (this.#manifests.size > MANIFEST_CACHE_SIZE) {
        const oldest = this.#manifests.keys().next().value as string;
        if (!this.#dirty.has(oldest) && !this.#buffered.has(oldest)) {
          this.#manifests.delete(oldest);
          this.#manifestWrittenAt.delete(oldest);
        }
      }
    }
  }

  /** Reads every part back, writes the WFDB record, and returns the closed manifest. */
  async #close(
    ctx: EpisodeContext, seq: number, group: EpisodeGroup, part: EpisodePart, keys: EpisodeKeys, previous: EpisodeManifest | null, tally: Tally,
  ): Promise<EpisodeManifest> {
    const end = group.end as EpisodeEnd;
    const startBytes = await this.#get(keys.start, tally);
    if (startBytes === null) throw new StorageError('EPISODE_NO_START', `episode ${group.id}: it ends at packet ${seq}, but its start was never stored (${keys.start})`);
    const start = decodePart(startBytes, keys.start);
    // The parts to join: every chunk's (listed: a manifest written at intervals may lag its
    // chunks), then the manifest's seqs not in a chunk as packet parts, the start's and this call's.
    const endOnly = part.fromSample === null;
    const fromChunks = new Map<number, { key: string; part: EpisodePart }>();
    const chunkKeys = await this.#listKeys(keys.chunks, tally);
    const chunks = await pLimit(READ_CONCURRENCY).map(chunkKeys, async (key) => {
      const bytes = await this.#get(key, tally);
      return bytes === null ? [] : decodeChunk(bytes, key).map((each) => ({ key, part: each }));
    });
    // A seq in two chunks (a round retried after a crash) has identical parts in both.
    for (const each of chunks.flat()) if (!fromChunks.has(each.part.seq)) fromChunks.set(each.part.seq, each);
    let seqs = addSeq(previous?.seqs ?? [], start.seq);
    for (const chunkSeq of fromChunks.keys()) seqs = addSeq(seqs, chunkSeq);
    if (!endOnly) seqs = addSeq(seqs, seq);
    const packets = await pLimit(READ_CONCURRENCY).map(seqsIn(seqs).filter((each) => each !== start.seq), async (each) => {
      const chunked = fromChunks.get(each);
      if (chunked !== undefined) return chunked;
      const key = keys.packet(each);
      const bytes = await this.#get(key, tally);
      if (bytes === null) throw new StorageError('EPISODE_PART_MISSING', `episode ${group.id}: part ${key} is named by the manifest but missing`);
      return { key, part: decodePart(bytes, key) };
    });
    if (endOnly) {
      const bytes = await this.#get(keys.end, tally);
      if (bytes === null) throw new StorageError('EPISODE_PART_MISSING', `episode ${group.id}: part ${keys.end} is missing`);
      packets.push({ key: keys.end, part: decodePart(bytes, keys.end) });
    }
    const assembled = assemble(group, keys, start, packets, end);
    const ref = group.ref;
    const record = recordNameOf(ref);
    const info = start.start as NonNullable<EpisodePart['start']>;
    const startTime = previous?.start ?? isoAt(ctx, ref.fromSample);
    const endTime = isoAt(ctx, end.endSample);
    const { headerText, data } = encodeRecord({
      name: record,
      samplingFrequency: ctx.sampleRate,
      // Format 16 always: the function may store mV packets at 1000 ADC units/mV, beyond 212's 12 bits.
      format: 16,
      baseTime: startTime.slice(11, 23),
      baseDate: `${startTime.slice(8, 10)}/${startTime.slice(5, 7)}/${startTime.slice(0, 4)}`,
      signals: assembled.leads.map((samples, lead) => ({
        samples, gain: info.gain, baseline: info.baseline, units: 'mV', description: info.leadNames[lead] ?? `sig${lead}`,
      })),
      comments: [
        `ecg-faas episode ${group.id}`,
        `stream samples ${ref.fromSample}-${end.endSample}; trigger at record sample ${info.triggerSample - ref.fromSample}; ended: ${end.reason}`,
        `model ${ctx.model.name} sha256 ${ctx.model.sha256}`,
        'beat labels: N, A (S), V, F, Q (Q also for a binary model\'s abnormal beats); -32768 marks samples in a gap',
      ],
    });
    const atr = encodeAnnotations(assembled.beats.map((beat) => annotation(beat.sample - ref.fromSample, mitCodeOf(beat.label))));
    await this.#put(keys.record(record, 'dat'), data, 'application/octet-stream', tally);
    await this.#put(keys.record(record, 'hea'), headerText, 'text/plain', tally);
    await this.#put(keys.record(record, 'atr'), atr, 'application/octet-stream', tally);
    return {
      version: EPISODE_MANIFEST_VERSION,
      id: group.id,
      monitor: ref.monitorId,
      streamId: ref.streamId,
      start: startTime,
      end: endTime,
      startSample: ref.fromSample,
      endSample: end.endSample,
      samples: end.endSample - ref.fromSample,
      gapSamples: assembled.gapSamples,
      sampleRate: ctx.sampleRate,
      leadNames: info.leadNames,
      gain: info.gain,
      baseline: info.baseline,
      triggerSample: info.triggerSample,
      lastAbnormalSample: end.lastAbnormalSample,
      endReason: end.reason,
      beats: addCounts(emptyCounts(), assembled.beats),
      model: ctx.model,
      record,
      seqs,
      lastSeq: lastOf(seqs),
      updatedAt: endTime,
    };
  }

  async #put(key: string, body: Uint8Array | string, contentType: string, tally: Tally): Promise<void> {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    await retrying(
      (abortSignal) => this.#objects.put(key, bytes, contentType, abortSignal),
      this.#retry,
      tally,
      (error, attempts) => new StorageError('S3_WRITE',
        `cannot write s3://${this.#bucket}/${key}: ${attempts} attempts over ${this.#retry.deadlineMs} ms failed; last: ${describeS3Error(error)}`, { cause: error }),
    );
    tally.objects += 1;
    tally.bytes += bytes.byteLength;
  }

  /** The object's bytes, or null when it does not exist. */
  async #get(key: string, tally: RetryStats): Promise<Uint8Array | null> {
    return retrying(
      (abortSignal) => this.#objects.get(key, abortSignal),
      this.#retry,
      tally,
      (error, attempts) => new StorageError('S3_READ',
        `cannot read s3://${this.#bucket}/${key}: ${attempts} attempts over ${this.#retry.deadlineMs} ms failed; last: ${describeS3Error(error)}`, { cause: error }),
    );
  }

  async #readManifest(key: string, tally: RetryStats): Promise<EpisodeManifest | null> {
    const bytes = await this.#get(key, tally);
    if (bytes === null) return null;
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch (error) {
      throw new StorageError('EPISODE_BAD_MANIFEST', `${key} is not JSON`, { cause: error });
    }
    if (!checkManifest.Check(value)) {
      const first = checkManifest.Errors(value).First();
      throw new StorageError('EPISODE_BAD_MANIFEST', `${key} is not an episode manifest${first ? `: ${first.path} ${first.message}` : ''}`);
    }
    return value;
  }

  /** Every object key under `prefix`, in key order. */
  #listKeys(prefix: string, tally: RetryStats): Promise<string[]> {
    return this.#list(prefix, false, tally);
  }

  /** The common prefixes ("folders") directly under `prefix`. */
  #commonPrefixes(prefix: string, tally: RetryStats): Promise<string[]> {
    return this.#list(prefix, true, tally);
  }

  /** All pages of a listing: the object keys, or with `folders` the common prefixes under a `/` delimiter. */
  async #list(prefix: string, folders: boolean, tally: RetryStats): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await retrying(
        (abortSignal) => this.#client.send(new ListObjectsV2Command({
          Bucket: this.#bucket, Prefix: prefix, ContinuationToken: token, ...(folders ? { Delimiter: '/' } : {}),
        }), { abortSignal }),
        this.#retry,
        tally,
        (error, attempts) => new StorageError('S3_READ',
          `cannot list s3://${this.#bucket}/${prefix}: ${attempts} attempts over ${this.#retry.deadlineMs} ms failed; last: ${describeS3Error(error)}`, { cause: error }),
      );
      const names = folders ? (page.CommonPrefixes ?? []).map((common) => common.Prefix) : (page.Contents ?? []).map((object) => object.Key);
      for (const name of names) if (name !== undefined) out.push(name);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out;
  }

}

/** Single objects through the SDK client. */
function sdkObjects(client: S3Client, bucket: string): ObjectIo {
  return {
    async put(key, body, contentType, abortSignal) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }), { abortSignal });
    },
    async get(key, abortSignal) {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal });
        return out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray();
      } catch (error) {
        if (isNotFound(error)) return null;
        throw error;
      }
    },
  };
}

function newTally(): Tally {
  return { objects: 0, bytes: 0, requests: 0, retries: 0 };
}

function checkContext(ctx: EpisodeContext): void {
  const bad = (what: string): never => {
    throw new StorageError('EPISODE_BAD_INPUT', `episode context: ${what}`);
  };
  if (!MONITOR_ID.test(ctx.monitorId)) bad('monitorId must be 1-64 letters, digits, _ or -');
  if (!STREAM_ID.test(ctx.streamId)) bad('streamId must be 1-16 lower-case letters or digits');
  if (!(ctx.sampleRate > 0) || !Number.isFinite(ctx.sampleRate)) bad('sampleRate must be a positive number');
  if (!Number.isFinite(ctx.clock.sample) || !Number.isFinite(ctx.clock.epochMs)) bad('clock must hold finite numbers');
  if (typeof ctx.model.name !== 'string' || typeof ctx.model.sha256 !== 'string') bad('model needs a name and a sha256');
}

/** ISO time of a stream sample, from the context's clock anchor (ms precision). */
function isoAt(ctx: EpisodeContext, sample: number): string {
  return new Date(Math.round(ctx.clock.epochMs + ((sample - ctx.clock.sample) * 1000) / ctx.sampleRate)).toISOString();
}

/** Splits a call's events by episode, in the order they first appear (an end of one may precede the start of the next). */
function groupEvents(ctx: EpisodeContext, events: readonly EpisodeEvent[]): EpisodeGroup[] {
  const groups = new Map<string, EpisodeGroup>();
  for (const event of events) {
    const id = storedEpisodeId(ctx, event);
    let group = groups.get(id);
    if (group === undefined) {
      group = { ref: parseEpisodeId(id) as EpisodeRef, id, start: null, continues: [], end: null };
      groups.set(id, group);
    }
    const twice = (what: string) => new StorageError('EPISODE_BAD_EVENT', `episode ${id}: two ${what} events in one call`);
    if (event.type === 'start') {
      if (group.start !== null) throw twice('start');
      if (fromSampleOfFunctionEpisode(event.episodeId) !== event.fromSample) {
        throw new StorageError('EPISODE_BAD_EVENT', `start event of "${event.episodeId}" begins at sample ${event.fromSample}, not at the sample its id ends in`);
      }
      group.start = event;
    } else if (event.type === 'continue') {
      group.continues.push(event);
    } else {
      if (group.end !== null) throw twice('end');
      group.end = event;
    }
  }
  return [...groups.values()];
}

/** The part one call writes for one episode: its samples (start window and/or packet), beats, start and end. */
function buildPart(group: EpisodeGroup, seq: number, result: EpisodeWriteInput): EpisodePart {
  const windows: Array<{ fromSample: number; toSample: number; leads: Int16Array[] }> = [];
  if (group.start !== null) windows.push(group.start);
  windows.push(...group.continues);
  let fromSample: number | null = null;
  let toSample: number | null = null;
  let leads: Int16Array[] = [];
  for (const window of windows) {
    const length = window.toSample - window.fromSample;
    if (!Number.isSafeInteger(length) || length < 0 || window.leads.length === 0 || window.leads.some((lead) => lead.length !== length)) {
      throw new StorageError('EPISODE_BAD_EVENT', `episode ${group.id}: samples [${window.fromSample}, ${window.toSample}) do not match the leads given`);
    }
    if (toSample === null) {
      fromSample = window.fromSample;
      leads = window.leads.map((lead) => Int16Array.from(lead));
    } else {
      if (window.fromSample !== toSample || window.leads.length !== leads.length) {
        throw new StorageError('EPISODE_BAD_EVENT', `episode ${group.id}: the samples of one call are not contiguous`);
      }
      leads = leads.map((lead, index) => {
        const joined = new Int16Array(lead.length + length);
        joined.set(lead);
        joined.set(window.leads[index] as Int16Array, lead.length);
        return joined;
      });
    }
    toSample = window.toSample;
  }
  const lower = group.ref.fromSample;
  const upper = group.end?.endSample ?? Number.POSITIVE_INFINITY;
  if (group.end !== null && group.end.endSample < lower) {
    throw new StorageError('EPISODE_BAD_EVENT', `episode ${group.id} ends at sample ${group.end.endSample}, before it starts`);
  }
  // The start event carries the beats of its window classified by earlier calls (when the function provides them).
  const earlier = group.start === null ? [] : (group.start as { beats?: readonly BeatResult[] }).beats ?? [];
  const beats = new Map<number, BeatResult>();
  for (const beat of [...earlier, ...result.beats]) {
    if (beat.sample >= lower && beat.sample < upper && !beats.has(beat.sample)) beats.set(beat.sample, canonicalBeat(beat));
  }
  const gap = result.gap ?? null;
  return {
    v: 1,
    id: group.id,
    seq,
    fromSample,
    toSample,
    leads,
    // Only a gap that ends where these samples begin is this part's; anything else is another episode's.
    gapBefore: gap !== null && fromSample !== null && gap.toSample === fromSample && group.start === null
      ? { fromSample: gap.fromSample, toSample: gap.toSample }
      : null,
    beats: [...beats.values()].sort((a, b) => a.sample - b.sample),
    start: group.start === null ? null : {
      triggerSample: group.start.triggerSample, leadNames: [...group.start.leadNames], gain: group.start.gain, baseline: group.start.baseline,
    },
    end: group.end === null ? null : { endSample: group.end.endSample, lastAbnormalSample: group.end.lastAbnormalSample, reason: group.end.reason },
  };
}

function openManifest(ctx: EpisodeContext, seq: number, group: EpisodeGroup, part: EpisodePart): EpisodeManifest {
  const start = group.start as EpisodeStart;
  const through = part.toSample ?? start.fromSample;
  return {
    version: EPISODE_MANIFEST_VERSION,
    id: group.id,
    monitor: ctx.monitorId,
    streamId: ctx.streamId,
    start: isoAt(ctx, start.fromSample),
    end: null,
    startSample: start.fromSample,
    endSample: null,
    samples: through - start.fromSample,
    gapSamples: 0,
    sampleRate: ctx.sampleRate,
    leadNames: [...start.leadNames],
    gain: start.gain,
    baseline: start.baseline,
    triggerSample: start.triggerSample,
    lastAbnormalSample: null,
    endReason: null,
    beats: addCounts(emptyCounts(), part.beats),
    model: ctx.model,
    record: null,
    seqs: [[seq, seq]],
    lastSeq: seq,
    updatedAt: isoAt(ctx, through),
  };
}

function updateManifest(ctx: EpisodeContext, seq: number, previous: EpisodeManifest, part: EpisodePart): EpisodeManifest {
  const through = Math.max(previous.startSample + previous.samples, part.toSample ?? 0);
  const gap = part.gapBefore === null ? 0 : part.gapBefore.toSample - part.gapBefore.fromSample;
  return {
    ...previous,
    samples: through - previous.startSample,
    gapSamples: previous.gapSamples + gap,
    beats: addCounts(previous.beats, part.beats),
    model: ctx.model,
    seqs: addSeq(previous.seqs, seq),
    lastSeq: lastOf(addSeq(previous.seqs, seq)),
    updatedAt: isoAt(ctx, through),
  };
}

/**
 * Joins the parts into whole leads over [start, end): each part must begin where the one before it
 * ended, or where a gap the function declared ends (those samples become INVALID_SAMPLE).
 */
function assemble(
  group: EpisodeGroup, keys: EpisodeKeys, start: EpisodePart, packets: Array<{ key: string; part: EpisodePart }>, end: EpisodeEnd,
): { leads: Int16Array[]; beats: BeatResult[]; gapSamples: number } {
  const info = start.start;
  if (info === null || start.fromSample !== group.ref.fromSample) {
    throw new StorageError('EPISODE_BAD_PART', `episode ${group.id}: ${keys.start} is not the episode's start`);
  }
  const from = group.ref.fromSample;
  const length = end.endSample - from;
  const leads = info.leadNames.map(() => new Int16Array(length).fill(INVALID_SAMPLE));
  const ordered = [{ key: keys.start, part: start }, ...packets];
  let cursor = from;
  let gapSamples = 0;
  let previousKey = keys.start;
  const beats = new Map<number, BeatResult>();
  for (const { key, part } of ordered) {
    // A part with samples comes from a later packet of the same session; an end-only part may not.
    if (key !== keys.start && part.fromSample !== null && part.seq <= start.seq) {
      throw new StorageError('EPISODE_BAD_PART', `episode ${group.id}: part ${key} comes from packet ${part.seq}, not after the start's packet ${start.seq}`);
    }
    for (const beat of part.beats) if (beat.sample >= from && beat.sample < end.endSample && !beats.has(beat.sample)) beats.set(beat.sample, beat);
    if (part.fromSample === null || part.toSample === null || cursor >= end.endSample) continue;
    if (part.fromSample < cursor) {
      throw new StorageError('EPISODE_BAD_PART', `episode ${group.id}: part ${key} begins at sample ${part.fromSample}, inside ${previousKey}`);
    }
    if (part.fromSample !== cursor) {
      const declared = part.gapBefore !== null && part.gapBefore.fromSample === cursor && part.gapBefore.toSample === part.fromSample;
      if (!declared) {
        throw new StorageError('EPISODE_PART_MISSING',
          `episode ${group.id}: samples [${cursor}, ${part.fromSample}) missing between ${previousKey} and ${key}`);
      }
      gapSamples += Math.min(part.fromSample, end.endSample) - cursor;
    }
    if (part.leads.length !== leads.length) {
      throw new StorageError('EPISODE_BAD_PART', `episode ${group.id}: part ${key} has ${part.leads.length} leads, the episode ${leads.length}`);
    }
    const take = Math.min(part.toSample, end.endSample) - part.fromSample;
    if (take > 0) {
      part.leads.forEach((lead, index) => (leads[index] as Int16Array).set(lead.subarray(0, take), part.fromSample as number - from));
    }
    cursor = part.toSample;
    previousKey = key;
  }
  if (cursor < end.endSample) {
    throw new StorageError('EPISODE_PART_MISSING', `episode ${group.id}: ends at sample ${end.endSample} but its parts stop at ${cursor} (after ${previousKey})`);
  }
  return { leads, beats: [...beats.values()].sort((a, b) => a.sample - b.sample), gapSamples };
}
