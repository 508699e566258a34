/**
 * AAMI EC57 beat classes and the mapping from MIT-BIH beat labels (as in the data README):
 * N = N L R e j; S = A a J S; V = V E; F = F; Q = / f Q.
 */
import { CODE_OF_MNEMONIC, mnemonicOf } from '../wfdb/annotations.js';

export const AAMI_CLASSES = ['N', 'S', 'V', 'F', 'Q'] as const;
export type AamiClass = (typeof AAMI_CLASSES)[number];

const AAMI_OF_LABEL: Readonly<Record<string, AamiClass>> = {
  N: 'N', L: 'N', R: 'N', e: 'N', j: 'N',
  A: 'S', a: 'S', J: 'S', S: 'S',
  V: 'V', E: 'V',
  F: 'F',
  '/': 'Q', f: 'Q', Q: 'Q',
};

/** The AAMI class of an MIT annotation code, or undefined for non-beats (and B, ?, n, r, which EC57 leaves out). */
export function aamiClassOfCode(code: number): AamiClass | undefined {
  return AAMI_OF_LABEL[mnemonicOf(code)];
}

export function aamiClassOfLabel(label: string): AamiClass | undefined {
  return AAMI_OF_LABEL[label];
}

/** The MIT code our annotator writes for each AAMI class (N, A for S, V, F, Q). */
export const MIT_CODE_OF_AAMI: Readonly<Record<AamiClass, number>> = {
  N: CODE_OF_MNEMONIC.N as number,
  S: CODE_OF_MNEMONIC.A as number,
  V: CODE_OF_MNEMONIC.V as number,
  F: CODE_OF_MNEMONIC.F as number,
  Q: CODE_OF_MNEMONIC.Q as number,
};

export function isAbnormal(cls: AamiClass): boolean {
  return cls !== 'N';
}
