/**
 * Streaming QRS detector (one lead, mV in, absolute beat sample indices out).
 *
 * Algorithm: the Hamilton-Tompkins variant of Pan-Tompkins, following Hamilton's open-source OSEA
 * detector (qrsdet2) with Pan-Tompkins' T-wave rule added, re-derived for any sampling rate (tuned at
 * 360 Hz). Chosen because it is the best-documented single-lead detector of that family (published
 * Se 99.7 %, +P 99.8 % on MIT-BIH), is causal, needs O(1) work per sample and a few kB of state, and
 * every decision can be explained; learned detectors would need weights, a runtime and more time
 * per packet than the platform's budget.
 *
 *   x ─► low-pass (two cascaded 28 ms moving averages: triangular FIR, first zero 36 Hz)
 *     ─► high-pass (centre sample minus a 125 ms moving average, ~3.5 Hz) = y
 *     ─► derivative d = y[n] - y[n-4] ─► |d| ─► 100 ms moving-window integrator m.
 *
 * All filters are linear-phase FIRs, so every stage has an exact integer delay and beat positions
 * map back to input samples. Peaks of m are found as in OSEA (a local maximum confirmed when m falls
 * below half of it or 95 ms have passed), then held 235 ms in case a bigger one follows (refractory,
 * OSEA's "pre-blank", 200 ms there: 235 ms stops sharp P waves of record 108 from being counted as
 * a second beat 210 ms before the QRS; MIT-BIH has no RR interval under 250 ms outside VF). A peak is
 * a QRS when it exceeds
 *   thr = noiseMedian + 0.3125 (qrsMedian - noiseMedian)
 * (medians of the last 8 QRS and 8 noise peaks), it is not a T wave (a peak within 360 ms of the
 * previous QRS whose largest slope |d| is below half that QRS's is a T wave: Pan-Tompkins), and it is
 * not a baseline step (OSEA's BLSCheck: a QRS has a rising and a falling slope, each at least 1/8 of
 * the other, within 150 ms). Other peaks update the noise estimate; the largest of them at least
 * 360 ms after the last QRS is kept for searchback, which accepts it when no QRS has come for 1.5
 * median RR intervals (capped, see Delay) and it exceeds thr/2. After 8 s without a QRS the QRS
 * estimate is reset from the per-second maxima of m (OSEA).
 *
 * Start-up: the first second only collects peaks; at 1 s the QRS estimate is set from the largest
 * m so far and the collected peaks are classified in order, so beats of the first second are found
 * too (returned about 1 s late).
 *
 * Fiducial: the reported sample is the largest |y| in the 200 ms before (and 25 ms after) the
 * integrator peak, mapped back by the filter delay (31 samples at 360 Hz): the R peak, or the main
 * deflection of a QS or wide beat. On MIT-BIH (DS1 + paced) the offset from the reference annotation
 * of matched beats has median 0 and 1st/99th percentiles -6/+18 samples.
 *
 * Delay: a beat is returned at most MAX_DELAY_MS = 1.5 s after its reported sample (measured as the
 * index of the sample whose push returns it). Ordinary beats come ~0.35-0.55 s after the R peak
 * (integrator lag + up to 95 ms confirmation + 235 ms hold); searchback beats later, and the
 * searchback interval is capped (1.5 RR, at most ~1.6 s after the previous QRS's integrator peak at 360 Hz) so that
 * they stay within the bound; a beat that would still come later is dropped (only a pathological,
 * steadily rising m could cause that). Beats are reported in strictly increasing order, each once.
 *
 * Memory: fixed-size rings (1024 samples = 2.8 s at 360 Hz of y, |d| and d, filter delay lines)
 * plus 8-entry peak/RR buffers and scalars, about 26 kB; `toState()` copies exactly these.
 *
 * Gaps: `restart(at)` drops the filter memory, the peak being tracked, the held peak and the
 * searchback candidate (so a beat in the last ~0.4 s before a gap is lost), keeps the QRS/noise/RR
 * estimates, and primes the filters with the first new sample so the step does not look like a QRS.
 * Non-finite samples repeat the previous sample.
 *
 * Everything is decided sample by sample from the state, so the output does not depend on how
 * the stream is split into pushes, and `toState`/`fromState` restore the exact state.
 */

export interface QrsDetectorOptions {
  /** Sampling rate in Hz (default 360). Rates from 100 to 1000 Hz are accepted. */
  sampleRate?: number;
}

