/**
 * The outer retry loop around every S3 request of the episode store. The AWS SDK retries a few
 * errors itself, briefly; this loop keeps going until a deadline, so an S3 store that is down (connection
 * refused, which the SDK does not retry) or restarting costs latency, never an episode.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageError } from '../errors.js';

export interface RetryOptions {
  /** Give up this many ms after the first attempt (default 120000). */
  deadlineMs?: number;
  /** Backoff before the second attempt (default 100); doubles per attempt. */
  baseDelayMs?: number;
  /** Longest backoff between attempts (default 5000). */
  maxDelayMs?: number;
}

export type ResolvedRetry = Required<RetryOptions>;

export const DEFAULT_RETRY: ResolvedRetry = { deadlineMs: 120_000, baseDelayMs: 100, maxDelayMs: 5_000 };

/**
 * Time an attempt started at (or after) the deadline still gets: without it the last try after a
 * long backoff would be aborted at once, and a store that just came back would be reported down.
 */
const MIN_ATTEMPT_MS = 1_000;

export function resolveRetry(options: RetryOptions = {}): ResolvedRetry {
  const resolved = { ...DEFAULT_RETRY, ...options };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new StorageError('S3_CONFIG', `retry.${name} must be a non-negative number of ms, not ${value}`);
    }
  }
  return resolved;
}

/** Counts kept across the requests of one store call, for the latency record. */
export interface RetryStats {
  requests: number;
  retries: number;
}

/**
 * Runs `attempt` until it resolves or the deadline passes; then throws what `giveUp` makes of the
 * last error. Every error counts as retryable: the attempts are single S3 requests whose "not found"
 * answers the caller turns into values before they get here.
 */
export async function retrying<T>(
  attempt: (signal: AbortSignal) => Promise<T>,
  options: ResolvedRetry,
  stats: RetryStats,
  giveUp: (error: unknown, attempts: number) => Error,
  random: () => number = Math.random,
): Promise<T> {
  const deadline = Date.now() + options.deadlineMs;
  for (let attempts = 1; ; attempts++) {
    stats.requests += 1;
    // Bounded by the deadline: a store that accepts connections and never answers must not hang a write.
    const signal = AbortSignal.timeout(Math.max(MIN_ATTEMPT_MS, deadline - Date.now()));
    try {
      return await attempt(signal);
    } catch (error) {
      const left = deadline - Date.now();
      if (left <= 0) throw giveUp(error, attempts);
      // Exponential backoff with "equal jitter": never zero, and workers that failed together spread out.
      const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempts - 1));
      const delay = ceiling / 2 + random() * (ceiling / 2);
      await sleep(Math.min(left, delay));
      stats.retries += 1;
    }
  }
}

/** A short, log-safe description of an S3 or network error (no request bodies, no credentials). */
export function describeS3Error(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const parts = [error.name !== 'Error' ? error.name : null, typeof code === 'string' ? code : null, status !== undefined ? `HTTP ${status}` : null]
      .filter((part): part is string => part !== null);
    const message = error.message.length > 200 ? `${error.message.slice(0, 200)}…` : error.message;
    return parts.length > 0 ? `${parts.join(' ')}: ${message}` : message;
  }
  return String(error);
}
