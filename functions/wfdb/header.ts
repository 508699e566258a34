/**
 * WFDB header (.hea) files, single-segment records, as specified in PhysioNet's `header(5)`:
 *
 *   record line:  name[/nseg] nsig [fs[/counterfreq[(basecounter)]] [nsamp [basetime [basedate]]]]
 *   signal line:  file format[xsamp][:skew][+offset] [gain[(baseline)][/units] [adcres [adczero
 *                 [initval [checksum [blocksize [description]]]]]]]
 *
 * Lines starting with `#` are comments (MIT-BIH keeps age, sex and medication there).
 */
import { WfdbError } from './errors.js';

export interface SignalSpec {
  /** Data file name, relative to the record's directory. */
  fileName: string;
  /** Storage format: 212 and 16 are read and written. */
  format: number;
  /** ADC units per physical unit; WFDB's default of 200 applies when the field is absent or 0. */
  gain: number;
  /** ADC value of physical zero; defaults to adcZero. */
  baseline: number;
  units: string;
  adcResolution: number;
  adcZero: number;
  /** First sample's value as stated in the header (undefined when absent). */
  initialValue: number | undefined;
  /** 16-bit signed sum of all samples as stated in the header (undefined when absent). */
  checksum: number | undefined;
  blockSize: number;
  /** Byte offset of the first sample in the data file. */
  byteOffset: number;
  description: string;
}

export interface RecordHeader {
  name: string;
  samplingFrequency: number;
  /** Samples per signal; undefined when the header leaves it out. */
  sampleCount: number | undefined;
  baseTime: string | undefined;
  baseDate: string | undefined;
  signals: SignalSpec[];
  /** Comment lines without the leading `#`. */
  comments: string[];
}

const DEFAULT_GAIN = 200;
const DEFAULT_FREQUENCY = 250;

export const SUPPORTED_FORMATS: ReadonlySet<number> = new Set([16, 212]);

function parseNumber(text: string, what: string, recordName: string): number {
  const value = Number(text);
  if (!Number.isFinite(value)) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${recordName}: ${what} "${text}" is not a number`);
  }
  return value;
}

function parseInteger(text: string, what: string, recordName: string): number {
  const value = parseNumber(text, what, recordName);
  if (!Number.isInteger(value)) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${recordName}: ${what} "${text}" is not an integer`);
  }
  return value;
}