/** Maximum time from a beat's reported sample to the end of the push that returns it. */
export const MAX_DELAY_MS = 1500;

// Detection parameters (see the header comment).
const HOLD_MS = 235; // refractory hold of an integrator peak ("pre-blank"; OSEA uses 200 ms)
const T_WAVE_MS = 360; // a peak this soon after a QRS may be a T wave
const T_SLOPE_RATIO = 0.5; // ... and is one when its slope is below this fraction of the QRS slope
const TH = 0.3125; // detection threshold position between noise and QRS medians (OSEA)
const SEARCHBACK_FRACTION = 0.5; // searchback accepts peaks above this fraction of the threshold
const HIST = 1024; // ring length (power of two) of y and |d| history
const HMASK = HIST - 1;
const NBUF = 8; // length of the QRS / noise / RR peak buffers
const MAXLEARN = 16; // peaks kept during the start-up second

/** Plain, structured-clone-able detector state. */
export interface QrsDetectorState {
  version: 1;
  sampleRate: number;
  /** Scalar state (see the `S_*` indices in the source). */
  scalars: Float64Array;
  /** Filter delay lines: lp1, lp2, hp, deriv, mwi (concatenated). */
  lines: Float64Array;
  /** Band-passed signal y by absolute index % 1024. */
  yHist: Float64Array;
  /** |d| by absolute index % 1024. */
  dHist: Float64Array;
  /** Derivative of the low-passed signal (for the baseline-shift check), by absolute index % 1024. */
  rHist: Float64Array;
  qrsBuf: Float64Array;
  noiseBuf: Float64Array;
  rrBuf: Float64Array;
  /** Per-second maxima of m over the last 8 s (reset source). */
  secMax: Float64Array;
  /** Peaks (amplitude, time) collected during start-up. */
  learn: Float64Array;
}

// Scalar state indices.
const S_END = 0; // absolute index of the next sample
const S_PRIMED = 1; // filters primed since last (re)start (0/1)
const S_LP1SUM = 2;
const S_LP2SUM = 3;
const S_HPSUM = 4;
const S_MWISUM = 5;
const S_LASTM = 6;
const S_PKMAX = 7;
const S_PKMAXT = 8;
const S_TSINCEMAX = 9;
const S_HOLDAMP = 10; // pre-blank held peak amplitude (0 none)
const S_HOLDT = 11;
const S_HOLDCNT = 12;
const S_LEARNING = 13; // 1 while in start-up
const S_LEARNEND = 14; // absolute index at which start-up ends
const S_LEARNN = 15; // number of peaks in learn
const S_LEARNMAX = 16; // max m during start-up
const S_THR = 17;
const S_LASTBEATT = 18; // m-time of last QRS peak (-inf if none): stored as NaN when none
const S_LASTSLOPE = 19;
const S_SBAMP = 20;
const S_SBT = 21;
const S_RRMED = 22;
const S_LASTOUT = 23; // last reported sample (-1)
const S_SECMAX = 24; // running max of m in the current second
const S_SECCNT = 25; // samples into the current second
const S_SECN = 26; // number of valid entries in secMax
const S_SECI = 27; // next write position in secMax
const S_SBSLOPE = 28;
const S_STARTED = 29; // absolute index of the first sample after the last (re)start
const S_PLP = 30; // ring positions of the delay lines
const S_PHP = 31;
const S_PD = 32;
const S_PM = 33;
const S_H = 34; // write position in the history rings (= end % HIST)
const S_SBDUE = 35; // m-time after which searchback / the 8 s reset are checked
const N_SCALARS = 36;

function median8(buf: Float64Array, scratch: Float64Array): number {
  scratch.set(buf);
  scratch.sort();
  return scratch[NBUF >> 1] as number;
}

export class QrsDetector {
  readonly sampleRate: number;
  // Lengths in samples.
  readonly #lpLen: number;
  readonly #hpLen: number;
  readonly #dLen: number;
  readonly #mwiLen: number;
  readonly #delayY: number; // input index = y index - delayY
  readonly #ms95: number;
  readonly #ms150: number;
  readonly #hold: number;
  readonly #ms220: number;
  readonly #ms360: number;
  readonly #msT: number;
  readonly #sec: number;
  readonly #maxSb: number;
  readonly #fidLag: number; // largest distance from an integrator peak back to its fiducial
  readonly #maxDelay: number;

