/**
 * MIT annotation files (`annot(5)`, WFDB's "MIT format"): a stream of 16-bit little-endian words,
 * the annotation code in the top 6 bits and a time increment or field value in the low 10.
 *
 *   code 1..49   a new annotation, `increment` samples after the previous one
 *   59 SKIP      followed by a 32-bit increment as two words, high word first (PDP-11 order);
 *                the next annotation word then adds its own increment
 *   60 NUM       sets `num` of the current annotation (sticky: later ones inherit it)
 *   61 SUB       sets `subtype` of the current annotation
 *   62 CHN       sets `chan` of the current annotation (sticky)
 *   63 AUX       the low 10 bits give a byte count; that many bytes follow, padded to even
 *   0 with 0     end of file
 *
 * The writer follows WFDB's `putann`: SUB, CHN and NUM are written only when they differ from the
 * defaults or the previous annotation, and a SKIP precedes any increment that does not fit 10 bits.
 */
import { WfdbError } from './errors.js';

export interface Annotation {
  /** Sample index (time) of the annotation. */
  sample: number;
  /** MIT annotation code, 1..49. */
  code: number;
  subtype: number;
  chan: number;
  num: number;
  aux: string | undefined;
}

const SKIP = 59;
const NUM = 60;
const SUB = 61;
const CHN = 62;
const AUX = 63;
const MAX_INCREMENT = 1023;
const MAX_CODE = 49;

/** MIT codes and their mnemonics (WFDB's ecgcodes.h). */
export const ANNOTATION_MNEMONICS: Readonly<Record<number, string>> = {
  0: '', 1: 'N', 2: 'L', 3: 'R', 4: 'a', 5: 'V', 6: 'F', 7: 'J', 8: 'A', 9: 'S', 10: 'E', 11: 'j',
  12: '/', 13: 'Q', 14: '~', 16: '|', 18: 's', 19: 'T', 20: '*', 21: 'D', 22: '"', 23: '=',
  24: 'p', 25: 'B', 26: '^', 27: 't', 28: '+', 29: 'u', 30: '?', 31: '!', 32: '[', 33: ']',
  34: 'e', 35: 'n', 36: '@', 37: 'x', 38: 'f', 39: '(', 40: ')', 41: 'r',
};

export const CODE_OF_MNEMONIC: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(ANNOTATION_MNEMONICS).filter(([, m]) => m !== '').map(([code, m]) => [m, Number(code)]),
);

/** Codes WFDB's `isqrs()` counts as beats. */
const BEAT_CODES: ReadonlySet<number> = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 25, 30, 34, 35, 38, 41]);

export function isBeatCode(code: number): boolean {
  return BEAT_CODES.has(code);
}

export function mnemonicOf(code: number): string {
  return ANNOTATION_MNEMONICS[code] ?? `[${code}]`;
}

export function parseAnnotations(bytes: Uint8Array, label = 'annotations'): Annotation[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wordCount = Math.floor(bytes.byteLength / 2);
  const out: Annotation[] = [];
  let time = 0;
  let chan = 0;
  let num = 0;
  let current: Annotation | undefined;
  let position = 0;
  const word = (at: number): number => {
    if (at >= wordCount) {
      throw new WfdbError('WFDB_BAD_ANNOTATION', `${label}: file ends inside an annotation (word ${at})`);
    }
    return view.getUint16(at * 2, true);
  };
  for (;;) {
    if (position >= wordCount) {
      // Some writers omit the end word; a file that stops between annotations is still whole.
      break;
    }
    const value = word(position++);
    const code = value >> 10;
    const field = value & 0x3ff;
    if (code === 0 && field === 0) break;
    if (code === SKIP) {
      const high = word(position++);
      const low = word(position++);
      const increment = ((high << 16) | low) | 0;
      time += increment;
      continue;
    }
    if (code === NUM || code === SUB || code === CHN || code === AUX) {
      if (current === undefined) {
        throw new WfdbError('WFDB_BAD_ANNOTATION', `${label}: field word (code ${code}) before any annotation`);
      }
      if (code === NUM) {
        current.num = signed10(field);
        num = current.num;
      } else if (code === SUB) {
        current.subtype = signed10(field);
      } else if (code === CHN) {
        current.chan = field;
        chan = field;
      } else {
        const byteStart = position * 2;
        if (byteStart + field > bytes.byteLength) {
          throw new WfdbError('WFDB_BAD_ANNOTATION', `${label}: AUX text runs past the end of the file`);
        }
        current.aux = new TextDecoder('latin1').decode(bytes.subarray(byteStart, byteStart + field)).replace(/\0+$/, '');
        position += Math.ceil(field / 2);
      }
      continue;
    }
    if (code > MAX_CODE) {
      throw new WfdbError('WFDB_BAD_ANNOTATION', `${label}: unknown annotation code ${code} at word ${position - 1}`);
    }
    time += field;
    current = { sample: time, code, subtype: 0, chan, num, aux: undefined };
    out.push(current);
  }
  return out;
}

