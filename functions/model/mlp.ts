/**
 * A small multilayer perceptron (one hidden layer, softmax output) and its trainer.
 *
 * Why hand-written rather than a library: the requirement is bit-reproducible training output
 * (`ecgfaas model train ... --seed N` must write the same file twice). `@tensorflow/tfjs-node` does not
 * install here, and pure tfjs computes in float32 with backend-dependent kernels and its own
 * initialiser randomness, which makes byte-identical weights hard to guarantee and to audit. The
 * networks needed are tiny (≤ 100 inputs × 32 hidden units), so a few hundred lines of plain
 * TypeScript suffice: Float64 arithmetic, a seeded PRNG (mulberry32) for initialisation and
 * shuffling, Adam, minibatches in a fixed (seeded) order, no threads, no clocks, no
 * `Math.random`. Same inputs and seed → same operations in the same order → same weights.
 */

export type Activation = 'tanh' | 'relu';

export interface MlpParams {
  dim: number;
  hidden: number;
  classes: number;
  activation: Activation;
  /** Feature standardisation, z = (x - mean) / std (baked into the ONNX graph). */
  mean: Float64Array;
  std: Float64Array;
  /** [hidden][dim], row-major. */
  w1: Float64Array;
  b1: Float64Array;
  /** [classes][hidden], row-major. */
  w2: Float64Array;
  b2: Float64Array;
}

export interface TrainOptions {
  hidden: number;
  classes: number;
  activation: Activation;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** L2 weight decay on the weight matrices. */
  l2: number;
  /** Loss weight per class (the weights are normalised to a mean of 1 over the training samples). */
  classWeights: readonly number[];
  seed: number;
  log?: (line: string) => void;
}

/** mulberry32: a tiny seeded PRNG with a full 2^32 period; returns doubles in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function activate(act: Activation, v: number): number {
  return act === 'tanh' ? Math.tanh(v) : v > 0 ? v : 0;
}

/** Forward pass of one feature vector; returns the class probabilities (Float64). */
export function mlpForward(p: MlpParams, x: ArrayLike<number>): Float64Array {
  const { dim, hidden, classes } = p;
  const a = new Float64Array(hidden);
  for (let j = 0; j < hidden; j++) {
    let s = p.b1[j] as number;
    const row = j * dim;
    for (let i = 0; i < dim; i++) s += (p.w1[row + i] as number) * (((x[i] as number) - (p.mean[i] as number)) / (p.std[i] as number));
    a[j] = activate(p.activation, s);
  }
  const out = new Float64Array(classes);
  let max = -Infinity;
  for (let k = 0; k < classes; k++) {
    let s = p.b2[k] as number;
    const row = k * hidden;
    for (let j = 0; j < hidden; j++) s += (p.w2[row + j] as number) * (a[j] as number);
    out[k] = s;
    max = Math.max(max, s);
  }
  let sum = 0;
  for (let k = 0; k < classes; k++) {
    out[k] = Math.exp((out[k] as number) - max);
    sum += out[k] as number;
  }
  for (let k = 0; k < classes; k++) out[k] = (out[k] as number) / sum;
  return out;
}

/** The parameters as the ONNX file stores them (each rounded to float32). */
export function roundParams(p: MlpParams): MlpParams {
  const r = (a: Float64Array) => Float64Array.from(Float32Array.from(a));
  return { ...p, mean: r(p.mean), std: r(p.std), w1: r(p.w1), b1: r(p.b1), w2: r(p.w2), b2: r(p.b2) };
}

