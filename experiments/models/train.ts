/**
 * Trains a final model on all of DS1 and writes the ONNX file (the same as
 * `ecgfaas model train --model M --data DIR --out FILE --seed N`).
 *
 *   npx tsx experiments/models/train.ts <mitdb dir> <paper|default|default2> <out.onnx> <seed>
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { trainModel, type ModelKind } from '../../functions/model/index.js';

const [dataDir = process.env.ECGFAAS_MITDB, model, out, seedText = '1'] = process.argv.slice(2);
if (!dataDir || (model !== 'paper' && model !== 'default' && model !== 'default2') || !out) {
  console.error('usage: train.ts <mitdb dir> <paper|default|default2> <out.onnx> <seed>');
  process.exit(2);
}
const t0 = Date.now();
const bytes = await trainModel({
  model: model as ModelKind, dataDir, seed: Number(seedText),
  log: (line) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`),
});
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, bytes);
console.log(`${out}: ${bytes.length} bytes, sha256 ${createHash('sha256').update(bytes).digest('hex')}`);