export function parseHeader(text: string, expectedName?: string): RecordHeader {
  const label = expectedName ?? 'header';
  const comments: string[] = [];
  const lines: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#')) {
      comments.push(trimmed.slice(1).trim());
    } else if (trimmed.length > 0) {
      lines.push(trimmed);
    }
  }
  const recordLine = lines[0];
  if (recordLine === undefined) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${label}: header has no record line`);
  }
  const fields = recordLine.split(/\s+/);
  const [nameField, nsigField, fsField, nsampField, baseTime, baseDate] = fields;
  if (nameField === undefined || nsigField === undefined) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${label}: record line needs a name and a signal count`);
  }
  if (nameField.includes('/')) {
    throw new WfdbError('WFDB_UNSUPPORTED', `record ${label}: multi-segment records are not supported`);
  }
  const name = nameField;
  if (expectedName !== undefined && name !== expectedName) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${expectedName}: header names record "${name}"`);
  }
  const signalCount = parseInteger(nsigField, 'signal count', name);
  if (signalCount < 0) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${name}: negative signal count`);
  }
  // "360/1(0)": the counter frequency and base counter do not concern sample timing.
  const samplingFrequency = fsField === undefined ? DEFAULT_FREQUENCY : parseNumber(fsField.split('/')[0] ?? '', 'sampling frequency', name);
  if (!(samplingFrequency > 0)) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${name}: sampling frequency must be positive`);
  }
  const sampleCount = nsampField === undefined ? undefined : parseInteger(nsampField, 'sample count', name);
  if (sampleCount !== undefined && sampleCount < 0) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${name}: negative sample count`);
  }
  if (lines.length - 1 < signalCount) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${name}: header declares ${signalCount} signals but has ${lines.length - 1} signal lines`);
  }
  const signals: SignalSpec[] = [];
  for (let index = 0; index < signalCount; index++) {
    signals.push(parseSignalLine(lines[index + 1] ?? '', name, index));
  }
  return { name, samplingFrequency, sampleCount, baseTime, baseDate, signals, comments };
}

function parseSignalLine(line: string, recordName: string, index: number): SignalSpec {
  const fields = line.split(/\s+/);
  const what = (field: string) => `signal ${index} ${field}`;
  const [fileName, formatField, gainField, resField, zeroField, initField, checksumField, blockField] = fields;
  const description = fields.slice(8).join(' ');
  if (fileName === undefined || formatField === undefined) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${recordName}: signal ${index} line needs a file name and a format`);
  }
  const formatMatch = /^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$/.exec(formatField);
  if (formatMatch === null) {
    throw new WfdbError('WFDB_BAD_HEADER', `record ${recordName}: ${what('format')} "${formatField}" is malformed`);
  }
  const format = Number(formatMatch[1]);
  if (formatMatch[2] !== undefined && Number(formatMatch[2]) !== 1) {
    throw new WfdbError('WFDB_UNSUPPORTED', `record ${recordName}: ${what('format')}: multi-frequency records are not supported`);
  }
  if (formatMatch[3] !== undefined && Number(formatMatch[3]) !== 0) {
    throw new WfdbError('WFDB_UNSUPPORTED', `record ${recordName}: ${what('format')}: skew is not supported`);
  }
  if (!SUPPORTED_FORMATS.has(format)) {
    throw new WfdbError('WFDB_UNSUPPORTED', `record ${recordName}: ${what('format')} ${format} is not supported (212 and 16 are)`);
  }
  const byteOffset = formatMatch[4] === undefined ? 0 : Number(formatMatch[4]);

  let gain = DEFAULT_GAIN;
  let baseline: number | undefined;
  let units = 'mV';
  if (gainField !== undefined) {
    const gainMatch = /^([-+0-9.eE]+)(?:\(([-+]?\d+)\))?(?:\/(\S+))?$/.exec(gainField);
    if (gainMatch === null) {
      throw new WfdbError('WFDB_BAD_HEADER', `record ${recordName}: ${what('gain')} "${gainField}" is malformed`);
    }
    const parsedGain = parseNumber(gainMatch[1] ?? '', what('gain'), recordName);
    gain = parsedGain === 0 ? DEFAULT_GAIN : parsedGain;
    if (gainMatch[2] !== undefined) baseline = Number(gainMatch[2]);
    if (gainMatch[3] !== undefined) units = gainMatch[3];
  }
  const adcResolution = resField === undefined ? (format === 212 ? 12 : 16) : parseInteger(resField, what('ADC resolution'), recordName);
  const adcZero = zeroField === undefined ? 0 : parseInteger(zeroField, what('ADC zero'), recordName);
  const initialValue = initField === undefined ? undefined : parseInteger(initField, what('initial value'), recordName);
  const checksum = checksumField === undefined ? undefined : parseInteger(checksumField, what('checksum'), recordName);
  const blockSize = blockField === undefined ? 0 : parseInteger(blockField, what('block size'), recordName);
  return {
    fileName,
    format,
    gain,
    baseline: baseline ?? adcZero,
    units,
    adcResolution,
    adcZero,
    initialValue,
    checksum,
    blockSize,
    byteOffset,
    description,
  };
}

/** Formats a header exactly as `wrheader` does: every field written, so any WFDB reader takes it. */
export function formatHeader(header: RecordHeader): string {
  const recordFields = [header.name, String(header.signals.length), formatNumber(header.samplingFrequency)];
  if (header.sampleCount !== undefined) {
    recordFields.push(String(header.sampleCount));
    if (header.baseTime !== undefined) {
      recordFields.push(header.baseTime);
      if (header.baseDate !== undefined) recordFields.push(header.baseDate);
    }
  }
  const lines = [recordFields.join(' ')];
  for (const signal of header.signals) {
    const format = signal.byteOffset > 0 ? `${signal.format}+${signal.byteOffset}` : String(signal.format);
    const gain = `${formatNumber(signal.gain)}(${signal.baseline})/${signal.units}`;
    const fields = [signal.fileName, format, gain, String(signal.adcResolution), String(signal.adcZero),
      String(signal.initialValue ?? 0), String(signal.checksum ?? 0), String(signal.blockSize)];
    if (signal.description.length > 0) fields.push(signal.description);
    lines.push(fields.join(' '));
  }
  for (const comment of header.comments) lines.push(`# ${comment}`);
  return `${lines.join('\n')}\n`;
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(12)));
}
