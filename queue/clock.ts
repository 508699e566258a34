/**
 * One time base for the whole platform: the Redis server's clock. Gateways and workers (in guests
 * whose clocks drift, or get stepped after a pause or migration) stamp events with `now()`, so
 * latencies computed across machines are not skewed by each machine's clock error.
 *
 * NTP-style estimate: read the local clock (t0), send TIME, read it again (t1). The server read its
 * clock somewhere in [t0, t1], so offset = server - (t0 + t1) / 2 is off by at most (t1 - t0) / 2.
 * Of several samples, the one with the shortest round trip gives the tightest bound.
 *
 * The local clock is `performance.timeOrigin + performance.now()`: Date.now() at process start
 * advanced by the monotonic clock, with sub-millisecond resolution and no jumps between
 * refreshes. It drifts from Date.now() only if the system wall clock is stepped; the offset
 * absorbs that at the next refresh, since the goal is Redis's time, not this machine's.
 */
import type { Redis } from 'ioredis';
import { QueueError } from './errors.js';

/** One TIME round trip. t0 and t1 are on the local clock (ms); serverMs is Redis's TIME in ms. */
export interface ClockSample {
  t0: number;
  t1: number;
  serverMs: number;
}

export interface ClockEstimate {
  /** Server time minus local time, ms. */
  offsetMs: number;
  /** Half-width of the interval the true offset is known to lie in, ms. */
  uncertaintyMs: number;
  /** Round trip of the sample the estimate rests on, ms. */
  roundTripMs: number;
  /** How many samples were taken. */
  samples: number;
  /** Local clock time (ms) the estimate refers to (the chosen sample's midpoint). */
  at: number;
}

/** TIME reports whole microseconds, so the server's reading may be up to 1 µs early. */
const TIME_RESOLUTION_MS = 0.001;

/**
 * Pure: the estimate from the sample with the smallest round trip. The interval the offset lies
 * in is [server - t1, server + resolution - t0]; offset is its midpoint, uncertainty its half-width
 * (so (t1 - t0) / 2 plus half a microsecond for TIME's truncation).
 */
export function offsetFromSamples(samples: readonly ClockSample[]): ClockEstimate {
  let best: ClockSample | null = null;
  for (const sample of samples) {
    if (!(Number.isFinite(sample.t0) && Number.isFinite(sample.t1) && Number.isFinite(sample.serverMs)) || sample.t1 < sample.t0) {
      throw new QueueError('CLOCK_SAMPLE', `invalid clock sample ${JSON.stringify(sample)}`);
    }
    if (best === null || sample.t1 - sample.t0 < best.t1 - best.t0) best = sample;
  }
  if (best === null) throw new QueueError('CLOCK_SAMPLE', 'no clock samples');
  const low = best.serverMs - best.t1;
  const high = best.serverMs + TIME_RESOLUTION_MS - best.t0;
  return {
    offsetMs: (low + high) / 2,
    uncertaintyMs: (high - low) / 2,
    roundTripMs: best.t1 - best.t0,
    samples: samples.length,
    at: (best.t0 + best.t1) / 2,
  };
}

export interface ClockState {
  offsetMs: number;
  uncertaintyMs: number;
  /** Local clock time (ms) the uncertainty refers to. */
  at: number;
}

/**
 * Pure: folds a new measurement into the running estimate without moving further than the
 * evidence justifies. The previous interval is widened by the largest drift allowed since it was
 * made; if it overlaps the new one, the true offset is in both, so the result is the middle of the
 * overlap (a move of at most the widened previous uncertainty). If they do not overlap, the old
 * estimate is disproven (a clock was stepped, the guest was paused, or drift exceeded the bound)
 * and the new measurement is taken as is: `stepped` is true.
 */
export function mergeEstimate(previous: ClockState | null, next: ClockState, maxDriftPpm: number): ClockState & { stepped: boolean } {
  if (previous === null) return { ...next, stepped: false };
  const widened = previous.uncertaintyMs + Math.abs(next.at - previous.at) * maxDriftPpm * 1e-6;
  const low = Math.max(previous.offsetMs - widened, next.offsetMs - next.uncertaintyMs);
  const high = Math.min(previous.offsetMs + widened, next.offsetMs + next.uncertaintyMs);
  if (low > high) return { ...next, stepped: true };
  return { offsetMs: (low + high) / 2, uncertaintyMs: Math.max((high - low) / 2, TIME_RESOLUTION_MS / 2), at: next.at, stepped: false };
}

export interface RedisClockOptions {
  /** TIME round trips per estimate (default 8). */
  samples?: number;
  /** Re-estimate every this many ms (default 10 s); 0 disables refreshing. */
  refreshMs?: number;
  /** Largest rate difference assumed between the two clocks, in parts per million (default 500, NTP's bound). */
  maxDriftPpm?: number;
  /** Give up on one estimate after this long (default 5 s). */
  timeoutMs?: number;
}

const localNow = (): number => performance.timeOrigin + performance.now();

export class RedisClock {
  readonly #redis: Redis;
  readonly #samples: number;
  readonly #refreshMs: number;
  readonly #maxDriftPpm: number;
  readonly #timeoutMs: number;
  #state: ClockState | null = null;
  #starting: Promise<void> | null = null;
  #measuring: Promise<ClockEstimate> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #steps = 0;
  #lastError: Error | null = null;

