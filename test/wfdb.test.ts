import { mkdtemp, readFile, writeFile, truncate, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  annotation, decodeSamples, encodeAnnotations, encodeSamples, formatHeader, isBeatCode, mnemonicOf,
  parseAnnotations, parseHeader, readAnnotations, readRecord, signalChecksum, writeAnnotations, writeRecord,
  type Annotation,
} from '../functions/wfdb/index.js';
import { excerptDir, mitdbDir } from './support/data.js';

const scratch: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-wfdb-'));
  scratch.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Little-endian 16-bit words, as the MIT annotation format stores them. */
function words(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  values.forEach((value, i) => {
    out[i * 2] = value & 0xff;
    out[i * 2 + 1] = (value >> 8) & 0xff;
  });
  return out;
}

describe('WFDB headers', () => {
  it('parses an MIT-BIH header with comments', () => {
    const header = parseHeader(
      '100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n100.dat 212 200 11 1024 1011 20052 0 V5\n# 69 M 1085 1629 x1\n# Aldomet, Inderal\n',
      '100',
    );
    expect(header).toMatchObject({ name: '100', samplingFrequency: 360, sampleCount: 650000 });
    expect(header.signals).toHaveLength(2);
    expect(header.signals[0]).toMatchObject({
      fileName: '100.dat', format: 212, gain: 200, baseline: 1024, adcResolution: 11, adcZero: 1024,
      initialValue: 995, checksum: -22131, blockSize: 0, description: 'MLII', units: 'mV',
    });
    expect(header.comments).toEqual(['69 M 1085 1629 x1', 'Aldomet, Inderal']);
  });

  it('reads gain with baseline and units, byte offsets, and defaults', () => {
    const header = parseHeader('r 1 250/1(0)\nr.dat 16+24 0(-5)/uV\n');
    expect(header.samplingFrequency).toBe(250);
    expect(header.sampleCount).toBeUndefined();
    expect(header.signals[0]).toMatchObject({ format: 16, byteOffset: 24, gain: 200, baseline: -5, units: 'uV', adcZero: 0 });
  });

  it('round-trips through formatHeader', () => {
    const text = '200 2 360 650000\n200.dat 212 200(1024)/mV 11 1024 -5 -123 0 MLII\n200.dat 212 200(1024)/mV 11 1024 7 456 0 V1\n# a comment\n';
    const header = parseHeader(text);
    expect(formatHeader(header)).toBe(text);
    expect(parseHeader(formatHeader(header))).toEqual(header);
  });

  it.each([
    ['', 'WFDB_BAD_HEADER'],
    ['r x 360', 'WFDB_BAD_HEADER'],
    ['r 2 360 100\nr.dat 212', 'WFDB_BAD_HEADER'],
    ['r 1 360 100\nr.dat 80', 'WFDB_UNSUPPORTED'],
    ['r/2 1 360 100\nr.dat 212', 'WFDB_UNSUPPORTED'],
    ['r 1 0 100\nr.dat 212', 'WFDB_BAD_HEADER'],
    ['r 1 360 100\nr.dat 212 abc', 'WFDB_BAD_HEADER'],
  ])('rejects %j with %s', (text, code) => {
    expect(() => parseHeader(text)).toThrow(expect.objectContaining({ code }));
  });

  it('rejects a header that names another record', () => {
    expect(() => parseHeader('101 1 360 1\n101.dat 16', '100')).toThrow(expect.objectContaining({ code: 'WFDB_BAD_HEADER' }));
  });
});

