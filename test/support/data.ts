import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The small MIT-BIH excerpt shipped with the project: tests that use it run anywhere. */
export function excerptDir(): string {
  return path.join(repoRoot, 'data', 'excerpt');
}

/** The full MIT-BIH DS1 directory, from ECGFAAS_MITDB; tests that need it skip when it is not set. */
export function mitdbDir(): string | undefined {
  const dir = process.env.ECGFAAS_MITDB;
  return dir && existsSync(path.join(dir, '101.hea')) ? dir : undefined;
}

export function modelPath(name: 'paper' | 'default'): string {
  return path.join(repoRoot, 'models', `${name}.onnx`);
}

export { repoRoot };
