/**
 * Whole records: a header, its signal files and annotation files, read from or written to a
 * directory. Reading verifies what the header promises (length, first value, checksum), so a
 * damaged file is caught at the door and never silently mis-scored.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { WfdbError } from './errors.js';
import { formatHeader, parseHeader, type RecordHeader, type SignalSpec } from './header.js';
import { bytesForSamples, decodeSamples, encodeSamples, signalChecksum } from './signals.js';
import { encodeAnnotations, parseAnnotations, type Annotation } from './annotations.js';

export interface WfdbRecord {
  header: RecordHeader;
  /** One array of ADC units per signal, in header order. */
  signals: Int16Array[];
}

const RECORD_NAME = /^[A-Za-z0-9_-]+$/;

function checkRecordName(name: string): void {
  if (!RECORD_NAME.test(name)) {
    throw new WfdbError('WFDB_BAD_NAME', `"${name}" is not a valid record name (letters, digits, _ and - only)`);
  }
}

async function readRecordFile(file: string, recordName: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new WfdbError('WFDB_NOT_FOUND', `record ${recordName}: ${what} ${file} not found`, { cause: error });
    }
    throw new WfdbError('WFDB_IO', `record ${recordName}: cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}

export async function readHeader(directory: string, recordName: string): Promise<RecordHeader> {
  checkRecordName(recordName);
  const text = await readRecordFile(path.join(directory, `${recordName}.hea`), recordName, 'header');
  return parseHeader(text.toString('latin1'), recordName);
}

export interface ReadRecordOptions {
  /** Check each signal's first value and checksum against the header (default true). */
  verify?: boolean;
}

export async function readRecord(directory: string, recordName: string, options: ReadRecordOptions = {}): Promise<WfdbRecord> {
  const header = await readHeader(directory, recordName);
  const signals = new Array<Int16Array>(header.signals.length);
  // Signals sharing a file are interleaved in it; read each file once.
  const groups = new Map<string, number[]>();
  header.signals.forEach((signal, index) => {
    const members = groups.get(signal.fileName) ?? [];
    members.push(index);
    groups.set(signal.fileName, members);
  });
  for (const [fileName, members] of groups) {
    const first = header.signals[members[0] as number] as SignalSpec;
    if (members.some((index) => header.signals[index]?.format !== first.format)) {
      throw new WfdbError('WFDB_UNSUPPORTED', `record ${recordName}: signals in ${fileName} use different formats`);
    }
    const bytes = await readRecordFile(path.join(directory, fileName), recordName, 'signal file');
    const payload = bytes.subarray(first.byteOffset);
    const width = members.length;
    let frames = header.sampleCount;
    if (frames === undefined) {
      frames = Math.floor((first.format === 16 ? payload.length / 2 : (payload.length * 2) / 3) / width);
    }
    const needed = bytesForSamples(first.format, frames * width);
    if (payload.length < needed) {
      throw new WfdbError('WFDB_TRUNCATED',
        `record ${recordName}: ${fileName} holds ${payload.length} bytes of samples but ${frames} samples of ${width} signal(s) in format ${first.format} need ${needed}`);
    }
    const interleaved = decodeSamples(first.format, payload, frames * width);
    members.forEach((signalIndex, column) => {
      const samples = new Int16Array(frames as number);
      for (let frame = 0, at = column; frame < samples.length; frame++, at += width) samples[frame] = interleaved[at] as number;
      signals[signalIndex] = samples;
    });
  }
  if (options.verify !== false) verifySignals(header, signals);
  return { header, signals };
}

function verifySignals(header: RecordHeader, signals: Int16Array[]): void {
  header.signals.forEach((spec, index) => {
    const samples = signals[index] as Int16Array;
    const label = `record ${header.name}, signal ${index}${spec.description ? ` (${spec.description})` : ''}`;
    if (spec.initialValue !== undefined && samples.length > 0 && samples[0] !== spec.initialValue) {
      throw new WfdbError('WFDB_CHECKSUM', `${label}: first sample is ${samples[0]} but the header says ${spec.initialValue}`);
    }
    if (spec.checksum !== undefined) {
      const actual = signalChecksum(samples);
      if (actual !== spec.checksum) {
        throw new WfdbError('WFDB_CHECKSUM', `${label}: checksum of the samples is ${actual} but the header says ${spec.checksum}`);
      }
    }
  });
}

export async function readAnnotations(directory: string, recordName: string, annotator = 'atr'): Promise<Annotation[]> {
  checkRecordName(recordName);
  const file = path.join(directory, `${recordName}.${annotator}`);
  const bytes = await readRecordFile(file, recordName, 'annotation file');
  return parseAnnotations(bytes, `record ${recordName} annotator ${annotator}`);
}

export interface WriteSignal {
  samples: Int16Array;
  gain: number;
  baseline: number;
  units?: string;
  adcResolution?: number;
  adcZero?: number;
  description: string;
}

export interface WriteRecordInput {
  name: string;
  samplingFrequency: number;
  signals: WriteSignal[];
  comments?: string[];
  /** 16 (default) or 212. */
  format?: 16 | 212;
  baseTime?: string;
  baseDate?: string;
}

/** Builds the header and the bytes of the `.dat` file for a record: all signals in one file. */
export function encodeRecord(input: WriteRecordInput): { header: RecordHeader; headerText: string; data: Uint8Array } {
  checkRecordName(input.name);
  const format = input.format ?? 16;
  const frames = input.signals[0]?.samples.length ?? 0;
  if (input.signals.some((signal) => signal.samples.length !== frames)) {
    throw new WfdbError('WFDB_RANGE', `record ${input.name}: signals differ in length`);
  }
  const width = input.signals.length;
  const interleaved = new Int16Array(frames * width);
  input.signals.forEach((signal, column) => {
    for (let frame = 0; frame < frames; frame++) interleaved[frame * width + column] = signal.samples[frame] as number;
  });
  const data = encodeSamples(format, interleaved);
  const fileName = `${input.name}.dat`;
  const header: RecordHeader = {
    name: input.name,
    samplingFrequency: input.samplingFrequency,
    sampleCount: frames,
    baseTime: input.baseTime,
    baseDate: input.baseTime === undefined ? undefined : input.baseDate,
    comments: input.comments ?? [],
    signals: input.signals.map((signal) => ({
      fileName,
      format,
      gain: signal.gain,
      baseline: signal.baseline,
      units: signal.units ?? 'mV',
      adcResolution: signal.adcResolution ?? (format === 212 ? 12 : 16),
      adcZero: signal.adcZero ?? 0,
      initialValue: signal.samples[0] ?? 0,
      checksum: signalChecksum(signal.samples),
      blockSize: 0,
      byteOffset: 0,
      description: signal.description,
    })),
  };
  return { header, headerText: formatHeader(header), data };
}

export async function writeRecord(directory: string, input: WriteRecordInput): Promise<RecordHeader> {
  const { header, headerText, data } = encodeRecord(input);
  await mkdir(directory, { recursive: true });
  await writeFile(path.join(directory, `${input.name}.dat`), data);
  await writeFile(path.join(directory, `${input.name}.hea`), headerText, 'latin1');
  return header;
}

export async function writeAnnotations(directory: string, recordName: string, annotator: string, annotations: readonly Annotation[]): Promise<void> {
  checkRecordName(recordName);
  if (!/^[A-Za-z0-9_]+$/.test(annotator)) {
    throw new WfdbError('WFDB_BAD_NAME', `"${annotator}" is not a valid annotator name (letters, digits and _ only)`);
  }
  await mkdir(directory, { recursive: true });
  await writeFile(path.join(directory, `${recordName}.${annotator}`), encodeAnnotations(annotations));
}

/** Converts ADC units to physical units (mV for MIT-BIH): (adc - baseline) / gain. */
export function toPhysical(adc: number, spec: Pick<SignalSpec, 'gain' | 'baseline'>): number {
  return (adc - spec.baseline) / spec.gain;
}
