/**
 * 'paper-v1': the reference paper's input (Ericson & Pallickara): a ~1 s window of raw samples
 * centred on the R peak, window mean removed. At 360 Hz that is 360 samples [r - 180, r + 180),
 * in mV, no downsampling. The reported fiducial is first re-aligned on the largest deviation from
 * the window median within ±22 ms (8 samples at 360 Hz), so a detector's jitter of a few samples
 * moves the window onto the same peak as the reference annotation. Samples outside the history
 * (record edges) read as 0 after mean removal. No RR information, no running statistics.
 */
import type { BeatContext, FeatureSet } from './stream.js';
import { alignOnExtremum, meanOf, medianOf, readWindow } from './window.js';

export class PaperFeatures implements FeatureSet {
  readonly name = 'paper-v1';
  readonly sampleRate: number;
  readonly dim: number;
  readonly before: number;
  readonly after: number;
  readonly needsNext = false;
  readonly #half: number;
  readonly #slack: number;

  constructor(sampleRate: number) {
    this.sampleRate = sampleRate;
    this.#half = Math.round(0.5 * sampleRate);
    this.#slack = Math.round(0.022 * sampleRate);
    this.dim = 2 * this.#half;
    this.before = this.#half + this.#slack;
    this.after = this.#half + this.#slack;
  }

  compute(ctx: BeatContext, out: Float32Array): void {
    const half = this.#half;
    const slack = this.#slack;
    const bufStart = ctx.sample - half - slack;
    const buf = readWindow(ctx.history, bufStart, 2 * (half + slack));
    const r = alignOnExtremum(buf, bufStart, ctx.sample, slack, medianOf(buf));
    const from = r - half - bufStart;
    const mean = meanOf(buf, from, from + this.dim);
    for (let i = 0; i < this.dim; i++) {
      const v = buf[from + i] as number;
      out[i] = Number.isFinite(v) ? v - mean : 0;
    }
  }

  statsState(): null {
    return null;
  }

  restoreStats(): void {}
}
