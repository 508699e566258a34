/**
 * 'default-v2': the 52 'default-v1' features (computed by DefaultFeatures itself, unchanged) followed
 * by context features meant to tell noise and atrial fibrillation apart from ectopic beats:
 *
 *  - signal quality of the beat's window (the same [r - 272 ms, r + 472 ms] extent v1 reads, so no
 *    extra latency), outside the QRS (r ± 70 ms): high-frequency activity (mean |second difference|),
 *    number of turning points (hysteresis 3 % of that amplitude), baseline drift (start vs end) and
 *    range, each relative to the patient's running median QRS peak-to-peak amplitude, and the
 *    high-frequency activity relative to the patient's running median of it; the beat's QRS amplitude
 *    relative to that median; the mean of the high-frequency ratio over the last 8 beats;
 *  - neighbouring morphology: the QRS template correlation (v1 feature) of the previous two beats, its
 *    mean and the fraction below 0.9 over the last 8 beats, the previous beat's amplitude ratio, the
 *    mean P-region correlation over the last 16 beats (no consistent P wave in AF);
 *  - rhythm (last 32 RR): fraction of successive changes > 15 %, RMSSD relative to the mean, pre RR
 *    relative to the 10th percentile, and the fraction of recent RR within ±10 % of the pre and of the
 *    post RR (in AF a short RR is common, before a PAC it is not);
 *  - recurring morphology (last 16 beats, QRS snippets r ± 100 ms at every 2nd sample, best over
 *    shifts of ±11 ms): best and median correlation with the recent normally timed beats (v1
 *    pre/local in (0.88, 1.25)), correlation with the previous beat, the fraction of the 16 that
 *    correlate > 0.9, and their mean pre/local and post/pre: a morphology that keeps coming back
 *    with normal timing is the patient's (e.g. 108's alternating QRS axis), one that keeps coming
 *    back early with a pause after it is ectopic.
 *
 * Window baseline: median of every 4th sample (v2 reads its own copy of the window; v1 is untouched).
 *
 * All causal: only the beat's window, its reported neighbours (as v1) and running per-patient state.
 */
import { DefaultFeatures, DEFAULT_FEATURE_NAMES, type DefaultStats } from './default.js';
import type { BeatContext, FeatureSet } from './stream.js';
import { LOOKAHEAD_SECONDS } from './stream.js';
import { alignOnExtremum, medianOf, readWindow } from './window.js';

const AMP_BEATS = 32;
const HF_BEATS = 32;
const NEIGH_BEATS = 8;
const P_BEATS = 16;
const RR_BEATS = 32;
const RECENT_BEATS = 16;
const SIMILAR_CORR = 0.9;

const V1_DIM = DEFAULT_FEATURE_NAMES.length;
const I_CORR_QRS = DEFAULT_FEATURE_NAMES.indexOf('corr_qrs');
const I_CORR_P = DEFAULT_FEATURE_NAMES.indexOf('corr_p');
const I_AMP = DEFAULT_FEATURE_NAMES.indexOf('amp/tpl');

export const DEFAULT2_EXTRA_NAMES: readonly string[] = [
  'sq_hf', 'sq_hf/patient', 'sq_turns', 'sq_drift', 'sq_range', 'amp/patient', 'sq_hf_mean8',
  'corr_prev1', 'corr_prev2', 'corr_mean8', 'corr_low8', 'amp_prev1', 'corrp_mean16',
  'rr_jumps32', 'rr_rmssd32', 'pre/p10', 'pre_density32', 'post_density32',
  'nt_corr_max', 'nt_corr_med', 'prevbeat_corr', 'sim_frac16', 'sim_pre/local', 'sim_post/pre',
];
export const DEFAULT2_FEATURE_NAMES: readonly string[] = [...DEFAULT_FEATURE_NAMES, ...DEFAULT2_EXTRA_NAMES];

export interface Default2Stats {
  v1: DefaultStats;
  amps: number[]; // last AMP_BEATS QRS peak-to-peak amplitudes
  hfs: number[]; // last HF_BEATS high-frequency activities
  hfRatios: number[]; // last NEIGH_BEATS hf / amplitude
  corrs: number[]; // last NEIGH_BEATS QRS template correlations
  corrPs: number[]; // last P_BEATS P-region correlations
  prevAmp: number; // the previous beat's amplitude ratio to the template (1 when none)
  rr: number[]; // last RR_BEATS RR intervals (s)
  /** The last RECENT_BEATS beats: QRS snippet (every 2nd sample, r ± 100 ms, rounded to 1 µV), v1 pre/local and post/pre. */
  recent: RecentBeat[];
}

