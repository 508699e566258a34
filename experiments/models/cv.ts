/**
 * Patient-wise cross-validation on DS1 (records are patients; 201 and 202 are the same subject but
 * 202 is in DS2, which is never read). Grouped k-fold by record: `folds` = 22 is leave-one-record-out;
 * otherwise the records are shuffled with the seed and dealt round-robin into the folds.
 * Each fold trains the preset on the other records' reference beats, exports ONNX, and classifies
 * the held-out record(s) with onnxruntime-node. Figures are gross over all held-out beats.
 *
 *   npx tsx experiments/models/cv.ts <mitdb dir> <paper|mlp> <folds> <seed> [--jitter S] [--set key=value ...]
 *
 * --jitter S: held-out beats are given to the feature stream displaced by up to ±S samples (seeded),
 *             to simulate a QRS detector's fiducial jitter (training stays on the reference positions).
 * --keep LIST: feature-selection experiment: zero all features but the listed indices/ranges (e.g. 0-10,39-50)
 *             in training and held-out data (equivalent to removing them: a zero column is standardised to 0).
 * --set k=v:  override a preset field for an experiment (e.g. --set hidden=16); the final models use PRESETS.
 */
import { AAMI_CLASSES } from '../../functions/aami/index.js';
import { DS1_RECORDS } from '../../functions/datasets.js';
import { recordBeats, type RecordBeats } from '../../functions/features/dataset.js';
import { BeatClassifier } from '../../functions/model/index.js';
import { mulberry32 } from '../../functions/model/mlp.js';
import { exportOnnx } from '../../functions/model/onnx.js';
import { fitPreset, modelMetadata, PRESETS, subSeed, trainingBeats, type MlpModelKind, type Preset } from '../../functions/model/train.js';
import { applySet, foldAssignment, printConfusionReport, tallyRecord } from './cv-common.js';

function usage(): never {
  console.error('usage: cv.ts <mitdb dir> <paper|mlp> <folds 2..22> <seed> [--jitter S] [--set key=value ...]');
  process.exit(2);
}

const args = process.argv.slice(2);
const dataDir = args[0] ?? process.env.ECGFAAS_MITDB;
const model = args[1] as MlpModelKind;
const folds = Number(args[2] ?? 22);
const seed = Number(args[3] ?? 1);
if (!dataDir || !(model in PRESETS) || !(folds >= 2 && folds <= DS1_RECORDS.length) || !Number.isInteger(seed)) usage();
let jitter = 0;
let keep: Set<number> | undefined;
const preset: Preset = { ...PRESETS[model] };
for (let i = 4; i < args.length; i++) {
  if (args[i] === '--jitter') jitter = Number(args[++i]);
  else if (args[i] === '--keep') {
    keep = new Set((args[++i] ?? '').split(',').flatMap((part) => {
      const [a, b] = part.split('-').map(Number);
      return Array.from({ length: (b ?? (a as number)) - (a as number) + 1 }, (_, j) => (a as number) + j);
    }));
  } else if (args[i] === '--set') {
    if (!applySet(preset, args[++i] ?? '')) usage();
  } else usage();
}

const t0 = Date.now();
const log = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`);

const { records, foldOf } = foldAssignment(folds, seed);

log(`preset ${JSON.stringify(preset)}; folds ${folds}; seed ${seed}; test jitter ±${jitter}`);
const train = new Map<string, RecordBeats[]>();
const test = new Map<string, RecordBeats>();
for (const record of records) {
  const beats = await trainingBeats(preset, dataDir, [record], seed);
  train.set(record, beats);
  test.set(record, jitter > 0
    ? await recordBeats(dataDir, record, preset.featureSet, { max: jitter, random: mulberry32(subSeed(seed, 5000 + records.indexOf(record))) })
    : (beats[0] as RecordBeats));
}
if (keep) {
  const mask = (rb: RecordBeats): RecordBeats => ({ ...rb, features: rb.features.map((f) => f.map((v, j) => (keep!.has(j) ? v : 0))) });
  for (const [r, list] of train) train.set(r, list.map(mask));
  for (const [r, rb] of test) test.set(r, mask(rb));
}
log(`features extracted${keep ? `; keeping ${keep.size} features` : ''}`);

const K = AAMI_CLASSES.length;
const P = preset.classes.length;
const confusion = Array.from({ length: K }, () => new Array<number>(P).fill(0));
const perRecord: string[] = [];
for (let f = 0; f < folds; f++) {
  const held = records.filter((r) => foldOf.get(r) === f);
  const trainRecords = records.filter((r) => foldOf.get(r) !== f);
  const params = fitPreset(preset, trainRecords.flatMap((r) => train.get(r) ?? []), subSeed(seed, 100 + f));
  const classifier = await BeatClassifier.fromBytes(exportOnnx(params, modelMetadata(preset, params, seed, trainRecords)));
  for (const record of held) {
    const rb = test.get(record) as RecordBeats;
    const probs: Float32Array[] = [];
    for (let i = 0; i < rb.features.length; i += 512) probs.push(...(await classifier.classify(rb.features.slice(i, i + 512))));
    perRecord.push(tallyRecord(record, rb.classes, probs, confusion, preset.classes));
  }
  await classifier.close();
  log(`fold ${f + 1}/${folds} (held out ${held.join(' ')}) done`);
}

console.log(`\n=== ${model} (${preset.featureSet}), ${folds}-fold patient-wise CV on DS1, seed ${seed}${jitter ? `, test jitter ±${jitter} samples` : ''} ===`);
console.log('per record:\n  ' + perRecord.join('\n  '));
printConfusionReport(confusion, preset.classes, preset.kind === 'multiclass');
log('done');
