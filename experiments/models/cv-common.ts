/** What the two LORO CV runners (cv.ts for MLPs, trees/cv.ts for trees) share: --set overrides and folds. */
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