describe('WFDB signal formats', () => {
  it('decodes format 212 as the specification packs it', () => {
    // s0 = 0x123, s1 = -1 (0xFFF): b0 = 0x23, b1 = (0xF << 4) | 0x1, b2 = 0xFF.
    expect(Array.from(decodeSamples(212, Uint8Array.from([0x23, 0xf1, 0xff]), 2))).toEqual([0x123, -1]);
    // s0 = 0x800 (-2048), s1 = 0x0FF (255).
    expect(Array.from(decodeSamples(212, Uint8Array.from([0x00, 0x08, 0xff]), 2))).toEqual([-2048, 255]);
  });

  it('round-trips format 212 and 16 for any samples in range, odd counts included', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: -2048, max: 2047 }), { maxLength: 101 }), (samples) => {
      expect(Array.from(decodeSamples(212, encodeSamples(212, samples), samples.length))).toEqual(samples);
    }));
    fc.assert(fc.property(fc.array(fc.integer({ min: -32768, max: 32767 }), { maxLength: 101 }), (samples) => {
      expect(Array.from(decodeSamples(16, encodeSamples(16, samples), samples.length))).toEqual(samples);
    }));
  });

  it('refuses values the format cannot hold instead of clipping them', () => {
    expect(() => encodeSamples(212, [2048])).toThrow(expect.objectContaining({ code: 'WFDB_RANGE' }));
    expect(() => encodeSamples(16, [40000])).toThrow(expect.objectContaining({ code: 'WFDB_RANGE' }));
    expect(() => encodeSamples(16, [1.5])).toThrow(expect.objectContaining({ code: 'WFDB_RANGE' }));
  });

  it('computes the checksum as a signed 16-bit sum', () => {
    expect(signalChecksum([32767, 1])).toBe(-32768);
    expect(signalChecksum([-1, -1])).toBe(-2);
    expect(signalChecksum([])).toBe(0);
  });
});