/** SUB and NUM hold signed values in 10 bits, as WFDB stores them. */
function signed10(field: number): number {
  return field > 511 ? field - 1024 : field;
}

export function encodeAnnotations(annotations: readonly Annotation[]): Uint8Array {
  const words: number[] = [];
  const bytes: number[] = [];
  const flushWords = () => {
    for (const w of words) bytes.push(w & 0xff, (w >> 8) & 0xff);
    words.length = 0;
  };
  let previousTime = 0;
  let previousChan = 0;
  let previousNum = 0;
  for (const [index, annotation] of annotations.entries()) {
    const { code, sample } = annotation;
    if (!Number.isInteger(code) || code < 1 || code > MAX_CODE) {
      throw new WfdbError('WFDB_RANGE', `annotation ${index}: code ${code} is not an annotation code (1..49)`);
    }
    if (!Number.isInteger(sample) || sample < 0) {
      throw new WfdbError('WFDB_RANGE', `annotation ${index}: sample ${sample} is not a non-negative integer`);
    }
    let increment = sample - previousTime;
    if (increment < 0 || increment > MAX_INCREMENT) {
      words.push(SKIP << 10, (increment >>> 16) & 0xffff, increment & 0xffff);
      increment = 0;
    }
    words.push((code << 10) | increment);
    if (annotation.subtype !== 0) words.push((SUB << 10) | field10(annotation.subtype, index, 'subtype'));
    if (annotation.chan !== previousChan) words.push((CHN << 10) | field10(annotation.chan, index, 'chan'));
    if (annotation.num !== previousNum) words.push((NUM << 10) | field10(annotation.num, index, 'num'));
    flushWords();
    if (annotation.aux !== undefined && annotation.aux.length > 0) {
      // Counted with a terminating NUL, as WFDB's own writers store it (the MIT-BIH files do).
      const text = Buffer.from(`${annotation.aux}\0`, 'latin1');
      if (text.length > 255) {
        throw new WfdbError('WFDB_RANGE', `annotation ${index}: aux text longer than 254 bytes`);
      }
      words.push((AUX << 10) | text.length);
      flushWords();
      for (const b of text) bytes.push(b);
      if (text.length % 2 === 1) bytes.push(0);
    }
    previousTime = sample;
    previousChan = annotation.chan;
    previousNum = annotation.num;
  }
  words.push(0);
  flushWords();
  return Uint8Array.from(bytes);
}

function field10(value: number, index: number, what: string): number {
  if (!Number.isInteger(value) || value < -512 || value > 1023) {
    throw new WfdbError('WFDB_RANGE', `annotation ${index}: ${what} ${value} does not fit 10 bits`);
  }
  return value & 0x3ff;
}

export function annotation(sample: number, code: number, fields: Partial<Omit<Annotation, 'sample' | 'code'>> = {}): Annotation {
  return { sample, code, subtype: 0, chan: 0, num: 0, aux: undefined, ...fields };
}
