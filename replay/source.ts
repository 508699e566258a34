/**
 * Packet bodies for the replay: the binary layout of contracts/packet-binary.ts, built from a
 * record's samples. Each record's samples are laid out once as little-endian int16 bytes per lead;
 * a send then costs one small pooled allocation and a few memcpys (header template, session, lead
 * names, one second per lead) instead of per-sample writes. A fresh buffer per send (rather than
 * patching a shared one) because undici may still hold a queued body when the next second is due.
 */
import { readdir } from 'node:fs/promises';
import { BINARY_CONTENT_TYPE, PACKET_LAYOUT_VERSION, PACKET_MAGIC } from '../contracts/packet-binary.js';
import { SAMPLE_RATE } from '../contracts/packet.js';
import { primaryLeadIndex } from '../functions/datasets.js';
import { readHeader, readRecord, type RecordHeader, type WfdbRecord } from '../functions/wfdb/index.js';
import { ReplayError } from './errors.js';

export { BINARY_CONTENT_TYPE };

const FIXED_HEADER = 34; // bytes before the session length byte
const LEAD_NAME = /^[A-Za-z0-9_+-]{1,16}$/;
const RECORD_NAME = /^[A-Za-z0-9_-]+$/;

export type LeadCount = 1 | 2;

export class RecordSource {
  readonly name: string;
  /** Whole seconds of samples: the packets one pass sends. */
  readonly packets: number;
  readonly gain: number;
  readonly baseline: number;
  readonly leadNames: readonly string[];
  /** Signal indices of the record that are sent, in packet order. */
  readonly signalIndices: readonly number[];
  private readonly head: Buffer;
  private readonly names: Buffer;
  private readonly leadBytes: Buffer[];
  private readonly secondBytes = SAMPLE_RATE * 2;

  constructor(record: WfdbRecord, leads: LeadCount) {
    const { header, signals } = record;
    this.name = header.name;
    if (header.samplingFrequency !== SAMPLE_RATE) {
      throw new ReplayError('REPLAY_BAD_RECORD', `record ${header.name} is sampled at ${header.samplingFrequency} Hz; packets carry ${SAMPLE_RATE} Hz only`);
    }
    const allNames = header.signals.map((spec, i) => (LEAD_NAME.test(spec.description) ? spec.description : `sig${i}`));
    if (allNames.length === 0) throw new ReplayError('REPLAY_BAD_RECORD', `record ${header.name} has no signals`);
    // Two leads: the record's first two in header order (MIT-BIH has exactly two); one: the primary (MLII).
    this.signalIndices = leads === 1 ? [primaryLeadIndex(allNames)] : allNames.slice(0, 2).map((_, i) => i);
    const specs = this.signalIndices.map((i) => header.signals[i] as RecordHeader['signals'][number]);
    const first = specs[0] as RecordHeader['signals'][number];
    // The packet carries one gain and baseline for all its leads.
    if (specs.some((s) => s.gain !== first.gain || s.baseline !== first.baseline)) {
      throw new ReplayError('REPLAY_BAD_RECORD', `record ${header.name}: its leads differ in gain or baseline; send one lead (--leads 1)`);
    }
    if (!Number.isInteger(first.baseline) || first.baseline < -32768 || first.baseline > 32767) {
      throw new ReplayError('REPLAY_BAD_RECORD', `record ${header.name}: baseline ${first.baseline} does not fit int16`);
    }
    this.gain = first.gain;
    this.baseline = first.baseline;
    this.leadNames = this.signalIndices.map((i) => allNames[i] as string);
    this.packets = Math.floor((signals[0]?.length ?? 0) / SAMPLE_RATE);

    this.head = Buffer.alloc(FIXED_HEADER);
    this.head[0] = PACKET_MAGIC;
    this.head[1] = PACKET_LAYOUT_VERSION;
    this.head[2] = 3; // session and sentAt present
    this.head[3] = this.signalIndices.length;
    this.head.writeUInt16LE(SAMPLE_RATE, 4);
    this.head.writeUInt16LE(SAMPLE_RATE, 6);
    this.head.writeDoubleLE(this.gain, 24);
    this.head.writeInt16LE(this.baseline, 32);
    this.names = Buffer.concat(this.leadNames.map((n) => Buffer.concat([Buffer.from([n.length]), Buffer.from(n, 'latin1')])));
    this.leadBytes = this.signalIndices.map((i) => {
      const samples = signals[i] as Int16Array;
      const bytes = Buffer.allocUnsafe(this.packets * this.secondBytes);
      for (let s = 0, at = 0; at < bytes.length; s++, at += 2) bytes.writeInt16LE(samples[s] as number, at);
      return bytes;
    });
  }

  /** Body size for a session name of `sessionLength` ASCII characters. */
  bodySize(sessionLength: number): number {
    return FIXED_HEADER + 1 + sessionLength + this.names.length + this.leadBytes.length * this.secondBytes;
  }

  /** The binary body of record packet `packet` (0-based second) as `seq` of `session` (latin1 bytes). */
  encode(session: Buffer, seq: number, sentAt: number, packet: number): Buffer {
    if (!(packet >= 0 && packet < this.packets)) throw new ReplayError('REPLAY_STATE', `record ${this.name} has no packet ${packet}`);
    const out = Buffer.allocUnsafe(this.bodySize(session.length));
    this.head.copy(out, 0);
    out.writeDoubleLE(seq, 8);
    out.writeDoubleLE(sentAt, 16);
    out[FIXED_HEADER] = session.length;
    let at = FIXED_HEADER + 1 + session.copy(out, FIXED_HEADER + 1);
    at += this.names.copy(out, at);
    const from = packet * this.secondBytes;
    for (const lead of this.leadBytes) at += lead.copy(out, at, from, from + this.secondBytes);
    return out;
  }
}

/** Every record in `dataDir` with a header (replay needs no annotations), sorted. */
export async function listRecords(dataDir: string): Promise<string[]> {
  let files: string[];
  try {
    files = await readdir(dataDir);
  } catch (error) {
    throw new ReplayError('REPLAY_BAD_OPTION', `data directory ${dataDir} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  const names = files.filter((f) => f.endsWith('.hea') && RECORD_NAME.test(f.slice(0, -4))).map((f) => f.slice(0, -4)).sort();
  if (names.length === 0) throw new ReplayError('REPLAY_UNKNOWN_RECORD', `no records (.hea files) in ${dataDir}`);
  return names;
}

/** Whole seconds in each record, from the headers (the signal file is read when a header omits its length). */
export async function recordLengths(dataDir: string, names: readonly string[]): Promise<Array<{ name: string; packets: number }>> {
  const out: Array<{ name: string; packets: number }> = [];
  for (const name of names) {
    let header: RecordHeader;
    try {
      header = await readHeader(dataDir, name);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'WFDB_NOT_FOUND' || code === 'WFDB_BAD_NAME') {
        throw new ReplayError('REPLAY_UNKNOWN_RECORD', `record ${name} is not in ${dataDir} (no ${name}.hea)`, { cause: error });
      }
      throw error;
    }
    const samples = header.sampleCount ?? (await readRecord(dataDir, name)).signals[0]?.length ?? 0;
    out.push({ name, packets: Math.floor(samples / SAMPLE_RATE) });
  }
  return out;
}

export async function loadSources(dataDir: string, names: Iterable<string>, leads: LeadCount): Promise<Map<string, RecordSource>> {
  const sources = new Map<string, RecordSource>();
  for (const name of names) {
    if (!sources.has(name)) sources.set(name, new RecordSource(await readRecord(dataDir, name), leads));
  }
  return sources;
}
