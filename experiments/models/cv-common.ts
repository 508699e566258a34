/** What the two LORO CV runners (cv.ts for MLPs, trees/cv.ts for trees) share: --set overrides and folds. */
import { AAMI_CLASSES } from '../../functions/aami/index.js';
import { DS1_RECORDS } from '../../functions/datasets.js';
import { mulberry32 } from '../../functions/model/mlp.js';
import { subSeed } from '../../functions/model/train.js';

/** Applies one `key=value` override to a preset; false when the key is not a field of it. */
export function applySet(preset: object, assignment: string): boolean {
  const [key, value] = assignment.split('=');
  if (!key || value === undefined || !(key in preset)) return false;
  const fields = preset as Record<string, unknown>;
  fields[key] = typeof fields[key] === 'number' ? Number(value) : value;
  return true;
}

/** Record → fold: one record per fold for leave-one-record-out (22 folds), else a seeded shuffle. */
export function foldAssignment(folds: number, seed: number): { records: string[]; foldOf: Map<string, number> } {
  const records = [...DS1_RECORDS] as string[];
  const foldOf = new Map<string, number>();
  if (folds === records.length) {
    records.forEach((r, i) => foldOf.set(r, i));
    return { records, foldOf };
  }
  const rand = mulberry32(subSeed(seed, 7));
  const shuffled = records.slice();
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j] as string, shuffled[i] as string];
  }
  shuffled.forEach((r, i) => foldOf.set(r, i % folds));
  return { records, foldOf };
}

/**
 * Prints the confusion matrix (rows: reference AAMI class; columns: the model's classes), per-class
 * Se/+P for multiclass models, abnormal (any class but N) Se/+P/accuracy, and 5-class accuracy.
 */
export function printConfusionReport(confusion: readonly number[][], classes: readonly string[], multiclass: boolean): void {
  const pct = (a: number, b: number) => (b === 0 ? '   n/a' : ((100 * a) / b).toFixed(2).padStart(6));
  console.log(`confusion (rows: reference AAMI class, columns: predicted ${classes.join('/')}):`);
  console.log('      ' + classes.map((c) => c.padStart(9)).join(''));
  confusion.forEach((row, t) => console.log(`  ${AAMI_CLASSES[t]}   ` + row.map((v) => String(v).padStart(9)).join('')));
  if (multiclass) {
    for (let k = 0; k < confusion.length; k++) {
      const tp = (confusion[k] as number[])[k] as number;
      const actual = (confusion[k] as number[]).reduce((a, b) => a + b, 0);
      const predicted = confusion.reduce((a, row) => a + (row[k] as number), 0);
      console.log(`  class ${AAMI_CLASSES[k]}: Se ${pct(tp, actual)} %  +P ${pct(tp, predicted)} %  (n ${actual})`);
    }
  }
  let total = 0;
  let correctBinary = 0;
  let abnTrue = 0;
  let abnPred = 0;
  let abnHit = 0;
  confusion.forEach((row, t) => row.forEach((v, p) => {
    total += v;
    const ta = t !== 0;
    const pa = p !== 0;
    if (ta === pa) correctBinary += v;
    if (ta) abnTrue += v;
    if (pa) abnPred += v;
    if (ta && pa) abnHit += v;
  }));
  console.log(`  abnormal (any class but N): Se ${pct(abnHit, abnTrue)} %  +P ${pct(abnHit, abnPred)} %  accuracy ${pct(correctBinary, total)} %  (beats ${total}, abnormal ${abnTrue})`);
  if (multiclass) {
    const correct = confusion.reduce((a, row, t) => a + (row[t] as number), 0);
    console.log(`  5-class accuracy ${pct(correct, total)} %`);
  }
}

/**
 * Adds a held-out record's argmax predictions to the confusion matrix and returns its per-record
 * line (abnormal beats, how many were flagged, and what its N beats were called).
 */
export function tallyRecord(
  record: string, trueClasses: ArrayLike<number>, probs: readonly Float32Array[], confusion: number[][], classes: readonly string[],
  onBeat?: (trueClass: number, probabilities: Float32Array) => void,
): string {
  const P = classes.length;
  let abnTrue = 0;
  let abnHit = 0;
  let abnPred = 0;
  const nAs = new Array<number>(P).fill(0);
  probs.forEach((p, i) => {
    let best = 0;
    for (let k = 1; k < P; k++) if ((p[k] as number) > (p[best] as number)) best = k;
    const t = trueClasses[i] as number;
    (confusion[t] as number[])[best]! += 1;
    if (t !== 0) abnTrue++;
    if (best !== 0) abnPred++;
    if (t !== 0 && best !== 0) abnHit++;
    if (t === 0) nAs[best]! += 1;
    onBeat?.(t, p);
  });
  return `${record}: beats ${probs.length} abnormal ${abnTrue} detected ${abnHit} flagged ${abnPred}; N beats predicted ${classes.map((c, k) => `${c} ${nAs[k]}`).join(', ')}`;
}
