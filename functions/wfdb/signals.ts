/**
 * Sample storage formats of WFDB signal files (`signal(5)`):
 *
 * - 212: pairs of 12-bit two's-complement samples packed in 3 bytes; the first sample is the low
 *   byte plus the low nibble of the middle byte, the second the third byte plus the high nibble.
 *   Samples of all signals in one file are interleaved frame by frame and then packed in pairs, so
 *   a pair may straddle two frames when a file holds an odd number of signals.
 * - 16: 16-bit two's-complement, little-endian.
 */
import { WfdbError } from './errors.js';

export function bytesForSamples(format: number, sampleCount: number): number {
  if (format === 16) return sampleCount * 2;
  if (format === 212) return Math.ceil(sampleCount / 2) * 3;
  throw new WfdbError('WFDB_UNSUPPORTED', `format ${format} is not supported`);
}

/** Decodes `count` interleaved samples (all signals of one file, frame after frame). */
export function decodeSamples(format: number, bytes: Uint8Array, count: number): Int16Array {
  const out = new Int16Array(count);
  if (format === 16) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true);
    return out;
  }
  if (format === 212) {
    for (let i = 0, byte = 0; i < count; i += 2, byte += 3) {
      const b0 = bytes[byte] ?? 0;
      const b1 = bytes[byte + 1] ?? 0;
      const first = b0 | ((b1 & 0x0f) << 8);
      out[i] = first > 2047 ? first - 4096 : first;
      if (i + 1 < count) {
        const b2 = bytes[byte + 2] ?? 0;
        const second = b2 | ((b1 & 0xf0) << 4);
        out[i + 1] = second > 2047 ? second - 4096 : second;
      }
    }
    return out;
  }
  throw new WfdbError('WFDB_UNSUPPORTED', `format ${format} is not supported`);
}

/** Encodes interleaved samples; values outside the format's range are an error, never clipped. */
export function encodeSamples(format: number, samples: ArrayLike<number>): Uint8Array {
  const count = samples.length;
  const out = new Uint8Array(bytesForSamples(format, count));
  if (format === 16) {
    const view = new DataView(out.buffer);
    for (let i = 0; i < count; i++) {
      const value = samples[i] as number;
      if (!Number.isInteger(value) || value < -32768 || value > 32767) {
        throw new WfdbError('WFDB_RANGE', `sample ${i} (${value}) does not fit format 16`);
      }
      view.setInt16(i * 2, value, true);
    }
    return out;
  }
  if (format === 212) {
    for (let i = 0, byte = 0; i < count; i += 2, byte += 3) {
      const first = check212(samples[i] as number, i) & 0xfff;
      const second = i + 1 < count ? check212(samples[i + 1] as number, i + 1) & 0xfff : 0;
      out[byte] = first & 0xff;
      out[byte + 1] = ((first >> 8) & 0x0f) | ((second >> 4) & 0xf0);
      out[byte + 2] = second & 0xff;
    }
    return out;
  }
  throw new WfdbError('WFDB_UNSUPPORTED', `format ${format} is not supported`);
}

function check212(value: number, index: number): number {
  if (!Number.isInteger(value) || value < -2048 || value > 2047) {
    throw new WfdbError('WFDB_RANGE', `sample ${index} (${value}) does not fit format 212`);
  }
  return value;
}

/** The header's checksum: the sum of all samples of one signal, as a signed 16-bit number. */
export function signalChecksum(samples: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum = (sum + (samples[i] as number)) & 0xffff;
  return sum > 32767 ? sum - 65536 : sum;
}
