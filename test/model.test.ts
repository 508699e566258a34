import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BeatClassifier, exportOnnx, mlpForward, readOnnxMetadata, roundParams, trainMlp, trainModel } from '../functions/model/index.js';
import type { MlpParams } from '../functions/model/mlp.js';
import { blobs, sha } from './support/synthetic.js';
import { excerptDir, mitdbDir, modelPath } from './support/data.js';


function train(seed: number, activation: 'tanh' | 'relu'): MlpParams {
  const { x, y } = blobs(600, 12, 42);
  return trainMlp(x, y, {
    hidden: 8, classes: 3, activation, epochs: 5, batchSize: 32, learningRate: 1e-2, l2: 1e-4, classWeights: [1, 2, 3], seed,
  });
}

const META: Array<[string, string]> = [
  ['name', 'test'], ['kind', 'multiclass'], ['classes', 'A,B,C'], ['featureSet', 'synthetic'], ['dim', '12'], ['seed', '5'],
];

describe('MLP trainer and ONNX export', () => {
  it.each(['tanh', 'relu'] as const)('onnxruntime-node output equals the TS forward pass within 1e-5 (%s)', async (activation) => {
    const params = train(5, activation);
    const bytes = exportOnnx(params, META);
    const classifier = await BeatClassifier.fromBytes(bytes);
    try {
      const { x, y } = blobs(200, 12, 99);
      const probs = await classifier.classify(x);
      const rounded = roundParams(params);
      let correct = 0;
      probs.forEach((p, i) => {
        const ref = mlpForward(rounded, x[i] as Float32Array);
        expect(p.length).toBe(3);
        for (let k = 0; k < 3; k++) expect(Math.abs((p[k] as number) - (ref[k] as number))).toBeLessThan(1e-5);
        const best = ref.indexOf(Math.max(...ref));
        if (best === y[i]) correct++;
      });
      expect(correct / x.length).toBeGreaterThan(0.8); // it learned something
      // Batch of one gives the same as a row of a batch.
      const single = await classifier.classify([x[3] as Float32Array]);
      for (let k = 0; k < 3; k++) expect(single[0]?.[k]).toBeCloseTo(probs[3]?.[k] as number, 6);
      expect(await classifier.classify([])).toEqual([]);
      await expect(classifier.classify([new Float32Array(5)])).rejects.toThrow(/length 5/);
    } finally {
      await classifier.close();
    }
  });

  it('same seed, same bytes; another seed, other bytes', () => {
    const a = exportOnnx(train(5, 'relu'), META);
    const b = exportOnnx(train(5, 'relu'), META);
    const c = exportOnnx(train(6, 'relu'), META);
    expect(sha(a)).toBe(sha(b));
    expect(sha(a)).not.toBe(sha(c));
  });

  it('metadata round trip', async () => {
    const bytes = exportOnnx(train(5, 'tanh'), META);
    expect(readOnnxMetadata(bytes)).toEqual({ metadata: Object.fromEntries(META), inputDim: 12 });
    const classifier = await BeatClassifier.fromBytes(bytes);
    expect(classifier.info).toMatchObject({ name: 'test', kind: 'multiclass', classes: ['A', 'B', 'C'], featureSet: 'synthetic', dim: 12, sha256: sha(bytes) });
    await classifier.close();
    await expect(BeatClassifier.fromBytes(exportOnnx(train(5, 'tanh'), [['name', 'x'], ['kind', 'other']]))).rejects.toThrow(/kind/);
  });
});

describe('trainModel on MIT-BIH', () => {
  const dir = existsSync(excerptDir()) ? excerptDir() : mitdbDir();
  it.skipIf(dir === undefined).each(['paper', 'default', 'mlp'] as const)('training %s twice with the same seed gives identical bytes', async (model) => {
    const records = ['119', '208'];
    const a = await trainModel({ model, dataDir: dir as string, records, seed: 3 });
    const b = await trainModel({ model, dataDir: dir as string, records, seed: 3 });
    expect(sha(a)).toBe(sha(b));
    const classifier = await BeatClassifier.fromBytes(a);
    expect(classifier.info).toMatchObject({
      name: model, kind: model === 'paper' ? 'binary' : 'multiclass',
      featureSet: { paper: 'paper-v1', default: 'default-v2', mlp: 'default-v1' }[model],
      dim: { paper: 360, default: 76, mlp: 52 }[model],
      classes: model === 'paper' ? ['N', 'abnormal'] : ['N', 'S', 'V', 'F', 'Q'],
    });
    expect(classifier.info.metadata ?? {}).toMatchObject({ seed: '3', trainingRecords: '119,208' });
    const [p] = await classifier.classify([new Float32Array(classifier.info.dim)]);
    expect(p?.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
    await classifier.close();
  });

  for (const model of ['paper', 'default'] as const) {
    it.skipIf(!existsSync(modelPath(model)))(`the committed models/${model}.onnx loads and carries its metadata`, async () => {
      const classifier = await BeatClassifier.load(modelPath(model));
      expect(classifier.info.name).toBe(model);
      expect(classifier.info.metadata?.trainingRecords?.split(',')).toHaveLength(22);
      await classifier.close();
    });
  }
});
