/**
 * One stored part of an episode: what one invocation contributed to it (samples, beats, and the
 * start or end when they happened in that call).
 *
 * Encoding: msgpack (msgpackr, `moreTypes` for Int16Array as an extension holding the raw bytes,
 * little-endian on every platform we run; `useRecords: false`, so parts are plain msgpack maps any
 * msgpack reader can open). Objects are built with a fixed key order, so the same call encodes to
 * the same bytes, which is what makes a retried write idempotent.
 */
import { Packr } from 'msgpackr';
import type { BeatResult } from '../../functions/ecg-function/types.js';
import { StorageError } from '../errors.js';

export const PART_VERSION = 1;

export interface PartStart {
  triggerSample: number;
  leadNames: string[];
  gain: number;
  baseline: number;
}

export interface PartEnd {
  endSample: number;
  lastAbnormalSample: number;
  reason: 'quiet' | 'gap' | 'session';
}

export interface EpisodePart {
  v: typeof PART_VERSION;
  /** The stored episode's id. */
  id: string;
  /** Packet (invocation) this part came from. */
  seq: number;
  /** Samples of every lead over [fromSample, toSample); both null when the call carried none (an end after a gap). */
  fromSample: number | null;
  toSample: number | null;
  leads: Int16Array[];
  /** The hole in the data the function declared just before these samples (missing packets), if any. */
  gapBefore: { fromSample: number; toSample: number } | null;
  /** Beats classified in this call that lie in the episode (and, in the start part, those classified before it). */
  beats: BeatResult[];
  start: PartStart | null;
  end: PartEnd | null;
}

const packr = new Packr({ moreTypes: true, useRecords: false });

/** A beat with a fixed key order and no extra fields, so encodings do not depend on the caller's objects. */
export function canonicalBeat(beat: BeatResult): BeatResult {
  return {
    sample: beat.sample,
    seq: beat.seq,
    label: beat.label,
    abnormal: beat.abnormal,
    probability: beat.probability,
    pAbnormal: beat.pAbnormal,
  };
}

export function encodePart(part: EpisodePart): Uint8Array {
  const canonical: EpisodePart = {
    v: PART_VERSION,
    id: part.id,
    seq: part.seq,
    fromSample: part.fromSample,
    toSample: part.toSample,
    leads: part.leads,
    gapBefore: part.gapBefore === null ? null : { fromSample: part.gapBefore.fromSample, toSample: part.gapBefore.toSample },
    beats: part.beats.map(canonicalBeat),
    start: part.start === null ? null : {
      triggerSample: part.start.triggerSample,
      leadNames: [...part.start.leadNames],
      gain: part.start.gain,
      baseline: part.start.baseline,
    },
    end: part.end === null ? null : { endSample: part.end.endSample, lastAbnormalSample: part.end.lastAbnormalSample, reason: part.end.reason },
  };
  return packr.pack(canonical);
}

const isInt = (value: unknown): value is number => Number.isSafeInteger(value);

/** A chunk: several packets' parts, each encoded as a part object would be, in one msgpack array. */
export function encodeChunk(parts: readonly EpisodePart[]): Uint8Array {
  return packr.pack(parts.map((part) => encodePart(part)));
}

export function decodeChunk(bytes: Uint8Array, key: string): EpisodePart[] {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error) {
    throw new StorageError('EPISODE_BAD_PART', `episode chunk ${key} does not decode: ${(error as Error).message}`, { cause: error });
  }
  if (!Array.isArray(value) || value.some((item) => !(item instanceof Uint8Array))) {
    throw new StorageError('EPISODE_BAD_PART', `episode chunk ${key} is not an array of parts`);
  }
  return (value as Uint8Array[]).map((bytes, index) => decodePart(bytes, `${key}[${index}]`));
}

export function decodePart(bytes: Uint8Array, key: string): EpisodePart {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error) {
    throw new StorageError('EPISODE_BAD_PART', `episode part ${key} does not decode: ${(error as Error).message}`, { cause: error });
  }
  const part = value as Partial<EpisodePart> | null;
  const fail = (what: string): never => {
    throw new StorageError('EPISODE_BAD_PART', `episode part ${key}: ${what}`);
  };
  if (part === null || typeof part !== 'object') return fail('not an object');
  if (part.v !== PART_VERSION) return fail(`version ${String(part.v)} is not ${PART_VERSION}`);
  if (typeof part.id !== 'string' || !isInt(part.seq)) return fail('no id or seq');
  if (!Array.isArray(part.leads) || part.leads.some((lead) => !(lead instanceof Int16Array))) return fail('leads are not Int16Arrays');
  const hasSamples = part.fromSample !== null;
  if (hasSamples) {
    if (!isInt(part.fromSample) || !isInt(part.toSample) || part.toSample < part.fromSample) return fail('bad sample range');
    const length = part.toSample - part.fromSample;
    if (part.leads.length === 0 || part.leads.some((lead) => lead.length !== length)) return fail('leads do not match the sample range');
  } else if (part.toSample !== null || part.leads.length > 0) {
    return fail('samples without a range');
  }
  if (!Array.isArray(part.beats)) return fail('no beats array');
  return part as EpisodePart;
}