/** Trains on rows `x` (all of length dim) with labels `y` in [0, classes). Deterministic for a given seed. */
export function trainMlp(x: readonly Float32Array[], y: ArrayLike<number>, o: TrainOptions): MlpParams {
  const n = x.length;
  if (n === 0 || n !== y.length) throw new RangeError('trainMlp: need as many labels as rows, at least one');
  const dim = (x[0] as Float32Array).length;
  const { hidden: H, classes: K, activation } = o;
  const rand = mulberry32(o.seed);

  // Standardisation from the training rows (Float64, fixed order).
  const mean = new Float64Array(dim);
  const std = new Float64Array(dim);
  for (const row of x) for (let i = 0; i < dim; i++) mean[i] = (mean[i] as number) + (row[i] as number);
  for (let i = 0; i < dim; i++) mean[i] = (mean[i] as number) / n;
  for (const row of x) for (let i = 0; i < dim; i++) std[i] = (std[i] as number) + ((row[i] as number) - (mean[i] as number)) ** 2;
  for (let i = 0; i < dim; i++) {
    const s = Math.sqrt((std[i] as number) / n);
    std[i] = s > 1e-6 ? s : 1;
  }
  // Standardise with float32-rounded mean/std, as the ONNX graph will.
  const meanF = Float64Array.from(Float32Array.from(mean));
  const stdF = Float64Array.from(Float32Array.from(std));
  const z = new Float64Array(n * dim);
  for (let r = 0; r < n; r++) {
    const row = x[r] as Float32Array;
    for (let i = 0; i < dim; i++) z[r * dim + i] = ((row[i] as number) - (meanF[i] as number)) / (stdF[i] as number);
  }

  // Sample weights normalised to mean 1.
  const sw = new Float64Array(n);
  let swSum = 0;
  for (let r = 0; r < n; r++) {
    const label = y[r] as number;
    if (!(label >= 0 && label < K)) throw new RangeError(`label ${label} out of range`);
    sw[r] = o.classWeights[label] ?? 1;
    swSum += sw[r] as number;
  }
  for (let r = 0; r < n; r++) sw[r] = ((sw[r] as number) * n) / swSum;

  // Xavier-uniform initialisation, biases 0.
  const w1 = new Float64Array(H * dim);
  const b1 = new Float64Array(H);
  const w2 = new Float64Array(K * H);
  const b2 = new Float64Array(K);
  const l1 = Math.sqrt(6 / (dim + H));
  for (let i = 0; i < w1.length; i++) w1[i] = (2 * rand() - 1) * l1;
  const l2 = Math.sqrt(6 / (H + K));
  for (let i = 0; i < w2.length; i++) w2[i] = (2 * rand() - 1) * l2;

  const params = [w1, b1, w2, b2];
  const grads = params.map((p) => new Float64Array(p.length));
  const m1 = params.map((p) => new Float64Array(p.length));
  const m2 = params.map((p) => new Float64Array(p.length));
  const [gw1, gb1, gw2, gb2] = grads as [Float64Array, Float64Array, Float64Array, Float64Array];
  const beta1 = 0.9;
  const beta2 = 0.999;
  const eps = 1e-8;
  let step = 0;

  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const hPre = new Float64Array(H);
  const act = new Float64Array(H);
  const logits = new Float64Array(K);
  const dh = new Float64Array(H);

  for (let epoch = 0; epoch < o.epochs; epoch++) {
    // Fisher-Yates with the seeded generator: a fixed minibatch order per (seed, epoch).
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      const t = order[i] as number;
      order[i] = order[j] as number;
      order[j] = t;
    }
    // Linear decay of the learning rate to 10 % over training.
    const lr = o.learningRate * (1 - (0.9 * epoch) / Math.max(1, o.epochs));
    let lossSum = 0;
    for (let start = 0; start < n; start += o.batchSize) {
      const end = Math.min(n, start + o.batchSize);
      const bs = end - start;
      for (const g of grads) g.fill(0);
      for (let b = start; b < end; b++) {
        const r = order[b] as number;
        const zr = r * dim;
        for (let j = 0; j < H; j++) {
          let s = b1[j] as number;
          const row = j * dim;
          for (let i = 0; i < dim; i++) s += (w1[row + i] as number) * (z[zr + i] as number);
          hPre[j] = s;
          act[j] = activate(activation, s);
        }
        let max = -Infinity;
        for (let k = 0; k < K; k++) {
          let s = b2[k] as number;
          const row = k * H;
          for (let j = 0; j < H; j++) s += (w2[row + j] as number) * (act[j] as number);
          logits[k] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let k = 0; k < K; k++) {
          logits[k] = Math.exp((logits[k] as number) - max);
          sum += logits[k] as number;
        }
        const label = y[r] as number;
        const w = (sw[r] as number) / bs;
        lossSum -= (sw[r] as number) * Math.log(Math.max((logits[label] as number) / sum, 1e-300));
        dh.fill(0);
        for (let k = 0; k < K; k++) {
          const d = w * ((logits[k] as number) / sum - (k === label ? 1 : 0));
          gb2[k] = (gb2[k] as number) + d;
          const row = k * H;
          for (let j = 0; j < H; j++) {
            gw2[row + j] = (gw2[row + j] as number) + d * (act[j] as number);
            dh[j] = (dh[j] as number) + d * (w2[row + j] as number);
          }
        }
        for (let j = 0; j < H; j++) {
          const a = act[j] as number;
          const d = (dh[j] as number) * (activation === 'tanh' ? 1 - a * a : (hPre[j] as number) > 0 ? 1 : 0);
          if (d === 0) continue;
          gb1[j] = (gb1[j] as number) + d;
          const row = j * dim;
          for (let i = 0; i < dim; i++) gw1[row + i] = (gw1[row + i] as number) + d * (z[zr + i] as number);
        }
      }
      // L2 on the weight matrices, then Adam.
      for (let i = 0; i < w1.length; i++) gw1[i] = (gw1[i] as number) + o.l2 * (w1[i] as number);
      for (let i = 0; i < w2.length; i++) gw2[i] = (gw2[i] as number) + o.l2 * (w2[i] as number);
      step++;
      const c1 = 1 - beta1 ** step;
      const c2 = 1 - beta2 ** step;
      for (let t = 0; t < params.length; t++) {
        const p = params[t] as Float64Array;
        const g = grads[t] as Float64Array;
        const m = m1[t] as Float64Array;
        const v = m2[t] as Float64Array;
        for (let i = 0; i < p.length; i++) {
          const gi = g[i] as number;
          m[i] = beta1 * (m[i] as number) + (1 - beta1) * gi;
          v[i] = beta2 * (v[i] as number) + (1 - beta2) * gi * gi;
          p[i] = (p[i] as number) - (lr * ((m[i] as number) / c1)) / (Math.sqrt((v[i] as number) / c2) + eps);
        }
      }
    }
    o.log?.(`epoch ${epoch + 1}/${o.epochs} loss ${(lossSum / n).toFixed(5)} lr ${lr.toExponential(2)}`);
  }
  return { dim, hidden: H, classes: K, activation, mean: meanF, std: stdF, w1, b1, w2, b2 };
}
