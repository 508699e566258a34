/**
 * Beat classification figures over reference beats that the detector matched (the convention of
 * EC57 and de Chazal et al.: a beat the detector missed has no class to score). Rates are fractions
 * 0..1, null when their denominator is 0.
 */
import { AAMI_CLASSES, type AamiClass } from '../aami/index.js';

export type Confusion = Record<AamiClass, Record<AamiClass, number>>;

export interface ClassRates {
  se: number | null;
  ppv: number | null;
}

export interface AbnormalRates {
  se: number | null;
  ppv: number | null;
  acc: number | null;
}

export function ratio(numerator: number, denominator: number): number | null {
  return denominator === 0 ? null : numerator / denominator;
}

export function emptyConfusion(): Confusion {
  const row = () => Object.fromEntries(AAMI_CLASSES.map((c) => [c, 0])) as Record<AamiClass, number>;
  return Object.fromEntries(AAMI_CLASSES.map((c) => [c, row()])) as Confusion;
}

/** Adds `other` into `into` (gross figures over records). */
export function addConfusion(into: Confusion, other: Confusion): Confusion {
  for (const reference of AAMI_CLASSES) for (const predicted of AAMI_CLASSES) into[reference][predicted] += other[reference][predicted];
  return into;
}

export function classRates(confusion: Confusion): Record<AamiClass, ClassRates> {
  const rates = {} as Record<AamiClass, ClassRates>;
  for (const cls of AAMI_CLASSES) {
    const truePositive = confusion[cls][cls];
    const referenceTotal = AAMI_CLASSES.reduce((sum, p) => sum + confusion[cls][p], 0);
    const predictedTotal = AAMI_CLASSES.reduce((sum, r) => sum + confusion[r][cls], 0);
    rates[cls] = { se: ratio(truePositive, referenceTotal), ppv: ratio(truePositive, predictedTotal) };
  }
  return rates;
}

/** Binary tallies of matched beats: reference abnormal (class ≠ N) against predicted abnormal. */
export interface AbnormalTally {
  truePositive: number;
  falsePositive: number;
  falseNegative: number;
  trueNegative: number;
}

export function emptyAbnormalTally(): AbnormalTally {
  return { truePositive: 0, falsePositive: 0, falseNegative: 0, trueNegative: 0 };
}

/** Adds `other` into `into` (gross figures over records). */
export function addAbnormalTally(into: AbnormalTally, other: AbnormalTally): AbnormalTally {
  into.truePositive += other.truePositive;
  into.falsePositive += other.falsePositive;
  into.falseNegative += other.falseNegative;
  into.trueNegative += other.trueNegative;
  return into;
}

export function tallyAbnormal(tally: AbnormalTally, referenceAbnormal: boolean, predictedAbnormal: boolean): void {
  if (referenceAbnormal && predictedAbnormal) tally.truePositive += 1;
  else if (referenceAbnormal) tally.falseNegative += 1;
  else if (predictedAbnormal) tally.falsePositive += 1;
  else tally.trueNegative += 1;
}

export function abnormalRates(tally: AbnormalTally): AbnormalRates {
  const { truePositive: tp, falsePositive: fp, falseNegative: fn, trueNegative: tn } = tally;
  return { se: ratio(tp, tp + fn), ppv: ratio(tp, tp + fp), acc: ratio(tp + tn, tp + fp + fn + tn) };
}
