/**
 * Train the tree model on DS1 (all 22 records, or a list) and write the ONNX file.
 *
 *   npx tsx experiments/models/trees/train.ts <mitdb dir> <out.onnx> <seed> [--set key=value ...]
 */
import { writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { DS1_RECORDS } from '../../../functions/datasets.js';
import { BeatClassifier } from '../../../functions/model/index.js';
import { exportGbdtOnnx } from '../../../functions/model/trees-onnx.js';
import { fitTrees, gbdtNodeCount, gbdtPredict, treeMetadata, TREE_PRESET, type TreePreset } from '../../../functions/model/trees.js';
import { loadBeats } from './data.js';

const [dataDir, out, seedArg, ...rest] = process.argv.slice(2);
const seed = Number(seedArg);
if (!dataDir || !out || !Number.isInteger(seed)) {
  console.error('usage: train.ts <mitdb dir> <out.onnx> <seed> [--set key=value ...]');
  process.exit(2);
}
const preset: TreePreset = { ...TREE_PRESET };
for (let i = 0; i < rest.length; i++) {
  const [key, value] = rest[i] === '--set' ? (rest[++i] ?? '').split('=') : [];
  if (!key || value === undefined || !(key in preset)) throw new Error(`bad argument ${rest[i]}`);
  const current = (preset as unknown as Record<string, unknown>)[key];
  (preset as unknown as Record<string, unknown>)[key] = typeof current === 'number' ? Number(value) : value;
}
const records = [...DS1_RECORDS];
const beats = await loadBeats(dataDir, records, preset.featureSet);
const x = beats.flatMap((b) => b.features);
const y = Uint8Array.from(beats.flatMap((b) => Array.from(b.classes)));
const model = fitTrees(preset, x, y, seed, console.log);
const bytes = exportGbdtOnnx(model, treeMetadata(preset, model, seed, records));
await writeFile(out, bytes);
console.log(`${out}: ${bytes.length} bytes, ${model.trees.length} trees, ${gbdtNodeCount(model)} nodes, sha256 ${createHash('sha256').update(bytes).digest('hex')}`);

// Check: onnxruntime-node (BeatClassifier, as the function runs it) against the TS predictor on every training beat.
const classifier = await BeatClassifier.fromBytes(bytes);
let worst = 0;
for (let i = 0; i < x.length; i += 512) {
  const probs = await classifier.classify(x.slice(i, i + 512));
  probs.forEach((p, j) => {
    const ref = gbdtPredict(model, x[i + j] as Float32Array);
    for (let k = 0; k < p.length; k++) worst = Math.max(worst, Math.abs((p[k] as number) - (ref[k] as number)));
  });
}
await classifier.close();
console.log(`ONNX vs TS predictor on ${x.length} beats: max |Δp| ${worst.toExponential(2)}`);
