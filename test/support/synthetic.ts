import { createHash } from 'node:crypto';
import { mulberry32 } from '../../functions/model/mlp.js';

export const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** A small synthetic 3-class problem (Gaussian-ish blobs), deterministic for a seed. */
export function blobs(n: number, dim: number, seed: number): { x: Float32Array[]; y: Uint8Array } {
  const rand = mulberry32(seed);
  const x: Float32Array[] = [];
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    y[i] = c;
    x.push(Float32Array.from({ length: dim }, (_, j) => 5 + 3 * (j % 3 === c ? 1 : 0) + 2 * (rand() - 0.5) * (1 + j)));
  }
  return { x, y };
}