  /** `redis` stays the caller's: close() does not disconnect it. */
  constructor(redis: Redis, { samples = 8, refreshMs = 10_000, maxDriftPpm = 500, timeoutMs = 5000 }: RedisClockOptions = {}) {
    if (!(Number.isInteger(samples) && samples >= 1)) throw new QueueError('CLOCK_OPTIONS', `samples must be a positive integer, got ${samples}`);
    if (!(refreshMs >= 0)) throw new QueueError('CLOCK_OPTIONS', `refreshMs must be >= 0, got ${refreshMs}`);
    if (!(maxDriftPpm >= 0)) throw new QueueError('CLOCK_OPTIONS', `maxDriftPpm must be >= 0, got ${maxDriftPpm}`);
    if (!(timeoutMs > 0)) throw new QueueError('CLOCK_OPTIONS', `timeoutMs must be > 0, got ${timeoutMs}`);
    this.#redis = redis;
    this.#samples = samples;
    this.#refreshMs = refreshMs;
    this.#maxDriftPpm = maxDriftPpm;
    this.#timeoutMs = timeoutMs;
  }

  /** Makes the first estimate, then refreshes in the background. Idempotent; may be retried after a failure. */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new QueueError('CLOCK_CLOSED', 'the Redis clock is closed'));
    this.#starting ??= (async () => {
      try {
        await this.estimate();
      } catch (error) {
        this.#starting = null;
        throw error;
      }
      this.#schedule();
    })();
    return this.#starting;
  }

  /** Redis's time now, in ms since the epoch (fractional). */
  now(): number {
    if (this.#state === null) throw new QueueError('CLOCK_NOT_STARTED', 'RedisClock.now() before the first estimate (await start())');
    return localNow() + this.#state.offsetMs;
  }

  /** Server minus local clock (see the module comment for which local clock), ms. */
  get offsetMs(): number {
    if (this.#state === null) throw new QueueError('CLOCK_NOT_STARTED', 'no clock estimate yet (await start())');
    return this.#state.offsetMs;
  }

  /** How far now() may be off right now: the estimate's bound plus the drift allowed since it was made. */
  get uncertaintyMs(): number {
    if (this.#state === null) throw new QueueError('CLOCK_NOT_STARTED', 'no clock estimate yet (await start())');
    return this.#state.uncertaintyMs + Math.max(0, localNow() - this.#state.at) * this.#maxDriftPpm * 1e-6;
  }

  /** Times an estimate contradicted the previous one and was adopted outright. */
  get steps(): number {
    return this.#steps;
  }

  /** The last background refresh failure (null once a refresh succeeds). */
  get lastError(): Error | null {
    return this.#lastError;
  }

  /**
   * Measures now (coalescing with a measurement already running), folds the result into the
   * clock, and returns the fresh measurement itself. Rejects with CLOCK_SYNC if TIME fails.
   */
  estimate(): Promise<ClockEstimate> {
    this.#measuring ??= this.#measure().finally(() => {
      this.#measuring = null;
    });
    return this.#measuring;
  }

  /** Stops refreshing and waits for a measurement in flight. Leaves the Redis connection open. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#measuring?.catch(() => undefined);
  }

  async #measure(): Promise<ClockEstimate> {
    const samples: ClockSample[] = [];
    // Sequential, not pipelined: pipelining would queue later samples behind earlier ones.
    for (let i = 0; i < this.#samples; i++) samples.push(await this.#sample());
    const measured = offsetFromSamples(samples);
    const merged = mergeEstimate(this.#state, measured, this.#maxDriftPpm);
    if (merged.stepped) this.#steps++;
    this.#state = { offsetMs: merged.offsetMs, uncertaintyMs: merged.uncertaintyMs, at: merged.at };
    return measured;
  }

  async #sample(): Promise<ClockSample> {
    let timeout: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timeout = setTimeout(() => reject(new QueueError('CLOCK_SYNC', `Redis TIME took longer than ${this.#timeoutMs} ms`)), this.#timeoutMs);
      timeout.unref();
    });
    try {
      const t0 = localNow();
      const command = this.#redis.time();
      // If the timeout wins, a later failure of the abandoned command must not go unhandled.
      command.catch(() => undefined);
      const reply = await Promise.race([command, timedOut]);
      const t1 = localNow();
      const [seconds, micros] = (reply as unknown[]).map(Number);
      if (seconds === undefined || micros === undefined || !Number.isFinite(seconds) || !Number.isFinite(micros)) {
        throw new QueueError('CLOCK_SYNC', `unexpected TIME reply ${JSON.stringify(reply)}`);
      }
      return { t0, t1, serverMs: seconds * 1000 + micros / 1000 };
    } catch (error) {
      if (error instanceof QueueError) throw error;
      throw new QueueError('CLOCK_SYNC', `Redis TIME failed: ${(error as Error).message}`, { cause: error });
    } finally {
      clearTimeout(timeout);
    }
  }

  #schedule(): void {
    if (this.#closed || this.#refreshMs === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.estimate().then(
        () => {
          this.#lastError = null;
        },
        (error: unknown) => {
          // Keep the last estimate (its uncertainty keeps growing) and try again next period.
          this.#lastError = error instanceof Error ? error : new Error(String(error));
        },
      ).finally(() => this.#schedule());
    }, this.#refreshMs);
    // Clock upkeep must never keep the process alive.
    this.#timer.unref();
  }
}
