/**
 * 'default-v1': inter-patient beat features after de Chazal et al. (2004), Llamedo & Martínez (2011)
 * and Mondéjar-Guerra et al. (2019), with per-patient normalisation kept in the stream state.
 *
 * Window: 700 ms around the re-aligned R peak, [r - 250 ms, r + 450 ms) (P wave, QRS, T wave),
 * baseline = median of that window. Re-alignment: the largest deviation from the baseline within
 * ±22 ms of the reported fiducial (tolerates detector jitter).
 *
 * Features (52; names in DEFAULT_FEATURE_NAMES). Only RR timing and patient-relative morphology:
 * absolute amplitudes (mV) were dropped after patient-wise CV on DS1 showed no gain from them
 * (they describe the patient and the electrode more than the beat).
 *  - RR (16): previous RR, next RR (capped at the 2 s lookahead), local average of the last 10 RR,
 *    long-run average (exponential, ~300 beats, warm-up as a plain mean) in seconds; the per-patient
 *    ratios pre/local, post/local, pre/long, post/long, local/long, post/pre, pre/previous-pre;
 *    rhythm irregularity (coefficient of variation and mean successive difference of the last 10 RR,
 *    relative to their mean); pre, post and local RR relative to the median of the last 32 RR.
 *    An unknown previous RR (first beat, after a gap) takes the local average.
 *  - QRS width (1), from the derivative (onset/offset at 20 % of the maximal slope within ±100 ms).
 *  - patient template (7 + 28): a running template of the patient's dominant beat (mean of the
 *    first 8 beats, then an exponential average, alpha 0.05, of beats whose QRS correlates > 0.9
 *    with it and that are not premature; re-initialised after 40 rejections in a row).
 *    Correlation with it (best over shifts of ±11 ms) over the QRS, the whole window and the
 *    P-wave region; ratios of QRS peak-to-peak amplitude, energy (r ± 60 ms), width and signed
 *    R amplitude to the template's; and (beat - template) / template QRS amplitude in 25 ms blocks.
 */
import type { BeatContext, FeatureSet } from './stream.js';
import { LOOKAHEAD_SECONDS } from './stream.js';
import { alignOnExtremum, medianOf, readWindow } from './window.js';

const LOCAL_BEATS = 10;
const MEDIAN_BEATS = 32;
const LONG_BEATS = 300;
const TEMPLATE_WARMUP = 8;
const TEMPLATE_ALPHA = 0.05;
const TEMPLATE_MIN_CORR = 0.9;
const TEMPLATE_MAX_REJECTS = 40;
const DEFAULT_RR_SECONDS = 0.8;

export interface DefaultStats {
  rr: number[]; // last LOCAL_BEATS RR intervals (seconds), oldest first
  rrMedian: number[]; // last MEDIAN_BEATS RR intervals (seconds), oldest first
  longRr: number; // long-run RR average (seconds)
  longCount: number;
  lastPre: number | null; // the previous beat's RR (seconds); not used for the first beat after a gap
  template: Float64Array;
  templateCount: number;
  rejects: number;
}

function clip(v: number, lo: number, hi: number): number {
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}

/** Pearson correlation of a[i + shift] with b[i] over i in [from, to). */
/** Peak-to-peak amplitude and mean energy of the QRS, samples [pre - q, pre + q] (beat or template alike). */
function qrsAmplitude(w: Float64Array, pre: number, q: number): { p2p: number; energy: number } {
  let max = -Infinity;
  let min = Infinity;
  let energy = 0;
  for (let i = pre - q; i <= pre + q; i++) {
    const v = w[i] as number;
    max = Math.max(max, v);
    min = Math.min(min, v);
    energy += v * v;
  }
  return { p2p: max - min, energy: energy / (2 * q + 1) };
}