  #s: Float64Array;
  #lines: Float64Array;
  #yHist: Float64Array;
  #dHist: Float64Array;
  #rHist: Float64Array;
  #qrsBuf: Float64Array;
  #noiseBuf: Float64Array;
  #rrBuf: Float64Array;
  #secMax: Float64Array;
  #learn: Float64Array;
  #scratch = new Float64Array(NBUF);
  #out: number[] = [];
  // Offsets of each delay line in #lines.
  readonly #oLp1: number;
  readonly #oLp2: number;
  readonly #oHp: number;
  readonly #oD: number;
  readonly #oM: number;

  constructor(options: QrsDetectorOptions = {}) {
    const fs = options.sampleRate ?? 360;
    if (!Number.isFinite(fs) || fs < 100 || fs > 1000) throw new RangeError(`unsupported sample rate ${fs}`);
    this.sampleRate = fs;
    const ms = (t: number): number => Math.max(1, Math.round((t * fs) / 1000));
    this.#lpLen = ms(28); // 10 at 360 Hz: first zero at 36 Hz
    this.#hpLen = ms(125) | 1; // odd, 45 at 360 Hz
    this.#dLen = ms(11); // 4 at 360 Hz
    this.#mwiLen = ms(100); // 29 at 360 Hz
    this.#delayY = (this.#lpLen - 1) + (this.#hpLen - 1) / 2;
    this.#ms95 = ms(95);
    this.#ms150 = ms(150);
    this.#hold = ms(HOLD_MS);
    this.#ms220 = ms(220);
    this.#ms360 = ms(360);
    this.#msT = ms(T_WAVE_MS);
    this.#sec = Math.round(fs);
    // Cap on the searchback interval so that a searchback beat (at least 360 ms after the previous
    // QRS) is returned within MAX_DELAY_MS of its R peak.
    this.#fidLag = (this.#dLen >> 1) + 2 * this.#mwiLen + this.#delayY;
    this.#maxDelay = ms(MAX_DELAY_MS);
    this.#maxSb = this.#maxDelay + this.#ms360 - this.#fidLag - 1;
    this.#oLp1 = 0;
    this.#oLp2 = this.#oLp1 + this.#lpLen;
    this.#oHp = this.#oLp2 + this.#lpLen;
    this.#oD = this.#oHp + this.#hpLen;
    this.#oM = this.#oD + this.#dLen;
    this.#lines = new Float64Array(this.#oM + this.#mwiLen);
    this.#s = new Float64Array(N_SCALARS);
    this.#yHist = new Float64Array(HIST);
    this.#dHist = new Float64Array(HIST);
    this.#rHist = new Float64Array(HIST);
    this.#qrsBuf = new Float64Array(NBUF);
    this.#noiseBuf = new Float64Array(NBUF);
    this.#rrBuf = new Float64Array(NBUF);
    this.#secMax = new Float64Array(NBUF);
    this.#learn = new Float64Array(2 * MAXLEARN);
    const s = this.#s;
    s[S_LASTBEATT] = NaN;
    s[S_LASTOUT] = -1;
    s[S_RRMED] = this.#sec;
    this.#rrBuf.fill(this.#sec);
    this.#beginLearning(0);
    this.#setSbDue();
  }

  get end(): number {
    return this.#s[S_END] as number;
  }

  push(samplesMv: Float32Array): number[] {
    this.#out = [];
    this.#run(samplesMv);
    return this.#out;
  }

  flush(): number[] {
    this.#out = [];
    const s = this.#s;
    // A peak of m still rising or not yet confirmed: it competes with the held peak as in push().
    const pk = s[S_PKMAX] as number;
    if (pk > 0) {
      if (pk > (s[S_HOLDAMP] as number)) {
        s[S_HOLDAMP] = pk;
        s[S_HOLDT] = s[S_PKMAXT] as number;
      }
      s[S_PKMAX] = 0;
      s[S_TSINCEMAX] = 0;
    }
    const held = s[S_HOLDAMP] as number;
    s[S_HOLDAMP] = 0;
    if (s[S_LEARNING] === 1) {
      if (held > 0) this.#learnPeak(held, s[S_HOLDT] as number);
      this.#endLearning();
    } else if (held > 0) {
      this.#classify(held, s[S_HOLDT] as number);
    }
    // A searchback candidate is not accepted here: its interval has not elapsed.
    s[S_SBAMP] = 0;
    return this.#out;
  }

