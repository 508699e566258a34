/**
 * Patient-wise cross-validation on DS1 of the gradient-boosted trees (functions/model/trees.ts),
 * same protocol and output format as experiments/models/cv.ts: grouped k-fold by record (22 = leave-
 * one-record-out), each fold trains on the other records' reference beats, exports ONNX
 * (TreeEnsembleClassifier) and classifies the held-out record with onnxruntime-node via
 * BeatClassifier (argmax). Figures are gross over all held-out beats. DS2 is never read.
 *
 *   npx tsx experiments/models/trees/cv.ts <mitdb dir> <folds> <seed> [--set key=value ...]
 *
 * --set k=v: override a TREE_PRESET field (e.g. --set maxDepth=5 --set nBias=-1).
 * After the main table, a sweep line per pair of offsets (δN, δS) shows what baking nBias += δN and
 * sBias += δS into the model would give: argmax over (log p_k + δN·[k = N] + δS·[k = S]) of the
 * same folds' held-out probabilities.
 */
import { AAMI_CLASSES } from '../../../functions/aami/index.js';
import { DS1_RECORDS } from '../../../functions/datasets.js';
import { BeatClassifier } from '../../../functions/model/index.js';
import { exportGbdtOnnx } from '../../../functions/model/trees-onnx.js';
import { fitTrees, gbdtNodeCount, treeMetadata, TREE_PRESET, type TreePreset } from '../../../functions/model/trees.js';
import { loadBeats } from './data.js';
import { applySet, foldAssignment, printConfusionReport, tallyRecord } from '../cv-common.js';
import { subSeed } from '../../../functions/model/train.js';

function usage(): never {
  console.error('usage: cv.ts <mitdb dir> <folds 2..22> <seed> [--set key=value ...]');
  process.exit(2);
}

const args = process.argv.slice(2);
const dataDir = args[0] ?? process.env.ECGFAAS_MITDB;
const folds = Number(args[1] ?? 22);
const seed = Number(args[2] ?? 1);
if (!dataDir || !(folds >= 2 && folds <= DS1_RECORDS.length) || !Number.isInteger(seed)) usage();
const preset: TreePreset = { ...TREE_PRESET };
for (let i = 3; i < args.length; i++) {
  if (args[i] === '--set') {
    if (!applySet(preset, args[++i] ?? '')) usage();
  } else usage();
}

const t0 = Date.now();
const log = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`);

const { records, foldOf } = foldAssignment(folds, seed);

log(`preset ${JSON.stringify(preset)}; folds ${folds}; seed ${seed}`);
const data = new Map((await loadBeats(dataDir, records, preset.featureSet)).map((b) => [b.record, b]));
log('features loaded');

const K = AAMI_CLASSES.length;
const P = preset.classes.length;
const confusion = Array.from({ length: K }, () => new Array<number>(P).fill(0));
const perRecord: string[] = [];
const held: Array<{ t: number; logp: Float64Array }> = [];
for (let f = 0; f < folds; f++) {
  const heldOut = records.filter((r) => foldOf.get(r) === f);
  const trainRecords = records.filter((r) => foldOf.get(r) !== f);
  const x: Float32Array[] = [];
  const ys: number[] = [];
  for (const r of trainRecords) {
    const b = data.get(r)!;
    b.features.forEach((v, i) => { x.push(v); ys.push(b.classes[i] as number); });
  }
  const model = fitTrees(preset, x, Uint8Array.from(ys), subSeed(seed, 100 + f));
  const classifier = await BeatClassifier.fromBytes(exportGbdtOnnx(model, treeMetadata(preset, model, seed, trainRecords)));
  for (const record of heldOut) {
    const rb = data.get(record)!;
    const probs: Float32Array[] = [];
    for (let i = 0; i < rb.features.length; i += 512) probs.push(...(await classifier.classify(rb.features.slice(i, i + 512))));
    perRecord.push(tallyRecord(record, rb.classes, probs, confusion, preset.classes, (t, p) => {
      held.push({ t, logp: Float64Array.from(p, (v) => Math.log(Math.max(v, 1e-30))) });
    }));
  }
  await classifier.close();
  log(`fold ${f + 1}/${folds} (held out ${heldOut.join(' ')}) done; ${model.trees.length} trees, ${gbdtNodeCount(model)} nodes`);
}

const pct = (a: number, b: number) => (b === 0 ? '   n/a' : ((100 * a) / b).toFixed(2).padStart(6));
console.log(`\n=== ${preset.name} (${preset.featureSet}), ${folds}-fold patient-wise CV on DS1, seed ${seed} ===`);
console.log('per record:\n  ' + perRecord.join('\n  '));
printConfusionReport(confusion, preset.classes, true);

console.log('offset sweep (same folds; δN added to log p_N and δS to log p_S before argmax):');
for (const dS of [0, 0.25, 0.5, 0.75, 1]) for (const d of [-4, -3.5, -3, -2.75, -2.5, -2.25, -2, -1.75, -1.5, -1.25, -1, -0.75, -0.5, 0, 0.5, 1]) {
  const c = Array.from({ length: K }, () => new Array<number>(P).fill(0));
  for (const { t, logp } of held) {
    let best = 0;
    let bv = (logp[0] as number) + d;
    for (let k = 1; k < P; k++) {
      const v = (logp[k] as number) + (k === 1 ? dS : 0);
      if (v > bv) { bv = v; best = k; }
    }
    (c[t] as number[])[best]! += 1;
  }
  let at = 0; let ap = 0; let ah = 0;
  c.forEach((row, t) => row.forEach((v, p) => { if (t) at += v; if (p) ap += v; if (t && p) ah += v; }));
  const se = (k: number) => pct((c[k] as number[])[k] as number, (c[k] as number[]).reduce((a, b) => a + b, 0));
  const pp = (k: number) => pct((c[k] as number[])[k] as number, c.reduce((a, row) => a + (row[k] as number), 0));
  console.log(`  δN ${d.toFixed(2).padStart(5)} δS ${dS.toFixed(2)}: abnormal Se ${pct(ah, at)} % +P ${pct(ah, ap)} %; S Se ${se(1)} % +P ${pp(1)} %; V Se ${se(2)} % +P ${pp(2)} %; F Se ${se(3)} %`);
}
log('done');