describe('MIT annotation files', () => {
  it('decodes hand-made words: increments, SKIP (high word first), NUM/CHN sticky, SUB, AUX, end', () => {
    const aux = Buffer.from('(AFIB', 'latin1'); // odd length: padded with one zero byte
    const bytes = Buffer.concat([
      words((1 << 10) | 100), // N at 100
      words((61 << 10) | 3), // SUB 3
      words((60 << 10) | 5), // NUM 5 (sticky)
      words(59 << 10, 0x0001, 0x0002), // SKIP 0x00010002 = 65538
      words((5 << 10) | 0), // V at 100 + 65538
      words((62 << 10) | 1), // CHN 1 (sticky)
      words((28 << 10) | 10), // rhythm change 10 later
      words((63 << 10) | aux.length), aux, Buffer.from([0]),
      words(0),
    ]);
    const parsed = parseAnnotations(bytes);
    expect(parsed).toEqual([
      { sample: 100, code: 1, subtype: 3, chan: 0, num: 5, aux: undefined },
      { sample: 65638, code: 5, subtype: 0, chan: 1, num: 5, aux: undefined },
      { sample: 65648, code: 28, subtype: 0, chan: 1, num: 5, aux: '(AFIB' },
    ]);
    expect(mnemonicOf(5)).toBe('V');
    expect(isBeatCode(28)).toBe(false);
    expect(isBeatCode(12)).toBe(true);
  });

  it('re-encodes the shipped excerpt (written by this writer) byte for byte', async () => {
    const dir = excerptDir();
    const names = (await readdir(dir)).filter((f) => f.endsWith('.atr')).map((f) => f.slice(0, -4));
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) {
      const bytes = await readFile(path.join(dir, `${name}.atr`));
      expect(Buffer.from(encodeAnnotations(parseAnnotations(bytes)))).toEqual(bytes);
    }
  });

  it.skipIf(mitdbDir() === undefined)('decodes what it encodes from every MIT-BIH .atr (PhysioNet writers differ only in AUX padding)', async () => {
    const dir = mitdbDir() as string;
    for (const name of (await readdir(dir)).filter((f) => f.endsWith('.atr'))) {
      const parsed = parseAnnotations(await readFile(path.join(dir, name)));
      expect(parseAnnotations(encodeAnnotations(parsed)), name).toEqual(parsed);
    }
  });

  it('round-trips arbitrary annotation streams', () => {
    const annotationArb = fc.record({
      delta: fc.oneof(fc.integer({ min: 0, max: 1023 }), fc.integer({ min: 1024, max: 5_000_000 })),
      code: fc.integer({ min: 1, max: 49 }).filter((code) => code < 59),
      subtype: fc.integer({ min: -128, max: 127 }),
      chan: fc.integer({ min: 0, max: 255 }),
      num: fc.integer({ min: -128, max: 127 }),
      aux: fc.option(fc.string({ unit: fc.constantFrom(...'(AFIBNVT +-'), minLength: 1, maxLength: 40 }), { nil: undefined }),
    });
    fc.assert(fc.property(fc.array(annotationArb, { maxLength: 40 }), (items) => {
      let sample = 0;
      const list: Annotation[] = items.map((item) => {
        sample += item.delta;
        return { sample, code: item.code, subtype: item.subtype, chan: item.chan, num: item.num, aux: item.aux };
      });
      expect(parseAnnotations(encodeAnnotations(list))).toEqual(list);
    }));
  });

  it('writes SKIP for an annotation at a large sample and for one that goes back in time', () => {
    const list = [annotation(2_000_000, 1), annotation(1_999_000, 5), annotation(0, 1)];
    const bytes = encodeAnnotations(list);
    expect(parseAnnotations(bytes).map((a) => [a.sample, a.code])).toEqual([[2_000_000, 1], [1_999_000, 5], [0, 1]]);
    // First word is SKIP, then the high and low words of 2,000,000 = 0x001E8480.
    expect(Array.from(bytes.subarray(0, 6))).toEqual([0x00, 59 << 2, 0x1e, 0x00, 0x80, 0x84]);
  });

  it.each([
    ['a field word before any annotation', words((60 << 10) | 1, 0)],
    ['an unknown code', words((55 << 10) | 1, 0)],
    ['AUX text past the end', words((1 << 10) | 1, (63 << 10) | 20, 0)],
    ['a SKIP cut short', words(59 << 10, 1)],
  ])('rejects %s', (_, bytes) => {
    expect(() => parseAnnotations(bytes)).toThrow(expect.objectContaining({ code: 'WFDB_BAD_ANNOTATION' }));
  });

  it('refuses codes and fields it cannot store', () => {
    expect(() => encodeAnnotations([annotation(1, 0)])).toThrow(expect.objectContaining({ code: 'WFDB_RANGE' }));
    expect(() => encodeAnnotations([annotation(1, 1, { num: 2000 })])).toThrow(expect.objectContaining({ code: 'WFDB_RANGE' }));
    expect(() => encodeAnnotations([annotation(-1, 1)])).toThrow(expect.objectContaining({ code: 'WFDB_RANGE' }));
  });
});

