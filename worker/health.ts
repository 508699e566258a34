/**
 * What a worker tells the scheduler about how its packets fare, in each heartbeat: cumulative
 * counters and a histogram of service times (the scheduler takes differences between heartbeats,
 * as Prometheus does with its counters, so a missed heartbeat loses nothing), and a CPU probe.
 *
 * The probe times a fixed piece of arithmetic at every heartbeat. On a VM with CPU to spare it runs
 * as fast as it ever has; when something else takes the VM's CPU (a hog, or a quota the VM's own
 * work has exhausted) it is stretched by waits. Its slowdown (median of the last few runs over the
 * fastest) tells whether a VM without packets would be a good place for them again.
 */

import type { CpuWork } from './cpu-work.js';

/** Upper bounds of the service-time buckets (ms); one more bucket counts the rest. */
export const SERVICE_BOUNDS_MS = [50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1500, 2000, 3000, 5000] as const;

export interface WorkerHealth {
  /** Packets committed since the worker started (but those in `parked`). */
  packets: number;
  /**
   * Packets that waited in the park for their monitor's handover (scheduler/moves.ts): their
   * latency is the move's, counted here and not in the histogram, or every move would look like
   * interference on the VM the monitor went to.
   */
  parked: number;
  /** Of those, served later than the deadline. */
  misses: number;
  deadlineMs: number;
  /** Counts per SERVICE_BOUNDS_MS bucket, plus one for longer. */
  serviceBuckets: number[];
  queueWaitMsSum: number;
  computeMsSum: number;
  serviceMsSum: number;
  /** Median slowdown of the last probes against the fastest one seen; null before the first. */
  probeSlowdown: number | null;
}

const PROBE_HISTORY = 5;

export class HealthCounters {
  readonly #health: WorkerHealth;
  readonly #work: CpuWork;
  #probeBestMs = Number.POSITIVE_INFINITY;
  readonly #probeRecent: number[] = [];

  constructor(deadlineMs: number, work: CpuWork) {
    this.#work = work;
    this.#health = {
      packets: 0, parked: 0, misses: 0, deadlineMs, serviceBuckets: new Array<number>(SERVICE_BOUNDS_MS.length + 1).fill(0),
      queueWaitMsSum: 0, computeMsSum: 0, serviceMsSum: 0, probeSlowdown: null,
    };
  }

  record(serviceTimeMs: number, queueWaitMs: number, computeMs: number): void {
    const health = this.#health;
    health.packets += 1;
    if (serviceTimeMs > health.deadlineMs) health.misses += 1;
    let bucket = SERVICE_BOUNDS_MS.findIndex((bound) => serviceTimeMs <= bound);
    if (bucket < 0) bucket = SERVICE_BOUNDS_MS.length;
    health.serviceBuckets[bucket] = (health.serviceBuckets[bucket] ?? 0) + 1;
    health.queueWaitMsSum += queueWaitMs;
    health.computeMsSum += computeMs;
    health.serviceMsSum += serviceTimeMs;
  }

  recordParked(): void {
    this.#health.parked += 1;
  }

  /** Runs the probe (a millisecond of work on an idle CPU) and updates the slowdown. */
  probe(): void {
    const ms = this.#work.burn(1);
    this.#probeBestMs = Math.min(this.#probeBestMs, ms);
    this.#probeRecent.push(ms / this.#probeBestMs);
    if (this.#probeRecent.length > PROBE_HISTORY) this.#probeRecent.shift();
    const sorted = [...this.#probeRecent].sort((a, b) => a - b);
    this.#health.probeSlowdown = Math.round((sorted[Math.floor(sorted.length / 2)] as number) * 100) / 100;
  }

  snapshot(): WorkerHealth {
    return { ...this.#health, serviceBuckets: [...this.#health.serviceBuckets] };
  }
}
