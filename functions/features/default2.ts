/**
 * 'default-v2': 'default-v1' (first 52 features, computed identically on the primary lead) plus
 * RR features against a non-adapting "normal rhythm" reference and morphology of a SECOND lead
 * (V1 in most MIT-BIH records) relative to a per-patient template of that lead. The second lead is
 * read from `BeatContext.secondary` (same sample clock as the primary); without it the second-lead
 * features are 0 (the model was trained with it, so the function must pass it).
 *
 * Below: the description of the shared 'default-v1' part.
 *
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
import { alignOnExtremum, readWindow } from './window.js';

const LOCAL_BEATS = 10;
const MEDIAN_BEATS = 32;
const LONG_BEATS = 300;
const TEMPLATE_WARMUP = 8;
const TEMPLATE_ALPHA = 0.05;
const TEMPLATE_MIN_CORR = 0.9;
const TEMPLATE_MAX_REJECTS = 40;
const DEFAULT_RR_SECONDS = 0.8;
const NORMAL_BEATS = 32;
const NORMAL_WARMUP = 8;
const NORMAL_MAX_MISSES = 60;
const LEAD2_BLOCKS = 14;

/** Median of the finite values of values[from, to) (same result as window.ts medianOf; native sort). */
function fastMedian(values: Float32Array, from = 0, to = values.length): number {
  const tmp = new Float64Array(to - from);
  let n = 0;
  for (let i = from; i < to; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) tmp[n++] = v;
  }
  if (n === 0) return 0;
  const s = tmp.subarray(0, n).sort();
  const mid = n >> 1;
  return n % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function medianOfList(list: readonly number[]): number {
  const s = Float64Array.from(list).sort();
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export interface Default2Stats {
  rr: number[]; // last LOCAL_BEATS RR intervals (seconds), oldest first
  rrMedian: number[]; // last MEDIAN_BEATS RR intervals (seconds), oldest first
  longRr: number; // long-run RR average (seconds)
  longCount: number;
  lastPre: number | null; // the previous beat's RR (seconds); not used for the first beat after a gap
  template: Float64Array;
  templateCount: number;
  rejects: number;
  /** RR of beats that matched the normal-rhythm reference (seconds), oldest first. */
  normal: number[];
  normalMisses: number;
  template2: Float64Array;
  template2Count: number;
}

function clip(v: number, lo: number, hi: number): number {
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}

/** Pearson correlation of a[i + shift] with b[i] over i in [from, to). */
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

export const DEFAULT2_FEATURE_NAMES: readonly string[] = [
  'rr_pre', 'rr_post', 'rr_local', 'rr_long', 'pre/local', 'post/local', 'pre/long', 'post/long', 'local/long',
  'post/pre', 'pre/prevpre', 'rr_cv', 'rr_succdiff', 'pre/median', 'post/median', 'local/median',
  'qrs_width',
  'corr_qrs', 'corr_all', 'corr_p', 'amp/tpl', 'energy/tpl', 'width/tpl', 'ramp/tpl',
  ...Array.from({ length: 28 }, (_, i) => `diff${i}`),
  'pre/normal', 'post/normal', 'local/normal', 'rr_mad32', 'prem_z', 'post_z', 'p_energy/tpl',
  'l2_corr_qrs', 'l2_corr_all', 'l2_amp/tpl', 'l2_energy/tpl', 'l2_width/tpl', 'l2_ramp/tpl', 'l2_width',
  ...Array.from({ length: LEAD2_BLOCKS }, (_, i) => `l2_diff${i}`),
];

export class Default2Features implements FeatureSet {
  readonly name = 'default-v2';
  readonly sampleRate: number;
  readonly dim = DEFAULT2_FEATURE_NAMES.length;
  readonly before: number;
  readonly after: number;
  readonly needsNext = true;
  readonly #pre: number; // window samples before r
  readonly #len: number; // window length
  readonly #slack: number;
  readonly #block: number;
  readonly #blocks = 28;
  #stats: Default2Stats;

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
      normal: [], normalMisses: 0, template2: new Float64Array(this.#len), template2Count: 0,
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
    // Normal-rhythm reference (v2): median RR of the beats whose RR matched it (does not adapt inside
    // a run of fast beats, e.g. SVTA); long-window irregularity (median successive difference of 32 RR).
    const normalRef = st.normal.length >= NORMAL_WARMUP ? medianOfList(st.normal) : median;
    let mad32 = 0;
    if (st.rrMedian.length > 2) {
      const d: number[] = [];
      for (let i = 1; i < st.rrMedian.length; i++) d.push(Math.abs((st.rrMedian[i] as number) - (st.rrMedian[i - 1] as number)));
      mad32 = medianOfList(d) / median;
    }
    // Prematurity in units of the recent RR spread (robust: 1.4826 · median |RR - median| of the last
    // 32 RR): large for a PAC in a regular rhythm, moderate for the same RR in atrial fibrillation.
    let spread = 0;
    if (st.rrMedian.length > 2) spread = 1.4826 * medianOfList(st.rrMedian.map((x) => Math.abs(x - median)));
    spread = Math.max(spread, 0.02 * normalRef);
    const extraRr = [
      clip(rrPre / normalRef, 0, 5), clip(rrPost / normalRef, 0, 5), clip(local / normalRef, 0, 5), clip(mad32, 0, 5),
      clip((normalRef - rrPre) / spread, -20, 20), clip((rrPost - normalRef) / spread, -20, 20),
    ];
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
    const base0 = fastMedian(buf);
    const r = alignOnExtremum(buf, bufStart, ctx.sample, slack, base0);
    const from = r - pre - bufStart;
    const baseline = fastMedian(buf, from, from + len);
    const w = new Float64Array(len);
    for (let i = 0; i < len; i++) {
      const v = buf[from + i] as number;
      w[i] = Number.isFinite(v) ? v - baseline : 0;
    }
    const block = this.#block;
    const offset = Math.floor((len - block * this.#blocks) / 2);

    // ---- QRS ----
    const q = Math.round(0.06 * fs);
    let qmax = -Infinity;
    let qmin = Infinity;
    let energy = 0;
    for (let i = pre - q; i <= pre + q; i++) {
      const v = w[i] as number;
      qmax = Math.max(qmax, v);
      qmin = Math.min(qmin, v);
      energy += v * v;
    }
    energy /= 2 * q + 1;
    const p2p = qmax - qmin;
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
      let tmax = -Infinity;
      let tmin = Infinity;
      for (let i = pre - q; i <= pre + q; i++) {
        const v = tpl[i] as number;
        tmax = Math.max(tmax, v);
        tmin = Math.min(tmin, v);
        tEnergy += v * v;
      }
      tEnergy /= 2 * q + 1;
      tP2p = tmax - tmin;
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

    // ---- v2: RR against the normal-rhythm reference; P-wave energy relative to the template ----
    for (const v of extraRr) out[k++] = v;
    const pFrom = Math.max(0, pre - Math.round(0.2 * fs));
    let pE = 0;
    let tpE = 0;
    for (let i = pFrom; i < pre - q; i++) {
      pE += (w[i] as number) ** 2;
      tpE += (tpl[i] as number) ** 2;
    }
    out[k++] = st.templateCount > 0 ? clip(Math.sqrt(pE / Math.max(tpE, 1e-9)), 0, 10) : 1;

    // ---- v2: second lead, same window (on the primary's re-aligned peak), its own template ----
    const tpl2 = st.template2;
    let w2: Float64Array | null = null;
    if (ctx.secondary) {
      const buf2 = readWindow(ctx.secondary, r - pre, len);
      const base2 = fastMedian(buf2);
      w2 = new Float64Array(len);
      for (let i = 0; i < len; i++) {
        const v = buf2[i] as number;
        w2[i] = Number.isFinite(v) ? v - base2 : 0;
      }
    }
    if (w2 && st.template2Count > 0) {
      const shift = Math.round(0.011 * fs);
      const c1 = bestCorrelation(w2, tpl2, pre - q, pre + Math.round(0.1 * fs), shift);
      const c2 = bestCorrelation(w2, tpl2, 0, len, shift);
      let bmax = -Infinity;
      let bmin = Infinity;
      let tmax = -Infinity;
      let tmin = Infinity;
      let e2 = 0;
      let te2 = 0;
      let tExt = pre;
      for (let i = pre - q; i <= pre + q; i++) {
        const v = w2[i] as number;
        const t = tpl2[i] as number;
        bmax = Math.max(bmax, v);
        bmin = Math.min(bmin, v);
        tmax = Math.max(tmax, t);
        tmin = Math.min(tmin, t);
        e2 += v * v;
        te2 += t * t;
        if (Math.abs(t) > Math.abs(tpl2[tExt] as number)) tExt = i;
      }
      const tAmp2 = tmax - tmin > 1e-6 ? tmax - tmin : bmax - bmin > 1e-6 ? bmax - bmin : 1;
      const width2 = this.#width(w2, pre);
      const tWidth2 = this.#width(tpl2, pre);
      const tR2 = tpl2[tExt] as number;
      out[k++] = c1;
      out[k++] = c2;
      out[k++] = clip((bmax - bmin) / tAmp2, 0, 10);
      out[k++] = clip(Math.sqrt(e2 / Math.max(te2, 1e-9)), 0, 10);
      out[k++] = clip(width2 / Math.max(tWidth2, 1 / fs), 0, 10);
      out[k++] = Math.abs(tR2) > 1e-6 ? clip((w2[tExt] as number) / tR2, -10, 10) : 0;
      out[k++] = width2;
      const block2 = Math.floor(len / LEAD2_BLOCKS);
      const off2 = Math.floor((len - block2 * LEAD2_BLOCKS) / 2);
      for (let b = 0; b < LEAD2_BLOCKS; b++) {
        let s = 0;
        for (let i = 0; i < block2; i++) {
          const at = off2 + b * block2 + i;
          s += (w2[at] as number) - (tpl2[at] as number);
        }
        out[k++] = clip(s / block2 / tAmp2, -10, 10);
      }
    } else {
      for (let i = 0; i < 7 + LEAD2_BLOCKS; i++) out[k++] = 0;
    }
    for (let i = 0; i < k; i++) if (!Number.isFinite(out[i] as number)) out[i] = 0;

    // ---- template update (after the features: a beat never sees itself in the template) ----
    if (st.templateCount < TEMPLATE_WARMUP) {
      st.templateCount++;
      const a = 1 / st.templateCount;
      for (let i = 0; i < len; i++) tpl[i] = (tpl[i] as number) + a * ((w[i] as number) - (tpl[i] as number));
      st.rejects = 0;
      if (w2) {
        st.template2Count = Math.min(st.template2Count + 1, TEMPLATE_WARMUP);
        const a2 = 1 / st.template2Count;
        for (let i = 0; i < len; i++) tpl2[i] = (tpl2[i] as number) + a2 * ((w2[i] as number) - (tpl2[i] as number));
      }
    } else if (corrQrs > TEMPLATE_MIN_CORR && rrPre / local > 0.85) {
      for (let i = 0; i < len; i++) tpl[i] = (tpl[i] as number) + TEMPLATE_ALPHA * ((w[i] as number) - (tpl[i] as number));
      st.rejects = 0;
      if (w2) {
        const a2 = st.template2Count < TEMPLATE_WARMUP ? 1 / ++st.template2Count : TEMPLATE_ALPHA;
        for (let i = 0; i < len; i++) tpl2[i] = (tpl2[i] as number) + a2 * ((w2[i] as number) - (tpl2[i] as number));
      }
    } else if (++st.rejects >= TEMPLATE_MAX_REJECTS) {
      st.templateCount = 0;
      st.rejects = 0;
      tpl.fill(0);
      st.template2Count = 0;
      tpl2.fill(0);
    }

    // ---- normal-rhythm reference update ----
    if (preKnown) {
      const ratio = rrPre / normalRef;
      if (st.normal.length < NORMAL_WARMUP || (ratio > 0.85 && ratio < 1.2 && corrQrs > TEMPLATE_MIN_CORR)) {
        st.normal.push(rrPre);
        if (st.normal.length > NORMAL_BEATS) st.normal.shift();
        st.normalMisses = 0;
      } else if (++st.normalMisses >= NORMAL_MAX_MISSES) {
        st.normal = [];
        st.normalMisses = 0;
      }
    }
  }

  statsState(): Default2Stats {
    const st = this.#stats;
    return {
      ...st, rr: st.rr.slice(), rrMedian: st.rrMedian.slice(), template: st.template.slice(),
      normal: st.normal.slice(), template2: st.template2.slice(),
    };
  }

  restoreStats(state: unknown): void {
    const st = state as Default2Stats;
    // Templates may come back as plain arrays (e.g. after a JSON round trip of the state).
    const asF64 = (t: unknown): Float64Array | undefined =>
      t instanceof Float64Array ? t.slice() : Array.isArray(t) ? Float64Array.from(t as number[]) : undefined;
    const template = st && asF64(st.template);
    const template2 = st && asF64(st.template2);
    if (!st || !Array.isArray(st.rr) || !Array.isArray(st.rrMedian) || !Array.isArray(st.normal)
      || !template || template.length !== this.#len || !template2 || template2.length !== this.#len) {
      throw new TypeError('default-v2: bad feature state');
    }
    this.#stats = { ...st, rr: st.rr.slice(), rrMedian: st.rrMedian.slice(), normal: st.normal.slice(), template, template2 };
  }
}