export interface RecentBeat {
  q: number[];
  pre: number;
  post: number;
}

function push(list: number[], v: number, max: number): void {
  list.push(v);
  if (list.length > max) list.shift();
}

function mean(list: readonly number[], empty: number): number {
  if (list.length === 0) return empty;
  let s = 0;
  for (const v of list) s += v;
  return s / list.length;
}

function median(list: readonly number[], empty: number): number {
  if (list.length === 0) return empty;
  const sorted = Float64Array.from(list).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Best Pearson correlation of a[i + s] with a snippet b[i], over the shifts s in [0, 2 · maxShift]
 * (`a` has maxShift extra samples on each side). The centred, shifted copies of `a` and their norms
 * are prepared once per beat and reused for every stored snippet.
 */
class ShiftedSnippet {
  readonly #centred: Float64Array[] = [];
  readonly #norms: number[] = [];
  readonly #scratch: Float64Array;

  constructor(a: Float64Array, n: number, maxShift: number) {
    this.#scratch = new Float64Array(n);
    for (let s = 0; s <= 2 * maxShift; s++) {
      let ma = 0;
      for (let i = 0; i < n; i++) ma += a[i + s] as number;
      ma /= n;
      const c = new Float64Array(n);
      let saa = 0;
      for (let i = 0; i < n; i++) {
        const d = (a[i + s] as number) - ma;
        c[i] = d;
        saa += d * d;
      }
      this.#centred.push(c);
      this.#norms.push(Math.sqrt(saa));
    }
  }

  correlation(b: readonly number[]): number {
    const bc = this.#scratch;
    const n = bc.length;
    let mb = 0;
    for (let i = 0; i < n; i++) mb += b[i] as number;
    mb /= n;
    let sbb = 0;
    for (let i = 0; i < n; i++) {
      const d = (b[i] as number) - mb;
      bc[i] = d;
      sbb += d * d;
    }
    const nb = Math.sqrt(sbb);
    let best = -1;
    this.#centred.forEach((c, s) => {
      let sab = 0;
      for (let i = 0; i < n; i++) sab += (c[i] as number) * (bc[i] as number);
      const den = (this.#norms[s] as number) * nb;
      const r = den > 1e-12 ? sab / den : 0;
      if (r > best) best = r;
    });
    return best;
  }
}

function clip(v: number, lo: number, hi: number): number {
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}

export class Default2Features implements FeatureSet {
  readonly name = 'default-v2';
  readonly sampleRate: number;
  readonly dim = DEFAULT2_FEATURE_NAMES.length;
  readonly before: number;
  readonly after: number;
  readonly needsNext = true;
  readonly #v1: DefaultFeatures;
  #stats: Omit<Default2Stats, 'v1'>;

  constructor(sampleRate: number) {
    this.sampleRate = sampleRate;
    this.#v1 = new DefaultFeatures(sampleRate);
    this.before = this.#v1.before;
    this.after = this.#v1.after;
    this.#stats = { amps: [], hfs: [], hfRatios: [], corrs: [], corrPs: [], prevAmp: 1, rr: [], recent: [] };
  }

