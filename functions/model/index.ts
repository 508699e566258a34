/**
 * Beat classifiers: ONNX MLPs run with onnxruntime-node, trained deterministically in TypeScript
 * (mlp.ts, train.ts) on features from functions/features. The runtime feeds raw features; the
 * standardisation is inside the graph. Model facts come from the file itself (metadata_props) and
 * its SHA-256.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { INPUT_NAME, OUTPUT_NAME, readOnnxMetadata } from './onnx.js';

export { trainModel, PRESETS, MODEL_KINDS, type ModelKind, type MlpModelKind, type Preset } from './train.js';
export { TREE_PRESET, type TreePreset } from './trees.js';
export { exportOnnx, readOnnxMetadata, OPSET } from './onnx.js';
export { trainMlp, mlpForward, roundParams, mulberry32, type MlpParams } from './mlp.js';

export interface ModelInfo {
  name: string;
  sha256: string;
  kind: 'binary' | 'multiclass';
  classes: string[];
  featureSet: string;
  dim: number;
  /** All metadata_props of the file (seed, training records, architecture, training settings). */
  metadata?: Record<string, string>;
}

export class BeatClassifier {
  readonly info: ModelInfo;
  readonly #session: ort.InferenceSession;

  private constructor(session: ort.InferenceSession, info: ModelInfo) {
    this.#session = session;
    this.info = info;
  }

  static async load(path: string): Promise<BeatClassifier> {
    return BeatClassifier.fromBytes(new Uint8Array(await readFile(path)));
  }

  static async fromBytes(bytes: Uint8Array): Promise<BeatClassifier> {
    const { metadata, inputDim } = readOnnxMetadata(bytes);
    const kind = metadata.kind;
    if (kind !== 'binary' && kind !== 'multiclass') throw new Error(`model metadata: kind must be binary or multiclass, got ${String(kind)}`);
    const dim = Number(metadata.dim);
    if (!Number.isInteger(dim) || dim <= 0 || (inputDim !== undefined && inputDim !== dim)) {
      throw new Error(`model metadata: dim ${metadata.dim} does not match the graph input (${inputDim})`);
    }
    const classes = (metadata.classes ?? '').split(',').filter((c) => c !== '');
    if (classes.length < 2 || (kind === 'binary' && classes.length !== 2)) throw new Error(`model metadata: bad classes "${metadata.classes}"`);
    if (!metadata.name || !metadata.featureSet) throw new Error('model metadata: name and featureSet are required');
    const info: ModelInfo = {
      name: metadata.name,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      kind,
      classes,
      featureSet: metadata.featureSet,
      dim,
      metadata,
    };
    // One thread, sequential: the model is tiny; threads only add latency and contention.
    const session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    return new BeatClassifier(session, info);
  }

  /** One onnxruntime-node run for the whole batch; per beat the class probabilities (binary: [pN, pAbnormal]). */
  async classify(batch: readonly Float32Array[]): Promise<Float32Array[]> {
    const n = batch.length;
    if (n === 0) return [];
    const { dim, classes } = this.info;
    const data = new Float32Array(n * dim);
    batch.forEach((row, i) => {
      if (row.length !== dim) throw new RangeError(`feature vector ${i} has length ${row.length}, model expects ${dim}`);
      data.set(row, i * dim);
    });
    const result = await this.#session.run({ [INPUT_NAME]: new ort.Tensor('float32', data, [n, dim]) });
    const out = result[OUTPUT_NAME];
    if (!out) throw new Error(`model produced no "${OUTPUT_NAME}"`);
    const probs = out.data as Float32Array;
    const K = classes.length;
    const rows: Float32Array[] = [];
    for (let i = 0; i < n; i++) rows.push(probs.slice(i * K, (i + 1) * K));
    return rows;
  }

  async close(): Promise<void> {
    await this.#session.release();
  }
}
