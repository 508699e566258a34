/**
 * DS1 beat features for the tree experiment, cached under the OS temp dir. The cache key includes a
 * hash of every file in functions/features, functions/signal and functions/wfdb, so a change to the
 * feature code (being improved in parallel) never serves stale features.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { recordBeats } from '../../../functions/features/dataset.js';

export interface Beats {
  record: string;
  classes: Uint8Array;
  features: Float32Array[];
}

async function codeHash(): Promise<string> {
  const root = fileURLToPath(new URL('../../../functions/', import.meta.url));
  const hash = createHash('sha256');
  for (const dir of ['features', 'signal', 'wfdb', 'aami']) {
    const files = (await readdir(join(root, dir))).filter((f) => f.endsWith('.ts')).sort();
    for (const f of files) hash.update(`${dir}/${f}\0`).update(await readFile(join(root, dir, f)));
  }
  return hash.digest('hex').slice(0, 16);
}

export async function loadBeats(dataDir: string, records: readonly string[], featureSet: string): Promise<Beats[]> {
  const dir = join(tmpdir(), 'ecgfaas-trees-cache', `${featureSet}-${await codeHash()}`);
  await mkdir(dir, { recursive: true });
  const out: Beats[] = [];
  for (const record of records) {
    const file = join(dir, `${record}.bin`);
    if (existsSync(file)) {
      const buf = await readFile(file);
      const head = new Uint32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + 8));
      const n = head[0] as number;
      const dim = head[1] as number;
      const classes = new Uint8Array(buf.buffer.slice(buf.byteOffset + 8, buf.byteOffset + 8 + n));
      const pad = (8 + n + 3) & ~3;
      const flat = new Float32Array(buf.buffer.slice(buf.byteOffset + pad, buf.byteOffset + pad + 4 * n * dim));
      out.push({ record, classes, features: Array.from({ length: n }, (_, i) => flat.slice(i * dim, (i + 1) * dim)) });
      continue;
    }
    const rb = await recordBeats(dataDir, record, featureSet);
    const n = rb.features.length;
    const dim = (rb.features[0] as Float32Array).length;
    const pad = (8 + n + 3) & ~3;
    const buf = new Uint8Array(pad + 4 * n * dim);
    new DataView(buf.buffer).setUint32(0, n, true);
    new DataView(buf.buffer).setUint32(4, dim, true);
    buf.set(rb.classes, 8);
    const flat = new Float32Array(buf.buffer, pad, n * dim);
    rb.features.forEach((f, i) => flat.set(f, i * dim));
    await writeFile(file, buf);
    out.push({ record, classes: rb.classes, features: rb.features });
  }
  return out;
}
