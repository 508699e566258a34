import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { recordBeats } from '../functions/features/dataset.js';
import { BeatClassifier, readOnnxMetadata } from '../functions/model/index.js';
import { exportGbdtOnnx } from '../functions/model/trees-onnx.js';
import { fitTrees, gbdtPredict, trainGbdt, treeMetadata, TREE_PRESET, type GbdtModel } from '../functions/model/trees.js';
import { blobs, sha } from './support/synthetic.js';
import { excerptDir, mitdbDir } from './support/data.js';


function train(seed: number): GbdtModel {
  const { x, y } = blobs(600, 12, 42);
  return trainGbdt(x, y, {
    classes: 3, rounds: 15, maxDepth: 3, learningRate: 0.2, lambda: 1, minChildWeight: 1, rowSample: 0.7, colSample: 0.6,
    maxBins: 32, classWeights: [1, 2, 3], nBias: -0.3, seed,
  });
}

const META: Array<[string, string]> = [
  ['name', 'test-gbdt'], ['kind', 'multiclass'], ['classes', 'A,B,C'], ['featureSet', 'synthetic'], ['dim', '12'], ['seed', '5'],
];

async function expectAgreement(model: GbdtModel, bytes: Uint8Array, x: Float32Array[]): Promise<void> {
  const classifier = await BeatClassifier.fromBytes(bytes);
  try {
    const probs = await classifier.classify(x);
    let worst = 0;
    probs.forEach((p, i) => {
      const ref = gbdtPredict(model, x[i] as Float32Array);
      expect(p.length).toBe(model.classes);
      for (let k = 0; k < model.classes; k++) worst = Math.max(worst, Math.abs((p[k] as number) - (ref[k] as number)));
    });
    expect(worst).toBeLessThan(1e-5);
    const single = await classifier.classify([x[1] as Float32Array]);
    for (let k = 0; k < model.classes; k++) expect(single[0]?.[k]).toBeCloseTo(probs[1]?.[k] as number, 6);
  } finally {
    await classifier.close();
  }
}

describe('GBDT trainer and TreeEnsembleClassifier export', () => {
  it('BeatClassifier loads it unchanged; onnxruntime-node equals the TS predictor within 1e-5', async () => {
    const model = train(5);
    const bytes = exportGbdtOnnx(model, META);
    expect(readOnnxMetadata(bytes)).toEqual({ metadata: Object.fromEntries(META), inputDim: 12 });
    const { x, y } = blobs(300, 12, 99);
    await expectAgreement(model, bytes, x);
    let correct = 0;
    x.forEach((row, i) => {
      const p = Array.from(gbdtPredict(model, row));
      if (p.indexOf(Math.max(...p)) === y[i]) correct++;
    });
    expect(correct / x.length).toBeGreaterThan(0.8); // it learned something
    const classifier = await BeatClassifier.fromBytes(bytes);
    expect(classifier.info).toMatchObject({ name: 'test-gbdt', kind: 'multiclass', classes: ['A', 'B', 'C'], dim: 12, sha256: sha(bytes) });
    await classifier.close();
  });

  it('same seed, same bytes; another seed, other bytes', () => {
    expect(sha(exportGbdtOnnx(train(5), META))).toBe(sha(exportGbdtOnnx(train(5), META)));
    expect(sha(exportGbdtOnnx(train(5), META))).not.toBe(sha(exportGbdtOnnx(train(6), META)));
  });

  const dir = existsSync(excerptDir()) ? excerptDir() : mitdbDir();
  it.skipIf(dir === undefined)('on real features of the preset: deterministic bytes and ONNX = TS within 1e-5', async () => {
    const a = await recordBeats(dir as string, '119', TREE_PRESET.featureSet);
    const b = await recordBeats(dir as string, '208', TREE_PRESET.featureSet);
    const x = [...a.features, ...b.features];
    const y = Uint8Array.from([...a.classes, ...b.classes]);
    const preset = { ...TREE_PRESET, rounds: 20 };
    const m1 = fitTrees(preset, x, y, 3);
    const bytes = exportGbdtOnnx(m1, treeMetadata(preset, m1, 3, ['119', '208']));
    expect(sha(bytes)).toBe(sha(exportGbdtOnnx(fitTrees(preset, x, y, 3), treeMetadata(preset, m1, 3, ['119', '208']))));
    await expectAgreement(m1, bytes, x);
    const classifier = await BeatClassifier.fromBytes(bytes);
    expect(classifier.info).toMatchObject({ name: 'default', kind: 'multiclass', featureSet: 'default-v2', dim: 76, classes: ['N', 'S', 'V', 'F', 'Q'] });
    await classifier.close();
  });
});
