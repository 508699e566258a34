/**
 * The compact binary packet body (`Content-Type: application/octet-stream`), the hot path of the
 * gateway: JSON costs about twice as much to parse. All numbers little-endian.
 *
 * | offset | size | field                                                                 |
 * |-------:|-----:|-----------------------------------------------------------------------|
 * | 0      | 1    | magic 0xEC                                                            |
 * | 1      | 1    | layout version, 1                                                     |
 * | 2      | 1    | flags: bit 0 `session` present, bit 1 `sentAt` present                |
 * | 3      | 1    | lead count L, 1 or 2                                                  |
 * | 4      | 2    | sampleRate (u16), 360                                                 |
 * | 6      | 2    | samples per lead N (u16), 1..360                                      |
 * | 8      | 8    | seq (f64 holding an integer 0..2^53-1)                                |
 * | 16     | 8    | sentAt (f64, ms since the Unix epoch; 0 when flag bit 1 is clear)     |
 * | 24     | 8    | gain (f64, ADC units per mV, > 0)                                     |
 * | 32     | 2    | baseline (i16, ADC value of 0 mV)                                     |
 * | 34     | 1    | session length S (0 when flag bit 0 is clear), then S ASCII bytes     |
 * |        |      | per lead: name length (u8, 1..16), then the name's ASCII bytes        |
 * |        |      | samples: int16, lead 0's N samples, then lead 1's N samples           |
 *
 * One MLII lead of 360 samples is 760 bytes. Binary samples are always ADC units at `gain`/`baseline`.
 */
import { EcgFaasError } from './errors.js';
import { SAMPLE_RATE, type EcgPacket } from './packet.js';

export const PACKET_MAGIC = 0xec;
export const PACKET_LAYOUT_VERSION = 1;
export const BINARY_CONTENT_TYPE = 'application/octet-stream';
const FIXED_HEADER = 35;
const SESSION_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const LEAD_NAME_PATTERN = /^[A-Za-z0-9_+-]{1,16}$/;

/** A packet in ADC units, as the binary body carries it and as workers receive every packet. */
export interface AdcPacket {
  session?: string | undefined;
  seq: number;
  sentAt?: number | undefined;
  sampleRate: number;
  gain: number;
  baseline: number;
  leads: Array<{ name: string; samples: Int16Array }>;
}

/** Code BAD_BINARY_PACKET; the message says which field is wrong. */
export class PacketDecodeError extends EcgFaasError {
  constructor(message: string) {
    super('BAD_BINARY_PACKET', message);
    this.name = 'PacketDecodeError';
  }
}

export function encodedPacketSize(packet: AdcPacket): number {
  const samples = packet.leads[0]?.samples.length ?? 0;
  let size = FIXED_HEADER + (packet.session?.length ?? 0);
  for (const lead of packet.leads) size += 1 + lead.name.length + 2 * samples;
  return size;
}

export function encodePacket(packet: AdcPacket): Buffer {
  const samples = packet.leads[0]?.samples.length ?? 0;
  const out = Buffer.allocUnsafe(encodedPacketSize(packet));
  out[0] = PACKET_MAGIC;
  out[1] = PACKET_LAYOUT_VERSION;
  out[2] = (packet.session !== undefined ? 1 : 0) | (packet.sentAt !== undefined ? 2 : 0);
  out[3] = packet.leads.length;
  out.writeUInt16LE(packet.sampleRate, 4);
  out.writeUInt16LE(samples, 6);
  out.writeDoubleLE(packet.seq, 8);
  out.writeDoubleLE(packet.sentAt ?? 0, 16);
  out.writeDoubleLE(packet.gain, 24);
  out.writeInt16LE(packet.baseline, 32);
  let at = 34;
  const session = packet.session ?? '';
  out[at++] = session.length;
  at += out.write(session, at, 'latin1');
  for (const lead of packet.leads) {
    out[at++] = lead.name.length;
    at += out.write(lead.name, at, 'latin1');
  }
  for (const lead of packet.leads) {
    for (let i = 0; i < samples; i++, at += 2) out.writeInt16LE(lead.samples[i] as number, at);
  }
  return out;
}