  restart(atSample: number): void {
    const s = this.#s;
    if (!Number.isInteger(atSample) || atSample <= (s[S_END] as number)) {
      throw new RangeError(`restart(${atSample}) must be an integer after the current end ${s[S_END]}`);
    }
    s[S_END] = atSample;
    s[S_PRIMED] = 0;
    s[S_STARTED] = atSample;
    // Drop pending candidates and peak tracking; keep thresholds and RR statistics.
    s[S_LASTM] = 0;
    s[S_PKMAX] = 0;
    s[S_TSINCEMAX] = 0;
    s[S_HOLDAMP] = 0;
    s[S_HOLDCNT] = 0;
    s[S_SBAMP] = 0;
    s[S_LASTBEATT] = NaN;
    s[S_SECMAX] = 0;
    s[S_SECCNT] = 0;
    s[S_H] = atSample % HIST;
    if (s[S_LEARNING] === 1) this.#beginLearning(atSample);
    else s[S_LEARNEND] = atSample; // the 8 s reset counts from here
    this.#setSbDue();
  }

  toState(): QrsDetectorState {
    return {
      version: 1,
      sampleRate: this.sampleRate,
      scalars: this.#s.slice(),
      lines: this.#lines.slice(),
      yHist: this.#yHist.slice(),
      dHist: this.#dHist.slice(),
      rHist: this.#rHist.slice(),
      qrsBuf: this.#qrsBuf.slice(),
      noiseBuf: this.#noiseBuf.slice(),
      rrBuf: this.#rrBuf.slice(),
      secMax: this.#secMax.slice(),
      learn: this.#learn.slice(),
    };
  }

