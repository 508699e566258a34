/** The `default2` preset: mean-logit ensembles merged into one MLP, N-logit bias, two-lead training. */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BeatClassifier, exportOnnx, mlpForward, mulberry32, roundParams, trainMlp, trainModel } from '../functions/model/index.js';
import type { MlpParams } from '../functions/model/mlp.js';
import { mergeMeanLogits, PRESETS } from '../functions/model/train.js';
import { excerptDir, mitdbDir } from './support/data.js';

function blobs(n: number, dim: number, seed: number): { x: Float32Array[]; y: Uint8Array } {
  const rand = mulberry32(seed);
  const x: Float32Array[] = [];
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    y[i] = c;
    x.push(Float32Array.from({ length: dim }, (_, j) => 5 + 3 * (j % 3 === c ? 1 : 0) + 2 * (rand() - 0.5) * (1 + j)));
  }
  return { x, y };
}

/** Logits up to a constant: log of the probabilities. */
const logits = (p: MlpParams, x: Float32Array) => Array.from(mlpForward(p, x), (v) => Math.log(v));

describe('mean-logit ensemble', () => {
  it('the merged MLP gives the mean of the members\' logits, in TS and in onnxruntime', async () => {
    const { x, y } = blobs(600, 12, 42);
    const nets = [1, 2, 3].map((seed) => trainMlp(x, y, {
      hidden: 8, classes: 3, activation: 'relu', epochs: 3, batchSize: 32, learningRate: 1e-2, l2: 1e-4, classWeights: [1, 1, 1], seed,
    }));
    const merged = mergeMeanLogits(nets);
    expect(merged.hidden).toBe(24);
    const test = blobs(50, 12, 7).x;
    for (const row of test) {
      const want = [0, 1, 2].map((k) => nets.reduce((a, n) => a + (logits(n, row)[k] as number), 0) / 3);
      const got = logits(merged, row);
      // Equal up to the softmax's additive constant.
      const d0 = (got[0] as number) - (want[0] as number);
      for (let k = 1; k < 3; k++) expect((got[k] as number) - (want[k] as number)).toBeCloseTo(d0, 8);
    }
    const classifier = await BeatClassifier.fromBytes(exportOnnx(merged, [
      ['name', 'test'], ['kind', 'multiclass'], ['classes', 'A,B,C'], ['featureSet', 'synthetic'], ['dim', '12'], ['seed', '1'],
    ]));
    try {
      const probs = await classifier.classify(test);
      const rounded = roundParams(merged);
      probs.forEach((p, i) => {
        const ref = mlpForward(rounded, test[i] as Float32Array);
        for (let k = 0; k < 3; k++) expect(Math.abs((p[k] as number) - (ref[k] as number))).toBeLessThan(1e-5);
      });
    } finally {
      await classifier.close();
    }
  });

  it('paper and default presets keep their single-network settings', () => {
    expect(PRESETS.paper.ensemble ?? 1).toBe(1);
    expect(PRESETS.default.ensemble ?? 1).toBe(1);
    expect(PRESETS.default.logitBias ?? []).toEqual([]);
    expect(PRESETS.default2.featureSet).toBe('default-v2');
  });
});

describe('trainModel default2 on MIT-BIH', () => {
  const dir = existsSync(excerptDir()) ? excerptDir() : mitdbDir();
  it.skipIf(dir === undefined)('is deterministic and carries the two-lead feature set', async () => {
    const records = ['119', '208'];
    const a = await trainModel({ model: 'default2', dataDir: dir as string, records, seed: 3 });
    const b = await trainModel({ model: 'default2', dataDir: dir as string, records, seed: 3 });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const classifier = await BeatClassifier.fromBytes(a);
    expect(classifier.info).toMatchObject({ name: 'default2', featureSet: 'default-v2', dim: 80, classes: ['N', 'S', 'V', 'F', 'Q'] });
    await classifier.close();
  }, 120_000);
});