describe('WFDB records on disk', () => {
  const signals = (n: number) => [0, 1].map((lead) => Int16Array.from({ length: n }, (_, i) => Math.round(800 * Math.sin(i / (7 + lead))) - 3 * lead));

  it.each([16, 212] as const)('writes and reads back a two-lead record in format %i', async (format) => {
    const dir = await tempDir();
    const [lead0, lead1] = signals(1001);
    await writeRecord(dir, {
      name: 'rt', samplingFrequency: 360, format, comments: ['written by a test'],
      signals: [
        { samples: lead0 as Int16Array, gain: 200, baseline: 0, description: 'MLII' },
        { samples: lead1 as Int16Array, gain: 200, baseline: 0, description: 'V1' },
      ],
    });
    const record = await readRecord(dir, 'rt');
    expect(record.header.sampleCount).toBe(1001);
    expect(record.header.signals.map((s) => s.description)).toEqual(['MLII', 'V1']);
    expect(record.header.comments).toEqual(['written by a test']);
    expect(record.signals[0]).toEqual(lead0);
    expect(record.signals[1]).toEqual(lead1);
    const list = [annotation(10, 1), annotation(500, 5), annotation(1000, 8, { aux: 'x' })];
    await writeAnnotations(dir, 'rt', 'ecg', list);
    expect(await readAnnotations(dir, 'rt', 'ecg')).toEqual(list);
  });

  it('names the record and signal when the checksum or first value disagrees', async () => {
    const dir = await tempDir();
    const [lead0] = signals(50);
    await writeRecord(dir, { name: 'bad', samplingFrequency: 360, signals: [{ samples: lead0 as Int16Array, gain: 200, baseline: 0, description: 'MLII' }] });
    const headerFile = path.join(dir, 'bad.hea');
    const text = await readFile(headerFile, 'latin1');
    const fields = text.split('\n')[1]?.split(' ') ?? [];
    fields[6] = String(Number(fields[6]) + 1);
    await writeFile(headerFile, text.replace(/\n.*\n/, `\n${fields.join(' ')}\n`));
    await expect(readRecord(dir, 'bad')).rejects.toMatchObject({ code: 'WFDB_CHECKSUM', message: expect.stringMatching(/record bad, signal 0 \(MLII\): checksum/) });
    await expect(readRecord(dir, 'bad', { verify: false })).resolves.toBeDefined();
  });

  it('reports a truncated .dat and a missing record clearly', async () => {
    const dir = await tempDir();
    const [lead0] = signals(100);
    await writeRecord(dir, { name: 'cut', samplingFrequency: 360, format: 212, signals: [{ samples: lead0 as Int16Array, gain: 200, baseline: 0, description: 'MLII' }] });
    await truncate(path.join(dir, 'cut.dat'), 100);
    await expect(readRecord(dir, 'cut')).rejects.toMatchObject({ code: 'WFDB_TRUNCATED', message: expect.stringContaining('record cut') });
    await expect(readRecord(dir, 'nothere')).rejects.toMatchObject({ code: 'WFDB_NOT_FOUND', message: expect.stringContaining('nothere.hea') });
    await expect(readRecord(dir, '../etc')).rejects.toMatchObject({ code: 'WFDB_BAD_NAME' });
  });
});

describe('MIT-BIH records', () => {
  /** The per-record table of the data README: | record | set | leads | N | S | V | F | Q | beats | labels |. */
  async function readmeCounts(dir: string): Promise<Map<string, number[]>> {
    const text = await readFile(path.join(dir, 'README.md'), 'utf8');
    const counts = new Map<string, number[]>();
    for (const line of text.split('\n')) {
      const cells = line.split('|').map((cell) => cell.trim());
      if (cells.length > 9 && /^\d{3}$/.test(cells[1] ?? '')) counts.set(cells[1] as string, cells.slice(4, 10).map(Number));
    }
    return counts;
  }

  const aami: Record<string, number> = { N: 0, L: 0, R: 0, e: 0, j: 0, A: 1, a: 1, J: 1, S: 1, V: 2, E: 2, F: 3, '/': 4, f: 4, Q: 4 };

  it.skipIf(mitdbDir() === undefined)('reads every record of the data directory with verified checksums, and beat counts equal its README', async () => {
    const dir = mitdbDir() as string;
    const expected = await readmeCounts(dir);
    const names = (await readdir(dir)).filter((f) => f.endsWith('.hea')).map((f) => f.slice(0, -4)).sort();
    expect(names.length).toBe(26);
    expect([...expected.keys()].sort()).toEqual(names);
    for (const name of names) {
      const record = await readRecord(dir, name);
      expect(record.signals.every((s) => s.length === 650000)).toBe(true);
      const counts = [0, 0, 0, 0, 0, 0];
      for (const a of await readAnnotations(dir, name)) {
        if (!isBeatCode(a.code)) continue;
        const cls = aami[mnemonicOf(a.code)];
        expect(cls, `record ${name} label ${mnemonicOf(a.code)}`).toBeDefined();
        counts[cls as number] = (counts[cls as number] ?? 0) + 1;
        counts[5] = (counts[5] ?? 0) + 1;
      }
      expect(counts, `record ${name}`).toEqual(expected.get(name));
    }
  });
});
