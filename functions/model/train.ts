/**
 * Model presets and training on MIT-BIH records (DS1 only; patient-wise CV in experiments/models/cv.ts).
 * Everything here is deterministic for a given seed (see mlp.ts for why the trainer is hand-written).
 */
import { AAMI_CLASSES } from '../aami/index.js';
import { DS1_RECORDS } from '../datasets.js';
import { type RecordBeats } from '../features/dataset.js';
import { recordBeatsFor } from '../features/dataset2.js';
import { mulberry32, trainMlp, type Activation, type MlpParams } from './mlp.js';
import { exportOnnx } from './onnx.js';

export type ModelKind = 'paper' | 'default' | 'default2';

export interface Preset {
  model: ModelKind;
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
  /**
   * Optional (absent = 1 / 0, the `paper` and `default` behaviour): number of MLPs trained with
   * different seeds and merged into ONE MLP whose logits are the members' mean logits (hidden
   * layers concatenated, output weights / members: exact, deterministic, a single ONNX graph);
   * and a bias per class added to the output logits (the decision rule, baked into the graph's
   * last Gemm bias; e.g. negative on N = more beats called abnormal), tuned by DS1 LORO CV.
   */
  ensemble?: number;
  logitBias?: number[];
}

export const PRESETS: Readonly<Record<ModelKind, Preset>> = {
  paper: {
    model: 'paper', featureSet: 'paper-v1', kind: 'binary', classes: ['N', 'abnormal'],
    hidden: 10, activation: 'tanh', epochs: 20, batchSize: 64, learningRate: 1e-3, l2: 1e-4,
    weightPower: 0.5, weightCap: 20, jitterSamples: 0, jitterCopies: 0,
  },
  default: {
    model: 'default', featureSet: 'default-v1', kind: 'multiclass', classes: [...AAMI_CLASSES],
    hidden: 32, activation: 'relu', epochs: 10, batchSize: 64, learningRate: 1e-3, l2: 1e-4,
    weightPower: 1, weightCap: 50, jitterSamples: 0, jitterCopies: 0,
  },
  /**
   * Two leads (primary + V1/other): 'default-v2' features (functions/features/default2.ts); 3 MLPs
   * (seeds) merged by mean logits; logit biases N -1.5, S +1, V +1, F -2, Q -5 (chosen on DS1 LORO
   * CV, seeds 1 and 2, so that abnormal Se >= 90 %, V Se >= 90 % and S Se >= 75 %).
   */
  default2: {
    model: 'default2', featureSet: 'default-v2', kind: 'multiclass', classes: [...AAMI_CLASSES],
    hidden: 32, activation: 'relu', epochs: 10, batchSize: 64, learningRate: 1e-3, l2: 1e-4,
    weightPower: 1, weightCap: 50, jitterSamples: 0, jitterCopies: 0, ensemble: 3, logitBias: [-1.5, 1, 1, -2, -5],
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
    out.push(await recordBeatsFor(dataDir, record, preset.featureSet));
    for (let c = 0; c < preset.jitterCopies; c++) {
      const random = mulberry32(subSeed(seed, 1000 + c * 100 + records.indexOf(record)));
      out.push(await recordBeatsFor(dataDir, record, preset.featureSet, { max: preset.jitterSamples, random }));
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
  const members = Math.max(1, Math.round(preset.ensemble ?? 1));
  const nets: MlpParams[] = [];
  for (let m = 0; m < members; m++) {
    nets.push(trainMlp(x, y, {
      hidden: preset.hidden, classes: preset.classes.length, activation: preset.activation, epochs: preset.epochs,
      batchSize: preset.batchSize, learningRate: preset.learningRate, l2: preset.l2, classWeights: weights,
      seed: m === 0 ? subSeed(seed, 0) : subSeed(seed, 200 + m), ...(log ? { log } : {}),
    }));
  }
  const merged = members === 1 ? (nets[0] as MlpParams) : mergeMeanLogits(nets);
  const bias = preset.logitBias ?? [];
  if (bias.some((b) => b !== 0)) {
    if (bias.length !== merged.classes) throw new RangeError(`logitBias needs ${merged.classes} values`);
    return { ...merged, b2: merged.b2.map((v, k) => v + (bias[k] as number)) };
  }
  return merged;
}

/**
 * One MLP computing the mean of the members' logits (so softmax of it is their normalised geometric
 * mean of probabilities). All members share the standardisation (it depends only on the data).
 */
export function mergeMeanLogits(nets: readonly MlpParams[]): MlpParams {
  const first = nets[0] as MlpParams;
  const { dim, classes } = first;
  const M = nets.length;
  const hidden = nets.reduce((a, n) => a + n.hidden, 0);
  const w1 = new Float64Array(hidden * dim);
  const b1 = new Float64Array(hidden);
  const w2 = new Float64Array(classes * hidden);
  const b2 = new Float64Array(classes);
  let h0 = 0;
  for (const n of nets) {
    if (n.dim !== dim || n.classes !== classes || n.activation !== first.activation) throw new Error('ensemble members differ in shape');
    w1.set(n.w1, h0 * dim);
    b1.set(n.b1, h0);
    for (let c = 0; c < classes; c++) {
      for (let h = 0; h < n.hidden; h++) w2[c * hidden + h0 + h] = (n.w2[c * n.hidden + h] as number) / M;
      b2[c] = (b2[c] as number) + (n.b2[c] as number) / M;
    }
    h0 += n.hidden;
  }
  return { dim, hidden, classes, activation: first.activation, mean: first.mean, std: first.std, w1, b1, w2, b2 };
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
      ...((preset.ensemble ?? 1) > 1 ? { ensemble: preset.ensemble, merge: 'mean logits' } : {}),
      ...((preset.logitBias ?? []).some((b) => b !== 0) ? { logitBias: preset.logitBias } : {}),
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
  const preset = PRESETS[opts.model];
  if (!preset) throw new RangeError(`unknown model "${opts.model}" (${Object.keys(PRESETS).join(', ')})`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new RangeError('seed must be an integer in [0, 2^32)');
  const records = opts.records ?? DS1_RECORDS;
  const beats = await trainingBeats(preset, opts.dataDir, records, opts.seed);
  const params = fitPreset(preset, beats, opts.seed, opts.log);
  return exportOnnx(params, modelMetadata(preset, params, opts.seed, records));
}
