import { copyFile, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { excludedIntervals, matchBeats, qrsStats } from '../functions/eval/index.js';
import { isBeatCode, readAnnotations } from '../functions/wfdb/index.js';
import { excerptDir } from './support/data.js';
import { ecgfaas as runEcgfaas } from './support/processes.js';

const ecgfaas = (...args: string[]) => runEcgfaas(args);

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-cli-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const rate = expect.toSatisfy((v: unknown) => v === null || (typeof v === 'number' && v >= 0 && v <= 1));

describe('ecgfaas eval', () => {
  it('prints one JSON object with the contract keys for a multiclass model', async () => {
    const result = await ecgfaas('eval', '--data', excerptDir(), '--records', '119,208', '--json');
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const report = JSON.parse(lines[0] as string);
    expect(report.model).toMatchObject({ name: expect.any(String), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(report.records).toEqual(['119', '208']);
    expect(report.qrs).toEqual({ tp: expect.any(Number), fp: expect.any(Number), fn: expect.any(Number), se: rate, ppv: rate });
    expect(report.qrs.tp).toBeGreaterThan(400);
    expect(report.beats.n).toBe(report.qrs.tp);
    const classes = ['N', 'S', 'V', 'F', 'Q'];
    expect(Object.keys(report.beats.confusion)).toEqual(classes);
    let total = 0;
    for (const row of classes) {
      expect(Object.keys(report.beats.confusion[row])).toEqual(classes);
      for (const col of classes) total += report.beats.confusion[row][col];
      expect(report.classes[row]).toEqual({ se: rate, ppv: rate });
    }
    expect(total).toBe(report.beats.n);
    expect(report.abnormal).toEqual({ se: rate, ppv: rate, acc: rate });
    expect(report.perPacketMs.p50).toBeGreaterThan(0);
    expect(report.perPacketMs.p99).toBeGreaterThanOrEqual(report.perPacketMs.p50);
  });

  it('fills abnormal and leaves classes and confusion null for the binary paper model', async () => {
    const result = await ecgfaas('eval', '--data', excerptDir(), '--records', '119', '--model', 'paper', '--json');
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.classes).toBeNull();
    expect(report.beats.confusion).toBeNull();
    expect(report.abnormal.se).toBeGreaterThan(0.5);
    expect(report.model.name).toMatch(/paper/);
  });

  it('prints a table without --json', async () => {
    const result = await ecgfaas('eval', '--data', excerptDir(), '--records', '101');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/gross/);
    expect(result.stdout).toMatch(/reference \\ predicted/);
  });

  it('fails clearly on a record that is not there, a truncated .dat, a bad header and bad flags', async () => {
    const missing = await ecgfaas('eval', '--data', excerptDir(), '--records', '999', '--json');
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/WFDB_NOT_FOUND.*999/);

    const broken = path.join(scratch, 'broken');
    await mkdir(broken, { recursive: true });
    for (const ext of ['hea', 'dat', 'atr']) await copyFile(path.join(excerptDir(), `119.${ext}`), path.join(broken, `119.${ext}`));
    await truncate(path.join(broken, '119.dat'), 1000);
    const truncated = await ecgfaas('eval', '--data', broken, '--records', '119', '--json');
    expect(truncated.code).toBe(1);
    expect(truncated.stderr).toMatch(/WFDB_TRUNCATED.*record 119/);

    await writeFile(path.join(broken, '119.hea'), '119 2 360 64800\n119.dat 212 200 11 1024 x\n');
    const badHeader = await ecgfaas('eval', '--data', broken, '--records', '119', '--json');
    expect(badHeader.code).toBe(1);
    expect(badHeader.stderr).toMatch(/WFDB_BAD_HEADER.*record 119/);

    expect((await ecgfaas('eval', '--data', path.join(scratch, 'nope'))).code).toBe(1);
    expect((await ecgfaas('eval', '--data', excerptDir(), '--records', '../x')).code).toBe(2);
    expect((await ecgfaas('eval', '--data', excerptDir(), '--bogus')).code).toBe(2);
    expect((await ecgfaas('eval')).code).toBe(2);
    const noModel = await ecgfaas('eval', '--data', excerptDir(), '--model', path.join(scratch, 'none.onnx'));
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toMatch(/CLI_MODEL_NOT_FOUND/);
  });
});

describe('ecgfaas annotate', () => {
  it('writes MIT annotation files whose bxb-style scores equal those of eval', async () => {
    const out = path.join(scratch, 'ann');
    const result = await ecgfaas('annotate', '--data', excerptDir(), '--records', '208,209', '--out', out);
    expect(result.code, result.stderr).toBe(0);
    const evaluation = JSON.parse((await ecgfaas('eval', '--data', excerptDir(), '--records', '208,209', '--json')).stdout);
    const matches = [];
    for (const name of ['208', '209']) {
      const ours = await readAnnotations(out, name, 'ecg');
      expect(ours.length).toBeGreaterThan(100);
      expect(new Set(ours.map((a) => a.code)).size).toBeGreaterThan(1);
      for (const a of ours) expect([1, 8, 5, 6, 13]).toContain(a.code);
      const reference = await readAnnotations(excerptDir(), name);
      matches.push(matchBeats(reference.filter((a) => isBeatCode(a.code)).map((a) => a.sample), ours.map((a) => a.sample), { excluded: excludedIntervals(reference) }));
    }
    expect(qrsStats(matches)).toEqual(evaluation.qrs);
  });

  it('uses the annotator name given and refuses a bad one', async () => {
    const out = path.join(scratch, 'ann2');
    expect((await ecgfaas('annotate', '--data', excerptDir(), '--records', '101', '--out', out, '--annotator', 'test1')).code).toBe(0);
    expect((await readFile(path.join(out, '101.test1'))).length).toBeGreaterThan(100);
    const bad = await ecgfaas('annotate', '--data', excerptDir(), '--records', '101', '--out', out, '--annotator', 'a.b');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/CLI_BAD_ANNOTATOR/);
  });
});

describe('ecgfaas model and data', () => {
  it('prints model metadata', async () => {
    const result = await ecgfaas('model', 'info', 'paper');
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ kind: 'binary', featureSet: 'paper-v1', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('cuts an excerpt that reads back with verified checksums', async () => {
    const out = path.join(scratch, 'cut');
    const result = await ecgfaas('data', 'excerpt', '--data', excerptDir(), '--records', '119:60', '--seconds', '30', '--out', out);
    expect(result.code, result.stderr).toBe(0);
    const annotations = await readAnnotations(out, '119');
    expect(annotations.length).toBeGreaterThan(20);
    expect(annotations.every((a) => a.sample >= 0 && a.sample < 30 * 360)).toBe(true);
    expect((await ecgfaas('data', 'excerpt', '--data', excerptDir(), '--records', '119:9999', '--out', out)).code).toBe(1);
  });
});