  compute(ctx: BeatContext, out: Float32Array): void {
    this.#v1.compute(ctx, out.subarray(0, V1_DIM));
    const fs = this.sampleRate;
    const st = this.#stats;

    // ---- signal quality of the window ----
    const before = this.before;
    const len = before + this.after;
    const w = readWindow(ctx.history, ctx.sample - before, len);
    // baseline: median of every 4th sample (robust enough here, and a quarter of the sort)
    const sub = new Float32Array(Math.ceil(len / 4));
    for (let i = 0, j = 0; i < len; i += 4) sub[j++] = w[i] as number;
    const baseline = medianOf(sub);
    for (let i = 0; i < len; i++) {
      const v = w[i] as number;
      w[i] = Number.isFinite(v) ? v - baseline : 0;
    }
    const q = Math.round(0.07 * fs);
    const qLo = before - q;
    const qHi = before + q;
    let qmax = -Infinity;
    let qmin = Infinity;
    for (let i = qLo; i <= qHi; i++) {
      const v = w[i] as number;
      if (v > qmax) qmax = v;
      if (v < qmin) qmin = v;
    }
    const p2p = qmax - qmin;
    const refAmp = Math.max(median(st.amps, p2p), 1e-3);
    let hf = 0;
    let nHf = 0;
    let rmax = -Infinity;
    let rmin = Infinity;
    let turns = 0;
    let dir = 0;
    let extreme = w[0] as number;
    const hyst = 0.03 * refAmp;
    for (let i = 1; i < len - 1; i++) {
      if (i >= qLo && i <= qHi) {
        dir = 0;
        extreme = w[i] as number;
        continue;
      }
      const v = w[i] as number;
      hf += Math.abs((w[i + 1] as number) - 2 * v + (w[i - 1] as number));
      nHf++;
      if (v > rmax) rmax = v;
      if (v < rmin) rmin = v;
      // turning points of the signal with a hysteresis (a noisy stretch has many, a clean one few)
      if (dir >= 0) {
        if (v > extreme) extreme = v;
        else if (extreme - v > hyst) {
          if (dir > 0) turns++;
          dir = -1;
          extreme = v;
        }
      }
      if (dir <= 0) {
        if (v < extreme) extreme = v;
        else if (v - extreme > hyst) {
          if (dir < 0) turns++;
          dir = 1;
          extreme = v;
        }
      }
    }
    hf = nHf > 0 ? hf / nHf : 0;
    const edge = Math.round(0.04 * fs);
    const drift = Math.abs(medianOf(w, len - edge, len) - medianOf(w, 0, edge));
    const hfRef = median(st.hfs, hf);
    const hfRatio = hf / refAmp;
    let k = V1_DIM;
    out[k++] = clip(100 * hfRatio, 0, 100);
    out[k++] = clip(Math.log((hf + 1e-6) / (hfRef + 1e-6)), -5, 5);
    out[k++] = clip(turns, 0, 100);
    out[k++] = clip(drift / refAmp, 0, 20);
    out[k++] = clip((rmax - rmin) / refAmp, 0, 20);
    out[k++] = clip(p2p / refAmp, 0, 20);
    out[k++] = clip(100 * mean(st.hfRatios, hfRatio), 0, 100);

    // ---- neighbouring morphology ----
    const corrQrs = out[I_CORR_QRS] as number;
    const corrP = out[I_CORR_P] as number;
    const ampRatio = out[I_AMP] as number;
    const nc = st.corrs.length;
    out[k++] = nc > 0 ? (st.corrs[nc - 1] as number) : 1;
    out[k++] = nc > 1 ? (st.corrs[nc - 2] as number) : 1;
    out[k++] = mean(st.corrs, 1);
    out[k++] = nc > 0 ? st.corrs.filter((c) => c < 0.9).length / nc : 0;
    out[k++] = st.prevAmp;
    out[k++] = mean(st.corrPs, 1);

    // ---- rhythm over the last 32 RR ----
    const preKnown = ctx.prev !== null;
    const rrPre = preKnown ? Math.min((ctx.sample - (ctx.prev as number)) / fs, 2 * LOOKAHEAD_SECONDS) : null;
    const rrPost = ctx.next !== null ? Math.min((ctx.next - ctx.sample) / fs, LOOKAHEAD_SECONDS) : LOOKAHEAD_SECONDS;
    const rr = st.rr;
    const rrMean = mean(rr, 0.8);
    let jumps = 0;
    let ssd = 0;
    for (let i = 1; i < rr.length; i++) {
      const a = rr[i - 1] as number;
      const b = rr[i] as number;
      if (Math.abs(b - a) > 0.15 * a) jumps++;
      ssd += (b - a) ** 2;
    }
    const pre = rrPre ?? rrMean;
    let p10 = rrMean;
    let densPre = 0;
    let densPost = 0;
    if (rr.length > 0) {
      const sorted = Float64Array.from(rr).sort();
      p10 = sorted[Math.floor(0.1 * (sorted.length - 1))] as number;
      for (const x of rr) {
        if (Math.abs(x - pre) <= 0.1 * x) densPre++;
        if (Math.abs(x - rrPost) <= 0.1 * x) densPost++;
      }
      densPre /= rr.length;
      densPost /= rr.length;
    }
    out[k++] = rr.length > 1 ? jumps / (rr.length - 1) : 0;
    out[k++] = rr.length > 1 ? clip(Math.sqrt(ssd / (rr.length - 1)) / rrMean, 0, 5) : 0;
    out[k++] = clip(pre / p10, 0, 5);
    out[k++] = densPre;
    out[k++] = densPost;

    // ---- similarity to the recent normally timed beats and to the previous beat ----
    const slack = Math.round(0.022 * fs);
    const r = alignOnExtremum(w, ctx.sample - before, ctx.sample, slack, 0) - (ctx.sample - before);
    const half = Math.round(0.05 * fs); // snippet: 2 * half + 1 points at stride 2 (r ± 100 ms)
    const shift = 2;
    const ext = new Float64Array(2 * half + 1 + 2 * shift);
    for (let j = 0; j < ext.length; j++) {
      const at = r + 2 * (j - shift - half);
      ext[j] = at >= 0 && at < len ? (w[at] as number) : 0;
    }
    const timing = out[4] as number; // v1 pre/local
    const postPre = out[9] as number; // v1 post/pre
    const ntCorrs: number[] = [];
    let prevCorr = corrQrs;
    let similar = 0;
    let simPre = 0;
    let simPost = 0;
    const shifted = new ShiftedSnippet(ext, 2 * half + 1, shift);
    st.recent.forEach((b, j) => {
      const c = shifted.correlation(b.q);
      if (b.pre > 0.88 && b.pre < 1.25) ntCorrs.push(c);
      if (j === st.recent.length - 1) prevCorr = c;
      if (c > SIMILAR_CORR) {
        similar++;
        simPre += b.pre;
        simPost += b.post;
      }
    });
    out[k++] = ntCorrs.length > 0 ? Math.max(...ntCorrs) : corrQrs;
    out[k++] = median(ntCorrs, corrQrs);
    out[k++] = prevCorr;
    out[k++] = similar / RECENT_BEATS;
    out[k++] = similar > 0 ? simPre / similar : 0;
    out[k++] = similar > 0 ? simPost / similar : 0;
    for (let i = V1_DIM; i < k; i++) if (!Number.isFinite(out[i] as number)) out[i] = 0;

    // ---- state update (after the features) ----
    push(st.amps, p2p, AMP_BEATS);
    push(st.hfs, hf, HF_BEATS);
    push(st.hfRatios, hfRatio, NEIGH_BEATS);
    push(st.corrs, corrQrs, NEIGH_BEATS);
    push(st.corrPs, corrP, P_BEATS);
    st.prevAmp = ampRatio;
    if (rrPre !== null) push(rr, rrPre, RR_BEATS);
    const q1 = Array.from(ext.subarray(shift, ext.length - shift), (v) => Math.round(v * 1000) / 1000);
    st.recent.push({ q: q1, pre: Math.round(timing * 1e4) / 1e4, post: Math.round(postPre * 1e4) / 1e4 });
    if (st.recent.length > RECENT_BEATS) st.recent.shift();
  }

