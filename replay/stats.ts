/**
 * Counters for a replay. Exact round trips are kept (a Float64Array grown by doubling: 8 bytes per
 * packet) for the final percentiles; a log-bucket histogram (1 % wide) gives the live p99 for the
 * progress display without sorting on every refresh.
 */
import { mean, quantileSorted } from 'simple-statistics';

export class SampleStore {
  private data = new Float64Array(1024);
  private length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = value;
  }

  get count(): number {
    return this.length;
  }

  sortedCopy(): number[] {
    return Array.from(this.data.subarray(0, this.length).slice().sort());
  }
}

const HISTOGRAM_MIN_MS = 0.01;
const HISTOGRAM_GROWTH = Math.log(1.01);
const HISTOGRAM_BUCKETS = 2048; // 0.01 ms · 1.01^2047 ≈ 7 · 10^6 ms

export class LogHistogram {
  private readonly counts = new Uint32Array(HISTOGRAM_BUCKETS);
  private total = 0;
  private maxValue = 0;

  record(ms: number): void {
    const bucket = ms <= HISTOGRAM_MIN_MS ? 0 : Math.min(HISTOGRAM_BUCKETS - 1, Math.ceil(Math.log(ms / HISTOGRAM_MIN_MS) / HISTOGRAM_GROWTH));
    this.counts[bucket] = (this.counts[bucket] as number) + 1;
    this.total++;
    if (ms > this.maxValue) this.maxValue = ms;
  }

  get count(): number {
    return this.total;
  }

  get max(): number | null {
    return this.total === 0 ? null : this.maxValue;
  }

  /** The bucket upper bound at quantile p (within 1 %), or null when empty. */
  quantile(p: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(p * this.total));
    for (let i = 0, seen = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) return Math.min(this.maxValue, HISTOGRAM_MIN_MS * Math.exp(i * HISTOGRAM_GROWTH));
    }
    return this.maxValue;
  }
}

export interface Distribution {
  count: number;
  mean: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

export function distribution(store: SampleStore): Distribution {
  const sorted = store.sortedCopy();
  if (sorted.length === 0) return { count: 0, mean: null, p50: null, p95: null, p99: null, max: null };
  return {
    count: sorted.length,
    mean: round3(mean(sorted)),
    p50: round3(quantileSorted(sorted, 0.5)),
    p95: round3(quantileSorted(sorted, 0.95)),
    p99: round3(quantileSorted(sorted, 0.99)),
    max: round3(sorted[sorted.length - 1] as number),
  };
}