  static fromState(state: QrsDetectorState): QrsDetector {
    if (state.version !== 1) throw new Error(`unsupported QrsDetectorState version ${String(state.version)}`);
    const d = new QrsDetector({ sampleRate: state.sampleRate });
    const put = (dst: Float64Array, src: Float64Array, name: string): void => {
      if (!(src instanceof Float64Array) || src.length !== dst.length) throw new Error(`QrsDetectorState.${name} has the wrong shape`);
      dst.set(src);
    };
    put(d.#s, state.scalars, 'scalars');
    put(d.#lines, state.lines, 'lines');
    put(d.#yHist, state.yHist, 'yHist');
    put(d.#dHist, state.dHist, 'dHist');
    put(d.#rHist, state.rHist, 'rHist');
    put(d.#qrsBuf, state.qrsBuf, 'qrsBuf');
    put(d.#noiseBuf, state.noiseBuf, 'noiseBuf');
    put(d.#rrBuf, state.rrBuf, 'rrBuf');
    put(d.#secMax, state.secMax, 'secMax');
    put(d.#learn, state.learn, 'learn');
    return d;
  }

  // ---------------------------------------------------------------------------------------------

  #beginLearning(at: number): void {
    const s = this.#s;
    s[S_LEARNING] = 1;
    s[S_LEARNEND] = at + this.#sec;
    s[S_LEARNN] = 0;
    s[S_LEARNMAX] = 0;
    s[S_STARTED] = at;
  }

  #prime(x0: number): void {
    const x = x0 > -1e6 && x0 < 1e6 ? x0 : 0;
    // Fill every delay line with the steady-state response to a constant input x, so that the
    // first samples after a (re)start do not produce a step.
    const L = this.#lines;
    const s = this.#s;
    L.fill(x, this.#oLp1, this.#oLp1 + this.#lpLen);
    L.fill(x, this.#oLp2, this.#oLp2 + this.#lpLen);
    L.fill(x, this.#oHp, this.#oHp + this.#hpLen);
    L.fill(0, this.#oD, this.#oD + this.#dLen);
    L.fill(0, this.#oM, this.#oM + this.#mwiLen);
    s[S_LP1SUM] = x * this.#lpLen;
    s[S_LP2SUM] = x * this.#lpLen;
    s[S_HPSUM] = x * this.#hpLen;
    s[S_MWISUM] = 0;
    s[S_PRIMED] = 1;
  }

  /** The per-sample loop: filters and peak finder on locals, decisions in methods. */
  #run(samples: Float32Array): void {
    const s = this.#s;
    const L = this.#lines;
    const yHist = this.#yHist;
    const dHist = this.#dHist;
    const rHist = this.#rHist;
    const lpLen = this.#lpLen;
    const hpLen = this.#hpLen;
    const dLen = this.#dLen;
    const mwiLen = this.#mwiLen;
    const oLp1 = this.#oLp1;
    const oLp2 = this.#oLp2;
    const oHp = this.#oHp;
    const oD = this.#oD;
    const oM = this.#oM;
    const hpHalf = (hpLen - 1) >> 1;
    const ms95 = this.#ms95;
    const hold = this.#hold;
    const sec = this.#sec;
    const settle = this.#delayY + mwiLen;
    const len = samples.length;
    if (len === 0) return;
    if (s[S_PRIMED] === 0) this.#prime(samples[0] as number);
    const invLp = 1 / lpLen;
    const invHp = 1 / hpLen;
    const invM = 1 / mwiLen;
    // Hot scalars live in locals for the loop and are written back at its end (methods called
    // inside the loop do not touch them, except S_END, which is stored before each call).
    let n = s[S_END] as number;
    let sum1 = s[S_LP1SUM] as number;
    let sum2 = s[S_LP2SUM] as number;
    let hsum = s[S_HPSUM] as number;
    let msum = s[S_MWISUM] as number;
    let pLp = s[S_PLP] as number;
    let pHp = s[S_PHP] as number;
    let pD = s[S_PD] as number;
    let pM = s[S_PM] as number;
    let h = s[S_H] as number;
    let lastM = s[S_LASTM] as number;
    let pkMax = s[S_PKMAX] as number;
    let pkMaxT = s[S_PKMAXT] as number;
    let tsm = s[S_TSINCEMAX] as number;
    let holdAmp = s[S_HOLDAMP] as number;
    let holdT = s[S_HOLDT] as number;
    let holdCnt = s[S_HOLDCNT] as number;
    let secMax = s[S_SECMAX] as number;
    let secCnt = s[S_SECCNT] as number;
    const peaksFrom = (s[S_STARTED] as number) + settle;
    for (let i = 0; i < len; i++) {
      let x = samples[i] as number;
      // A non-finite or absurd sample (NaN from a decoder, say) repeats the previous one, so it
      // cannot poison the running sums.
      if (!(x > -1e6 && x < 1e6)) x = L[oLp1 + (pLp === 0 ? lpLen - 1 : pLp - 1)] as number;
      // Low-pass: two cascaded moving averages (delay lpLen - 1).
      sum1 += x - (L[oLp1 + pLp] as number);
      L[oLp1 + pLp] = x;
      const a = sum1 * invLp;
      sum2 += a - (L[oLp2 + pLp] as number);
      L[oLp2 + pLp] = a;
      const lp = sum2 * invLp;
      if (++pLp === lpLen) pLp = 0;
      // High-pass: centre sample minus moving average (delay (hpLen-1)/2).
      hsum += lp - (L[oHp + pHp] as number);
      L[oHp + pHp] = lp;
      let c = pHp - hpHalf;
      if (c < 0) c += hpLen;
      const y = (L[oHp + c] as number) - hsum * invHp;
      if (++pHp === hpLen) pHp = 0;
      // Derivative over dLen samples.
      const d = y - (L[oD + pD] as number);
      L[oD + pD] = y;
      if (++pD === dLen) pD = 0;
      const ad = d < 0 ? -d : d;
      // Moving-window integration.
      msum += ad - (L[oM + pM] as number);
      L[oM + pM] = ad;
      if (++pM === mwiLen) pM = 0;
      const m = msum * invM;
      yHist[h] = y;
      dHist[h] = ad;
      rHist[h] = d;
      h = (h + 1) & HMASK;
      const t = n++;

      // Per-second maxima of m (for the 8 s reset).
      if (m > secMax) secMax = m;
      if (++secCnt >= sec) {
        const si = s[S_SECI] as number;
        this.#secMax[si] = secMax;
        s[S_SECI] = si + 1 === NBUF ? 0 : si + 1;
        if ((s[S_SECN] as number) < NBUF) s[S_SECN] = (s[S_SECN] as number) + 1;
        secMax = 0;
        secCnt = 0;
      }

      // Don't look for peaks until the integrator holds real data.
      if (t < peaksFrom) {
        lastM = m;
        continue;
      }

      // Peak finder (OSEA Peak()).
      let pk = 0;
      let pkT = 0;
      if (tsm > 0) tsm++;
      if (m > lastM && m > pkMax) {
        pkMax = m;
        pkMaxT = t;
        if (m > 1e-6) tsm = 1;
      } else if (m < pkMax * 0.5 || tsm > ms95) {
        pk = pkMax;
        pkT = pkMaxT;
        pkMax = 0;
        tsm = 0;
      }
      lastM = m;

      // Hold a peak (pre-blank) in case a bigger one follows.
      let newAmp = 0;
      let newT = 0;
      if (pk > holdAmp) {
        holdAmp = pk;
        holdT = pkT;
        holdCnt = hold;
      } else if (holdAmp > 0 && --holdCnt <= 0) {
        newAmp = holdAmp;
        newT = holdT;
        holdAmp = 0;
      }

      if (s[S_LEARNING] === 1) {
        if (m > (s[S_LEARNMAX] as number)) s[S_LEARNMAX] = m;
        if (newAmp > 0) this.#learnPeak(newAmp, newT);
        if (n >= (s[S_LEARNEND] as number)) {
          s[S_END] = n;
          this.#endLearning();
        }
        continue;
      }
      if (newAmp > 0) {
        s[S_END] = n;
        this.#classify(newAmp, newT);
      }
      if (t > (s[S_SBDUE] as number)) {
        s[S_END] = n;
        this.#maybeSearchback(t);
      }
    }
    s[S_END] = n;
    s[S_LP1SUM] = sum1;
    s[S_LP2SUM] = sum2;
    s[S_HPSUM] = hsum;
    s[S_MWISUM] = msum;
    s[S_PLP] = pLp;
    s[S_PHP] = pHp;
    s[S_PD] = pD;
    s[S_PM] = pM;
    s[S_H] = h;
    s[S_LASTM] = lastM;
    s[S_PKMAX] = pkMax;
    s[S_PKMAXT] = pkMaxT;
    s[S_TSINCEMAX] = tsm;
    s[S_HOLDAMP] = holdAmp;
    s[S_HOLDT] = holdT;
    s[S_HOLDCNT] = holdCnt;
    s[S_SECMAX] = secMax;
    s[S_SECCNT] = secCnt;
  }

  /** Searchback and the 8 s reset (called only once the searchback interval has run out). */
  #maybeSearchback(n: number): void {
    const s = this.#s;
    const lastT = s[S_LASTBEATT] as number;
    if (lastT === lastT) {
      if ((s[S_SBAMP] as number) > (s[S_THR] as number) * SEARCHBACK_FRACTION) {
        this.#acceptSearchback();
        return;
      }
      if (n - lastT > 8 * this.#sec && (s[S_SECN] as number) >= NBUF) this.#resetFromSeconds(n);
    } else if (n - (s[S_LEARNEND] as number) > 8 * this.#sec && (s[S_SECN] as number) >= NBUF) {
      this.#resetFromSeconds(n);
    }
  }

  /** Sets the time after which searchback (or the reset) is checked each sample. */
  #setSbDue(): void {
    const s = this.#s;
    const lastT = s[S_LASTBEATT] as number;
    if (lastT === lastT) {
      let sbInt = Math.round(1.5 * (s[S_RRMED] as number));
      if (sbInt > this.#maxSb) sbInt = this.#maxSb;
      s[S_SBDUE] = lastT + sbInt;
    } else {
      s[S_SBDUE] = (s[S_LEARNEND] as number) + 8 * this.#sec;
    }
  }

  #learnPeak(amp: number, t: number): void {
    const s = this.#s;
    const ln = s[S_LEARNN] as number;
    if (ln < MAXLEARN) {
      this.#learn[2 * ln] = amp;
      this.#learn[2 * ln + 1] = t;
      s[S_LEARNN] = ln + 1;
    }
  }

  #resetFromSeconds(n: number): void {
    const s = this.#s;
    this.#qrsBuf.set(this.#secMax);
    this.#noiseBuf.fill(0);
    this.#updateThreshold();
    s[S_LASTBEATT] = NaN;
    s[S_SBAMP] = 0;
    s[S_LEARNEND] = n; // restart the 8 s count
    this.#setSbDue();
  }

  #endLearning(): void {
    const s = this.#s;
    s[S_LEARNING] = 0;
    const mx = s[S_LEARNMAX] as number;
    this.#qrsBuf.fill(mx);
    this.#noiseBuf.fill(0);
    this.#updateThreshold();
    const ln = s[S_LEARNN] as number;
    s[S_LEARNN] = 0;
    this.#setSbDue();
    for (let i = 0; i < ln; i++) this.#classify(this.#learn[2 * i] as number, this.#learn[2 * i + 1] as number);
  }

  #updateThreshold(): void {
    const q = median8(this.#qrsBuf, this.#scratch);
    const nm = median8(this.#noiseBuf, this.#scratch);
    this.#s[S_THR] = nm + TH * (q - nm);
  }

  /** Maximum |d| in the integration window ending at m-time t (the QRS slope). */
  #slope(t: number): number {
    let mx = 0;
    for (let i = t - this.#mwiLen + 1; i <= t; i++) {
      const v = this.#dHist[i % HIST] as number;
      if (v > mx) mx = v;
    }
    return mx;
  }

  /** OSEA BLSCheck on the derivative around the peak: true when it looks like a baseline shift. */
  #baselineShift(t: number): boolean {
    let mx = 0;
    let mn = 0;
    let mxt = 0;
    let mnt = 0;
    const from = t - this.#ms220 + 1;
    for (let i = from; i <= t; i++) {
      const v = this.#rHist[i % HIST] as number;
      if (v > mx) {
        mx = v;
        mxt = i;
      } else if (v < mn) {
        mn = v;
        mnt = i;
      }
    }
    mn = -mn;
    return !(mx > mn / 8 && mn > mx / 8 && Math.abs(mxt - mnt) < this.#ms150);
  }

  #classify(amp: number, t: number): void {
    const s = this.#s;
    const lastT = s[S_LASTBEATT] as number;
    const since = lastT === lastT ? t - lastT : Infinity;
    const slope = this.#slope(t);
    const isT = since < this.#msT && slope < T_SLOPE_RATIO * (s[S_LASTSLOPE] as number);
    if (!isT && amp > (s[S_THR] as number) && !this.#baselineShift(t)) {
      this.#accept(amp, t, slope, false);
    } else {
      this.#noiseBuf.copyWithin(1, 0, NBUF - 1);
      this.#noiseBuf[0] = amp;
      this.#updateThreshold();
      if (since >= this.#ms360 && amp > (s[S_SBAMP] as number)) {
        s[S_SBAMP] = amp;
        s[S_SBT] = t;
        s[S_SBSLOPE] = slope;
      }
    }
  }

  #acceptSearchback(): void {
    const s = this.#s;
    this.#accept(s[S_SBAMP] as number, s[S_SBT] as number, s[S_SBSLOPE] as number, true);
  }

  #accept(amp: number, t: number, slope: number, _searchback: boolean): void {
    const s = this.#s;
    this.#qrsBuf.copyWithin(1, 0, NBUF - 1);
    this.#qrsBuf[0] = amp;
    const lastT = s[S_LASTBEATT] as number;
    if (lastT === lastT) {
      const rr = t - lastT;
      this.#rrBuf.copyWithin(1, 0, NBUF - 1);
      this.#rrBuf[0] = rr;
      s[S_RRMED] = median8(this.#rrBuf, this.#scratch);
    }
    this.#updateThreshold();
    s[S_LASTBEATT] = t;
    s[S_LASTSLOPE] = slope;
    s[S_SBAMP] = 0;
    this.#setSbDue();
    // Fiducial: largest |y| in the QRS region before the integrator peak.
    const lag = this.#dLen >> 1;
    const from = Math.max(t - this.#fidLag + this.#delayY, (s[S_STARTED] as number), (s[S_END] as number) - HIST + 1);
    const to = Math.min(t - lag + (this.#mwiLen >> 2), (s[S_END] as number) - 1);
    let best = -1;
    let bestI = t - lag;
    for (let i = from; i <= to; i++) {
      const v = Math.abs(this.#yHist[i % HIST] as number);
      if (v > best) {
        best = v;
        bestI = i;
      }
    }
    const fiducial = bestI - this.#delayY;
    // Never report a beat later than the documented bound (only a pathological, slowly rising
    // integrator output could get here), nor out of order.
    if (fiducial > (s[S_LASTOUT] as number) && fiducial >= 0 && (s[S_END] as number) - 1 - fiducial <= this.#maxDelay) {
      s[S_LASTOUT] = fiducial;
      this.#out.push(fiducial);
    }
  }
}
