/**
 * 'default-v3': the 'default-v2' features (computed by Default2Features itself, unchanged) followed
 * by features aimed at the two remaining sources of false abnormal calls, atrial fibrillation (203,
 * 201) and shifting normal morphology (108):
 *
 *  - AF episode state with hysteresis over the last 64 RR: irregularity index (fraction of successive
 *    changes > 12 %); the state enters AF above 0.45 (with at least 32 RR) and leaves below 0.25;
 *    features: the index, the state, beats spent in the current state (capped, /256), RR clustering
 *    (mean fraction of the 64 RR within ±6 % of each RR: high for sinus rhythm and for bigeminy, low
 *    in AF), the pre RR's percentile among the 64 and pre RR relative to their mean;
 *  - morphology clusters: up to 3 running QRS templates (r ± 100 ms at every 2nd sample, best over
 *    shifts of ±11 ms, decaying weights): correlation with the best-matching cluster, its weight share,
 *    correlation with the heaviest cluster, the matched cluster's mean pre/local and post/pre and the
 *    beat's QRS amplitude relative to the matched cluster's. A morphology that recurs with normal
 *    timing (108's changing axis) matches a heavy, normally timed cluster even when the v1 template
 *    has not yet followed it;
 *  - prematurity gated by the AF state: pre/local (v1), the pre RR percentile and pre RR relative to
 *    the 64-RR mean, replaced by their neutral values (1, 0.5, 1) during an AF episode, where a short
 *    RR is no evidence of an ectopic beat.
 *
 * All causal: only the beat's window, its reported neighbours and running per-patient state.
 */
import { Default2Features, DEFAULT2_FEATURE_NAMES, type Default2Stats } from './default2.js';
import type { BeatContext, FeatureSet } from './stream.js';
import { LOOKAHEAD_SECONDS } from './stream.js';
import { readWindow } from './window.js';

const AF_RR = 64;
const AF_MIN_RR = 32;
const AF_ENTER = 0.45;
const AF_LEAVE = 0.25;
const STATE_CAP = 256;
const CLUSTERS = 3;
const MATCH_CORR = 0.92;
const DECAY = 0.99;
const LEARN = 0.1;

const V2_DIM = DEFAULT2_FEATURE_NAMES.length;
const I_NT_CORR = DEFAULT2_FEATURE_NAMES.indexOf('nt_corr_max');

export const DEFAULT3_EXTRA_NAMES: readonly string[] = [
  'af_irr64', 'af_state', 'af_state_beats', 'rr_cluster64', 'pre_pct64', 'pre/mean64',
  'cl_corr', 'cl_share', 'cl_heavy_corr', 'cl_pre/local', 'cl_post/pre', 'cl_amp',
  'pre/local_noaf', 'pre_pct64_noaf', 'pre/mean64_noaf',
];
export const DEFAULT3_FEATURE_NAMES: readonly string[] = [...DEFAULT2_FEATURE_NAMES, ...DEFAULT3_EXTRA_NAMES];

export interface Cluster {
  q: number[];
  w: number;
  pre: number;
  post: number;
  amp: number;
}

export interface Default3Stats {
  v2: Default2Stats;
  rr: number[];
  af: number;
  stateBeats: number;
  clusters: Cluster[];
}

function clip(v: number, lo: number, hi: number): number {
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
}

export class Default3Features implements FeatureSet {
  readonly name = 'default-v3';
  readonly sampleRate: number;
  readonly dim = DEFAULT3_FEATURE_NAMES.length;
  readonly before: number;
  readonly after: number;
  readonly needsNext = true;
  readonly #v2: Default2Features;
  #stats: Omit<Default3Stats, 'v2'>;

  constructor(sampleRate: number) {
    this.sampleRate = sampleRate;
    this.#v2 = new Default2Features(sampleRate);
    this.before = this.#v2.before;
    this.after = this.#v2.after;
    this.#stats = { rr: [], af: 0, stateBeats: 0, clusters: [] };
  }

