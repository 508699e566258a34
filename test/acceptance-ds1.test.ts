/**
 * Acceptance figures on the full DS1 set (needs ECGFAAS_MITDB; CI sets it): the streaming path of
 * `ecgfaas eval`, 1-second packets, bxb rules from sample 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DS1_RECORDS } from '../functions/datasets.js';
import { evaluateRecords, type EvaluationReport } from '../functions/eval/evaluate.js';
import { BeatClassifier } from '../functions/model/index.js';
import { mitdbDir, modelPath } from './support/data.js';

const dir = mitdbDir();

describe.skipIf(dir === undefined)('DS1 through the streaming function', () => {
  let classifier: BeatClassifier;
  let report: EvaluationReport;

  beforeAll(async () => {
    classifier = await BeatClassifier.load(modelPath('default'));
    report = await evaluateRecords({ dataDir: dir as string, records: DS1_RECORDS, classifier });
  }, 180_000);
  afterAll(async () => {
    await classifier?.close();
  });

  it('detects beats with gross Se and +P of at least 99.5 %', () => {
    expect(report.records).toEqual([...DS1_RECORDS]);
    expect(report.qrs.tp + report.qrs.fn).toBe(51021);
    expect(report.qrs.se).toBeGreaterThanOrEqual(0.995);
    expect(report.qrs.ppv).toBeGreaterThanOrEqual(0.995);
  });

  it('classifies every matched beat once', () => {
    expect(report.beats.n).toBe(report.qrs.tp);
    const confusion = report.beats.confusion as NonNullable<EvaluationReport['beats']['confusion']>;
    const total = Object.values(confusion).reduce((sum, row) => sum + Object.values(row).reduce((a, b) => a + b, 0), 0);
    expect(total).toBe(report.beats.n);
  });
});