function correlation(a: Float64Array, b: Float64Array, from: number, to: number, shift = 0): number {
  let ma = 0;
  let mb = 0;
  const n = to - from;
  for (let i = from; i < to; i++) {
    ma += a[i + shift] as number;
    mb += b[i] as number;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = from; i < to; i++) {
    const da = (a[i + shift] as number) - ma;
    const db = (b[i] as number) - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  const den = Math.sqrt(saa * sbb);
  return den > 1e-12 ? sab / den : 0;
}

/** The best correlation over shifts of `a` by up to ±maxShift samples (tolerates residual misalignment). */
function bestCorrelation(a: Float64Array, b: Float64Array, from: number, to: number, maxShift: number): number {
  const lo = Math.max(from, maxShift);
  const hi = Math.min(to, a.length - maxShift);
  let best = -1;
  for (let s = -maxShift; s <= maxShift; s++) best = Math.max(best, correlation(a, b, lo, hi, s));
  return best;
}

export const DEFAULT_FEATURE_NAMES: readonly string[] = [
  'rr_pre', 'rr_post', 'rr_local', 'rr_long', 'pre/local', 'post/local', 'pre/long', 'post/long', 'local/long',
  'post/pre', 'pre/prevpre', 'rr_cv', 'rr_succdiff', 'pre/median', 'post/median', 'local/median',
  'qrs_width',
  'corr_qrs', 'corr_all', 'corr_p', 'amp/tpl', 'energy/tpl', 'width/tpl', 'ramp/tpl',
  ...Array.from({ length: 28 }, (_, i) => `diff${i}`),
];

export class DefaultFeatures implements FeatureSet {
  readonly name = 'default-v1';
  readonly sampleRate: number;
  readonly dim = DEFAULT_FEATURE_NAMES.length;
  readonly before: number;
  readonly after: number;
  readonly needsNext = true;
  readonly #pre: number; // window samples before r
  readonly #len: number; // window length
  readonly #slack: number;
  readonly #block: number;
  readonly #blocks = 28;
  #stats: DefaultStats;

  constructor(sampleRate: number) {
    this.sampleRate = sampleRate;
    this.#pre = Math.round(0.25 * sampleRate);
    this.#len = Math.round(0.7 * sampleRate);
    this.#slack = Math.round(0.022 * sampleRate);
    this.#block = Math.floor(this.#len / this.#blocks);
    this.before = this.#pre + this.#slack;
    this.after = this.#len - this.#pre + this.#slack;
    this.#stats = {
      rr: [], rrMedian: [], longRr: 0, longCount: 0, lastPre: null,
      template: new Float64Array(this.#len), templateCount: 0, rejects: 0,
    };
  }

  /** QRS width (s) from the derivative of `w` (baseline-removed window, r at index `r`). */
  #width(w: Float64Array, r: number): number {
    const span = Math.round(0.1 * this.sampleRate);
    const lo = Math.max(1, r - span);
    const hi = Math.min(w.length - 1, r + span);
    let maxSlope = 0;
    for (let i = lo; i < hi; i++) maxSlope = Math.max(maxSlope, Math.abs((w[i + 1] as number) - (w[i - 1] as number)));
    if (maxSlope <= 1e-9) return 0;
    const thr = 0.2 * maxSlope;
    let on = -1;
    let off = -1;
    for (let i = lo; i < hi; i++) {
      if (Math.abs((w[i + 1] as number) - (w[i - 1] as number)) > thr) {
        if (on < 0) on = i;
        off = i;
      }
    }
    return on < 0 ? 0 : (off - on) / this.sampleRate;
  }

  compute(ctx: BeatContext, out: Float32Array): void {
    const fs = this.sampleRate;
    const st = this.#stats;
    const slack = this.#slack;
    const pre = this.#pre;
    const len = this.#len;

    // ---- RR ----
    const lookahead = LOOKAHEAD_SECONDS;
    const local0 = st.rr.length > 0 ? st.rr.reduce((a, b) => a + b, 0) / st.rr.length : st.longCount > 0 ? st.longRr : DEFAULT_RR_SECONDS;
    const preKnown = ctx.prev !== null;
    const rrPre = preKnown ? Math.min((ctx.sample - (ctx.prev as number)) / fs, 2 * lookahead) : local0;
    const rrPost = ctx.next !== null ? Math.min((ctx.next - ctx.sample) / fs, lookahead) : lookahead;
    const local = local0;
    const long = st.longCount > 0 ? st.longRr : local;
    // After a gap (no previous beat) the RR before the gap is not used either.
    const prevPre = preKnown && st.lastPre !== null ? st.lastPre : rrPre;
    let k = 0;
    out[k++] = rrPre;
    out[k++] = rrPost;
    out[k++] = local;
    out[k++] = long;
    out[k++] = clip(rrPre / local, 0, 5);
    out[k++] = clip(rrPost / local, 0, 5);
    out[k++] = clip(rrPre / long, 0, 5);
    out[k++] = clip(rrPost / long, 0, 5);
    out[k++] = clip(local / long, 0, 5);
    out[k++] = clip(rrPost / rrPre, 0, 5);
    out[k++] = clip(rrPre / prevPre, 0, 5);
    // Rhythm irregularity over the last 10 RR (AF makes prematurity less telling) and a robust
    // reference: the median of the last 32 RR.
    let rrCv = 0;
    let rrSucc = 0;
    if (st.rr.length > 1) {
      let v = 0;
      for (const x of st.rr) v += (x - local0) ** 2;
      rrCv = Math.sqrt(v / st.rr.length) / local0;
      for (let i = 1; i < st.rr.length; i++) rrSucc += Math.abs((st.rr[i] as number) - (st.rr[i - 1] as number));
      rrSucc /= (st.rr.length - 1) * local0;
    }
    let median = local;
    if (st.rrMedian.length > 0) {
      const sorted = st.rrMedian.slice().sort((a, b) => a - b);
      const mid = sorted.length >> 1;
      median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
    }
    const tail = [clip(rrCv, 0, 5), clip(rrSucc, 0, 5), clip(rrPre / median, 0, 5), clip(rrPost / median, 0, 5), clip(local / median, 0, 5)];
    for (const v of tail) out[k++] = v;
    if (preKnown) {
      st.rrMedian.push(rrPre);
      if (st.rrMedian.length > MEDIAN_BEATS) st.rrMedian.shift();
      st.rr.push(rrPre);
      if (st.rr.length > LOCAL_BEATS) st.rr.shift();
      st.longCount++;
      const alpha = Math.max(1 / st.longCount, 1 / LONG_BEATS);
      st.longRr += alpha * (rrPre - st.longRr);
    }
    st.lastPre = rrPre;

    // ---- window ----
    const bufStart = ctx.sample - pre - slack;
    const buf = readWindow(ctx.history, bufStart, len + 2 * slack);
    const base0 = medianOf(buf);
    const r = alignOnExtremum(buf, bufStart, ctx.sample, slack, base0);
    const from = r - pre - bufStart;
    const baseline = medianOf(buf, from, from + len);
    const w = new Float64Array(len);
    for (let i = 0; i < len; i++) {
      const v = buf[from + i] as number;
      w[i] = Number.isFinite(v) ? v - baseline : 0;
    }
    const block = this.#block;
    const offset = Math.floor((len - block * this.#blocks) / 2);

    // ---- QRS ----
    const q = Math.round(0.06 * fs);
    const { p2p, energy } = qrsAmplitude(w, pre, q);
    const width = this.#width(w, pre);
    const rAmp = w[pre] as number;
    out[k++] = width;

    // ---- template ----
    const tpl = st.template;
    let corrQrs = 0;
    let corrAll = 0;
    let corrP = 0;
    let tP2p = 0;
    let tEnergy = 0;
    let tWidth = 0;
    let tR = 0;
    if (st.templateCount > 0) {
      const shift = Math.round(0.011 * fs);
      corrQrs = bestCorrelation(w, tpl, pre - q, pre + Math.round(0.1 * fs), shift);
      corrAll = bestCorrelation(w, tpl, 0, len, shift);
      corrP = bestCorrelation(w, tpl, 0, pre - q, shift);
      ({ p2p: tP2p, energy: tEnergy } = qrsAmplitude(tpl, pre, q));
      tWidth = this.#width(tpl, pre);
      tR = tpl[pre] as number;
    }
    const amp = tP2p > 1e-6 ? tP2p : p2p > 1e-6 ? p2p : 1;
    out[k++] = corrQrs;
    out[k++] = corrAll;
    out[k++] = corrP;
    out[k++] = clip(p2p / amp, 0, 10);
    out[k++] = clip(Math.sqrt(energy / Math.max(tEnergy, 1e-9)), 0, 10);
    out[k++] = clip(width / Math.max(tWidth, 1 / fs), 0, 10);
    out[k++] = Math.abs(tR) > 1e-6 ? clip(rAmp / tR, -10, 10) : 0;
    for (let b = 0; b < this.#blocks; b++) {
      let s = 0;
      for (let i = 0; i < block; i++) {
        const at = offset + b * block + i;
        s += (w[at] as number) - (st.templateCount > 0 ? (tpl[at] as number) : 0);
      }
      out[k++] = clip(s / block / amp, -10, 10);
    }
    for (let i = 0; i < k; i++) if (!Number.isFinite(out[i] as number)) out[i] = 0;

    // ---- template update (after the features: a beat never sees itself in the template) ----
    if (st.templateCount < TEMPLATE_WARMUP) {
      st.templateCount++;
      const a = 1 / st.templateCount;
      for (let i = 0; i < len; i++) tpl[i] = (tpl[i] as number) + a * ((w[i] as number) - (tpl[i] as number));
      st.rejects = 0;
    } else if (corrQrs > TEMPLATE_MIN_CORR && rrPre / local > 0.85) {
      for (let i = 0; i < len; i++) tpl[i] = (tpl[i] as number) + TEMPLATE_ALPHA * ((w[i] as number) - (tpl[i] as number));
      st.rejects = 0;
    } else if (++st.rejects >= TEMPLATE_MAX_REJECTS) {
      st.templateCount = 0;
      st.rejects = 0;
      tpl.fill(0);
    }
  }

  statsState(): DefaultStats {
    const st = this.#stats;
    return { ...st, rr: st.rr.slice(), rrMedian: st.rrMedian.slice(), template: st.template.slice() };
  }

  restoreStats(state: unknown): void {
    const st = state as DefaultStats;
    // The template may come back as a plain array (e.g. after a JSON round trip of the state).
    const template = st && (st.template instanceof Float64Array ? st.template : Array.isArray(st.template) ? Float64Array.from(st.template as number[]) : undefined);
    if (!st || !Array.isArray(st.rr) || !Array.isArray(st.rrMedian) || !template || template.length !== this.#len) {
      throw new TypeError('default-v1: bad feature state');
    }
    this.#stats = { ...st, rr: st.rr.slice(), rrMedian: st.rrMedian.slice(), template: template.slice() };
  }
}