  compute(ctx: BeatContext, out: Float32Array): void {
    this.#v2.compute(ctx, out.subarray(0, V2_DIM));
    const fs = this.sampleRate;
    const st = this.#stats;
    let k = V2_DIM;

    // ---- AF episode state over the last 64 RR ----
    const rr = st.rr;
    const n = rr.length;
    let jumps = 0;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const b = rr[i] as number;
      sum += b;
      if (i > 0) {
        const a = rr[i - 1] as number;
        if (Math.abs(b - a) > 0.12 * a) jumps++;
      }
    }
    const irr = n > 1 ? jumps / (n - 1) : 0;
    const rrMean = n > 0 ? sum / n : 0.8;
    const preKnown = ctx.prev !== null;
    const rrPre = preKnown ? Math.min((ctx.sample - (ctx.prev as number)) / fs, 2 * LOOKAHEAD_SECONDS) : null;
    const pre = rrPre ?? rrMean;
    // RR clustering: for each RR, how many of the 64 lie within ±6 % (binary searches in a sorted copy)
    const sorted = Float64Array.from(rr).sort();
    let cluster = 0;
    let shorter = 0;
    for (let i = 0; i < n; i++) {
      const a = rr[i] as number;
      if (a < pre) shorter++;
      const tol = 0.06 * a;
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const x = sorted[mid] as number;
        if (x < a && Math.abs(x - a) > tol) lo = mid + 1;
        else hi = mid;
      }
      const first = lo;
      hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const x = sorted[mid] as number;
        if (x <= a || Math.abs(x - a) <= tol) lo = mid + 1;
        else hi = mid;
      }
      cluster += (lo - first) / n;
    }
    out[k++] = irr;
    out[k++] = st.af;
    out[k++] = Math.min(st.stateBeats, STATE_CAP) / STATE_CAP;
    out[k++] = n > 0 ? cluster / n : 1;
    out[k++] = n > 0 ? shorter / n : 0.5;
    out[k++] = clip(pre / rrMean, 0, 5);

    // ---- morphology clusters ----
    const half = Math.round(0.05 * fs);
    const shift = 2;
    const m = 2 * half + 1;
    const extLen = m + 2 * shift;
    const from = ctx.sample - 2 * (half + shift);
    const raw = readWindow(ctx.history, from, 2 * (extLen - 1) + 1);
    const ext = new Float64Array(extLen);
    for (let j = 0; j < extLen; j++) {
      const v = raw[2 * j] as number;
      ext[j] = Number.isFinite(v) ? v : 0;
    }
    // centred shifted copies and norms
    const cen: Float64Array[] = [];
    const norms: number[] = [];
    for (let s = 0; s <= 2 * shift; s++) {
      let mu = 0;
      for (let i = 0; i < m; i++) mu += ext[i + s] as number;
      mu /= m;
      const c = new Float64Array(m);
      let ss = 0;
      for (let i = 0; i < m; i++) {
        const d = (ext[i + s] as number) - mu;
        c[i] = d;
        ss += d * d;
      }
      cen.push(c);
      norms.push(Math.sqrt(ss));
    }
    const centre = cen[shift] as Float64Array;
    let p2p = 0;
    {
      let hi = -Infinity;
      let lo = Infinity;
      for (let i = 0; i < m; i++) {
        const v = centre[i] as number;
        if (v > hi) hi = v;
        if (v < lo) lo = v;
      }
      p2p = hi - lo;
    }
    let best = -1;
    let bestIdx = -1;
    let bestShift = shift;
    let heavyCorr = out[I_NT_CORR] as number; // v2 nt_corr_max when no cluster yet
    let heavyW = -1;
    let totalW = 0;
    st.clusters.forEach((cl, idx) => {
      totalW += cl.w;
      const q = cl.q;
      let mq = 0;
      for (let i = 0; i < m; i++) mq += q[i] as number;
      mq /= m;
      let sqq = 0;
      for (let i = 0; i < m; i++) sqq += ((q[i] as number) - mq) ** 2;
      const nq = Math.sqrt(sqq);
      let cb = -1;
      let sb = shift;
      for (let s = 0; s <= 2 * shift; s++) {
        const c = cen[s] as Float64Array;
        let sab = 0;
        for (let i = 0; i < m; i++) sab += (c[i] as number) * ((q[i] as number) - mq);
        const den = (norms[s] as number) * nq;
        const r = den > 1e-12 ? sab / den : 0;
        if (r > cb) {
          cb = r;
          sb = s;
        }
      }
      if (cb > best) {
        best = cb;
        bestIdx = idx;
        bestShift = sb;
      }
      if (cl.w > heavyW) {
        heavyW = cl.w;
        heavyCorr = cb;
      }
    });
    const timing = out[4] as number; // v1 pre/local
    const postPre = out[9] as number; // v1 post/pre
    const matched = bestIdx >= 0 ? (st.clusters[bestIdx] as Cluster) : null;
    out[k++] = matched ? best : 0;
    out[k++] = matched && totalW > 0 ? matched.w / totalW : 0;
    out[k++] = heavyCorr;
    out[k++] = matched ? matched.pre : 1;
    out[k++] = matched ? matched.post : 1;
    out[k++] = matched && matched.amp > 1e-6 ? clip(p2p / matched.amp, 0, 20) : 1;
    // prematurity outside an AF episode only (in AF a short RR is no evidence of an ectopic beat)
    const inAf = st.af === 1;
    out[k++] = inAf ? 1 : clip(timing, 0, 5);
    out[k++] = inAf ? 0.5 : n > 0 ? shorter / n : 0.5;
    out[k++] = inAf ? 1 : clip(pre / rrMean, 0, 5);
    for (let i = V2_DIM; i < k; i++) if (!Number.isFinite(out[i] as number)) out[i] = 0;

    // ---- state update ----
    if (rrPre !== null) {
      rr.push(rrPre);
      if (rr.length > AF_RR) rr.shift();
    }
    if (rr.length >= AF_MIN_RR) {
      const next = st.af === 0 ? (irr > AF_ENTER ? 1 : 0) : irr < AF_LEAVE ? 0 : 1;
      if (next !== st.af) {
        st.af = next;
        st.stateBeats = 0;
      } else st.stateBeats = Math.min(st.stateBeats + 1, STATE_CAP);
    } else st.stateBeats = Math.min(st.stateBeats + 1, STATE_CAP);
    for (const cl of st.clusters) cl.w = Math.round(cl.w * DECAY * 1e6) / 1e6;
    const aligned = cen[bestShift] as Float64Array;
    const r6 = (v: number): number => Math.round(v * 1e6) / 1e6;
    if (matched && best > MATCH_CORR) {
      // aligned copy, mean removed; template keeps its own mean removed as well
      for (let i = 0; i < m; i++) matched.q[i] = r6((1 - LEARN) * (matched.q[i] as number) + LEARN * (aligned[i] as number));
      matched.w = r6(matched.w + 1);
      matched.pre = r6((1 - LEARN) * matched.pre + LEARN * timing);
      matched.post = r6((1 - LEARN) * matched.post + LEARN * postPre);
      matched.amp = r6((1 - LEARN) * matched.amp + LEARN * p2p);
    } else {
      const fresh: Cluster = {
        q: Array.from(centre, r6), w: 1, pre: r6(clip(timing, 0, 5)), post: r6(clip(postPre, 0, 5)), amp: r6(p2p),
      };
      if (st.clusters.length < CLUSTERS) st.clusters.push(fresh);
      else {
        let lo = 0;
        st.clusters.forEach((cl, idx) => {
          if (cl.w < (st.clusters[lo] as Cluster).w) lo = idx;
        });
        st.clusters[lo] = fresh;
      }
    }
  }

  statsState(): Default3Stats {
    const st = this.#stats;
    return {
      v2: this.#v2.statsState(), rr: st.rr.slice(), af: st.af, stateBeats: st.stateBeats,
      clusters: st.clusters.map((c) => ({ q: c.q.slice(), w: c.w, pre: c.pre, post: c.post, amp: c.amp })),
    };
  }

  restoreStats(state: unknown): void {
    const st = state as Default3Stats;
    if (!st || !Array.isArray(st.rr) || !Array.isArray(st.clusters) || typeof st.af !== 'number' || typeof st.stateBeats !== 'number') {
      throw new TypeError('default-v3: bad feature state');
    }
    this.#v2.restoreStats(st.v2);
    this.#stats = {
      rr: st.rr.slice(), af: st.af, stateBeats: st.stateBeats,
      clusters: st.clusters.map((c) => ({ q: Array.from(c.q), w: c.w, pre: c.pre, post: c.post, amp: c.amp })),
    };
  }
}