  statsState(): Default2Stats {
    const st = this.#stats;
    return {
      v1: this.#v1.statsState(), amps: st.amps.slice(), hfs: st.hfs.slice(), hfRatios: st.hfRatios.slice(),
      corrs: st.corrs.slice(), corrPs: st.corrPs.slice(), prevAmp: st.prevAmp, rr: st.rr.slice(),
      recent: st.recent.map((b) => ({ q: b.q.slice(), pre: b.pre, post: b.post })),
    };
  }

  restoreStats(state: unknown): void {
    const st = state as Default2Stats;
    const lists = st ? [st.amps, st.hfs, st.hfRatios, st.corrs, st.corrPs, st.rr, st.recent] : [];
    if (!st || !lists.every(Array.isArray) || typeof st.prevAmp !== 'number') throw new TypeError('default-v2: bad feature state');
    this.#v1.restoreStats(st.v1);
    this.#stats = {
      amps: st.amps.slice(), hfs: st.hfs.slice(), hfRatios: st.hfRatios.slice(), corrs: st.corrs.slice(),
      corrPs: st.corrPs.slice(), prevAmp: st.prevAmp, rr: st.rr.slice(),
      recent: st.recent.map((b) => ({ q: Array.from(b.q), pre: b.pre, post: b.post })),
    };
  }
}