/** Decodes and validates a binary body; throws PacketDecodeError naming the bad field. */
export function decodePacket(body: Uint8Array): AdcPacket {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (buf.length < FIXED_HEADER) throw new PacketDecodeError(`body of ${buf.length} bytes is shorter than the ${FIXED_HEADER}-byte header`);
  if (buf[0] !== PACKET_MAGIC) throw new PacketDecodeError('first byte is not the packet magic 0xEC');
  if (buf[1] !== PACKET_LAYOUT_VERSION) throw new PacketDecodeError(`layout version ${buf[1]} is not supported (only ${PACKET_LAYOUT_VERSION})`);
  const flags = buf[2] as number;
  if ((flags & ~3) !== 0) throw new PacketDecodeError(`unknown flag bits 0x${flags.toString(16)}`);
  const leadCount = buf[3] as number;
  if (leadCount < 1 || leadCount > 2) throw new PacketDecodeError(`lead count ${leadCount} is not 1 or 2`);
  const sampleRate = buf.readUInt16LE(4);
  const samples = buf.readUInt16LE(6);
  if (samples < 1 || samples > SAMPLE_RATE) throw new PacketDecodeError(`samples per lead ${samples} is not 1..${SAMPLE_RATE}`);
  const seq = buf.readDoubleLE(8);
  if (!Number.isSafeInteger(seq) || seq < 0) throw new PacketDecodeError('seq is not an integer 0..2^53-1');
  const sentAtRaw = buf.readDoubleLE(16);
  const hasSentAt = (flags & 2) !== 0;
  if (hasSentAt && !(Number.isFinite(sentAtRaw) && sentAtRaw >= 0)) throw new PacketDecodeError('sentAt is not a finite time in ms >= 0');
  const gain = buf.readDoubleLE(24);
  if (!(Number.isFinite(gain) && gain > 0)) throw new PacketDecodeError('gain is not a positive finite number');
  const baseline = buf.readInt16LE(32);
  let at = 34;
  const sessionLength = buf[at++] as number;
  let session: string | undefined;
  if ((flags & 1) !== 0) {
    session = buf.toString('latin1', at, at + sessionLength);
    if (at + sessionLength > buf.length || !SESSION_PATTERN.test(session)) throw new PacketDecodeError('session is not 1-64 of [A-Za-z0-9_.:-]');
  } else if (sessionLength !== 0) {
    throw new PacketDecodeError('session length is set but the session flag is clear');
  }
  at += sessionLength;
  const names: string[] = [];
  for (let lead = 0; lead < leadCount; lead++) {
    const length = buf[at++];
    if (length === undefined || at + length > buf.length) throw new PacketDecodeError(`lead ${lead} name runs past the end of the body`);
    const name = buf.toString('latin1', at, at + length);
    if (!LEAD_NAME_PATTERN.test(name)) throw new PacketDecodeError(`lead ${lead} name is not 1-16 of [A-Za-z0-9_+-]`);
    names.push(name);
    at += length;
  }
  const expected = at + leadCount * samples * 2;
  if (buf.length !== expected) {
    throw new PacketDecodeError(`body is ${buf.length} bytes; ${leadCount} lead(s) of ${samples} samples need exactly ${expected}`);
  }
  const leads = names.map((name) => {
    const values = new Int16Array(samples);
    for (let i = 0; i < samples; i++, at += 2) values[i] = buf.readInt16LE(at);
    return { name, samples: values };
  });
  return { ...(session !== undefined ? { session } : {}), seq, ...(hasSentAt ? { sentAt: sentAtRaw } : {}), sampleRate, gain, baseline, leads };
}

/** The function's view of an ADC packet. */
export function toEcgPacket(monitorId: string, packet: AdcPacket): EcgPacket {
  return { monitorId, ...packet };
}
