/**
 * Model presets and training on MIT-BIH records (DS1 only; patient-wise CV in experiments/models/cv.ts
 * for the MLPs and experiments/models/trees/cv.ts for the trees). Everything here is deterministic for a
 * given seed (see mlp.ts and trees.ts for why the trainers are hand-written).
 *
 *   paper    the reference paper's ANN: MLP 360-10-2 (tanh) on 1 s of raw samples, binary
 *   default  gradient-boosted trees on the default-v1 features, AAMI N/S/V/F/Q (chosen by LORO CV)
 *   mlp      the MLP 52-32-5 (ReLU) on the same features: the previous default, kept for comparison
 */
import { AAMI_CLASSES } from '../aami/index.js';
import { DS1_RECORDS } from '../datasets.js';
import { recordBeats, type RecordBeats } from '../features/dataset.js';
import { mulberry32, trainMlp, type Activation, type MlpParams } from './mlp.js';
import { exportOnnx } from './onnx.js';
import { exportGbdtOnnx } from './trees-onnx.js';
import { fitTrees, treeMetadata, TREE_PRESET } from './trees.js';

export type ModelKind = 'paper' | 'default' | 'mlp';
/** The kinds trained as MLPs (PRESETS); `default` is trained as trees (TREE_PRESET). */
export type MlpModelKind = Exclude<ModelKind, 'default'>;
export const MODEL_KINDS: readonly ModelKind[] = ['paper', 'default', 'mlp'];

export interface Preset {
  model: MlpModelKind;
  featureSet: string;
  kind: 'binary' | 'multiclass';
  classes: string[];
  hidden: number;
  activation: Activation;
  epochs: number;
  batchSize: number;
  learningRate: number;
  l2: number;
  /** Class weight = min(cap, (n / (K · n_c)) ^ power). */
  weightPower: number;
  weightCap: number;
  /** Extra copies of each training record with the beat positions jittered by up to ± this many samples (0: none). */
  jitterSamples: number;
  jitterCopies: number;
}

export const PRESETS: Readonly<Record<MlpModelKind, Preset>> = {
  paper: {
    model: 'paper', featureSet: 'paper-v1', kind: 'binary', classes: ['N', 'abnormal'],
    hidden: 10, activation: 'tanh', epochs: 20, batchSize: 64, learningRate: 1e-3, l2: 1e-4,
    weightPower: 0.5, weightCap: 20, jitterSamples: 0, jitterCopies: 0,
  },
  mlp: {
    model: 'mlp', featureSet: 'default-v1', kind: 'multiclass', classes: [...AAMI_CLASSES],
    hidden: 32, activation: 'relu', epochs: 10, batchSize: 64, learningRate: 1e-3, l2: 1e-4,
    weightPower: 1, weightCap: 50, jitterSamples: 0, jitterCopies: 0,
  },
};

/** Labels of a record's beats for a preset (binary: 0 = N, 1 = any other AAMI class). */
export function labelsFor(preset: Preset, beats: RecordBeats): Uint8Array {
  return preset.kind === 'binary' ? beats.classes.map((c) => (c === 0 ? 0 : 1)) : beats.classes.slice();
}

export function classWeights(preset: Preset, labels: ArrayLike<number>): number[] {
  const K = preset.classes.length;
  const counts = new Array<number>(K).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i] as number]! += 1;
  return counts.map((c) => (c === 0 ? 1 : Math.min(preset.weightCap, (labels.length / (K * c)) ** preset.weightPower)));
}

/** Seeds derived from the run seed, one per purpose, so changing one use does not shift another. */
export function subSeed(seed: number, purpose: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(purpose + 1, 0x85ebca6b)) >>> 0;
}

/** Features of the training records (with the preset's jittered copies), in record order. */
export async function trainingBeats(preset: Preset, dataDir: string, records: readonly string[], seed: number): Promise<RecordBeats[]> {
  const out: RecordBeats[] = [];
  for (const record of records) {
    out.push(await recordBeats(dataDir, record, preset.featureSet));
    for (let c = 0; c < preset.jitterCopies; c++) {
      const random = mulberry32(subSeed(seed, 1000 + c * 100 + records.indexOf(record)));
      out.push(await recordBeats(dataDir, record, preset.featureSet, { max: preset.jitterSamples, random }));
    }
  }
  return out;
}

export function fitPreset(preset: Preset, beats: readonly RecordBeats[], seed: number, log?: (line: string) => void): MlpParams {
  const x: Float32Array[] = [];
  const ys: number[] = [];
  for (const rb of beats) {
    const labels = labelsFor(preset, rb);
    for (let i = 0; i < rb.features.length; i++) {
      x.push(rb.features[i] as Float32Array);
      ys.push(labels[i] as number);
    }
  }
  const y = Uint8Array.from(ys);
  const weights = classWeights(preset, y);
  log?.(`training ${preset.model}: ${x.length} beats, class weights ${weights.map((w) => w.toFixed(2)).join(' ')}`);
  return trainMlp(x, y, {
    hidden: preset.hidden, classes: preset.classes.length, activation: preset.activation, epochs: preset.epochs,
    batchSize: preset.batchSize, learningRate: preset.learningRate, l2: preset.l2, classWeights: weights,
    seed: subSeed(seed, 0), ...(log ? { log } : {}),
  });
}

export function modelMetadata(preset: Preset, params: MlpParams, seed: number, records: readonly string[]): Array<[string, string]> {
  return [
    ['name', preset.model],
    ['kind', preset.kind],
    ['classes', preset.classes.join(',')],
    ['featureSet', preset.featureSet],
    ['dim', String(params.dim)],
    ['seed', String(seed)],
    ['trainingRecords', records.join(',')],
    ['architecture', `mlp ${params.dim}-${params.hidden}-${params.classes} ${params.activation} softmax`],
    ['training', JSON.stringify({
      epochs: preset.epochs, batchSize: preset.batchSize, learningRate: preset.learningRate, l2: preset.l2,
      weightPower: preset.weightPower, weightCap: preset.weightCap, jitterSamples: preset.jitterSamples, jitterCopies: preset.jitterCopies,
      optimizer: 'adam', lrSchedule: 'linear to 10%', labels: 'MIT-BIH reference annotations, AAMI EC57 classes',
    })],
  ];
}

export async function trainModel(opts: {
  model: ModelKind;
  dataDir: string;
  records?: readonly string[];
  seed: number;
  log?: (line: string) => void;
}): Promise<Uint8Array> {
  if (!MODEL_KINDS.includes(opts.model)) throw new RangeError(`unknown model "${opts.model}" (${MODEL_KINDS.join(', ')})`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new RangeError('seed must be an integer in [0, 2^32)');
  const records = opts.records ?? DS1_RECORDS;
  if (opts.model === 'default') {
    const beats: RecordBeats[] = [];
    for (const record of records) beats.push(await recordBeats(opts.dataDir, record, TREE_PRESET.featureSet));
    const x = beats.flatMap((b) => b.features);
    const y = Uint8Array.from(beats.flatMap((b) => Array.from(b.classes)));
    const model = fitTrees(TREE_PRESET, x, y, opts.seed, opts.log);
    return exportGbdtOnnx(model, treeMetadata(TREE_PRESET, model, opts.seed, records));
  }
  const preset = PRESETS[opts.model];
  const beats = await trainingBeats(preset, opts.dataDir, records, opts.seed);
  const params = fitPreset(preset, beats, opts.seed, opts.log);
  return exportOnnx(params, modelMetadata(preset, params, opts.seed, records));
}
