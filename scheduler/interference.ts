/**
 * Interference detection (the paper's future work): which VMs serve their packets badly now, with
 * hysteresis so that a VM does not flap in and out of quarantine. Pure: the control loop
 * (scheduler/control.ts) feeds it the workers' health from their heartbeats (worker/health.ts) and
 * the age of the oldest packet queued on each worker; it answers with per-VM windows and the VMs
 * that just turned bad or good again. What to do about them (quarantine, moves, checking that the
 * moves helped) is the control loop's.
 */
import { SERVICE_BOUNDS_MS, type WorkerHealth } from '../worker/health.js';
import type { Policy } from './policy.js';

export type InterferenceSettings = Policy['interference'];

/** One worker as the control loop read it. */
export interface WorkerSample {
  worker: string;
  vm: string;
  health: WorkerHealth | null;
  /** Age of the oldest job waiting in the worker's slots (ms; 0 when none waits). */
  backlogAgeMs: number;
}

/** A VM's packets between two passes. */
export interface VmWindow {
  vm: string;
  packets: number;
  misses: number;
  missRate: number | null;
  /** Interpolated within the histogram's buckets; null without packets. */
  serviceP95Ms: number | null;
  meanQueueWaitMs: number | null;
  meanComputeMs: number | null;
  meanServiceMs: number | null;
  backlogAgeMs: number;
  /** The slowest of its workers' CPU probes. */
  probeSlowdown: number | null;
}

export type Verdict = 'bad' | 'good' | 'neutral';

interface VmTrack {
  quarantined: boolean;
  badStreak: number;
  goodStreak: number;
  /** When it was quarantined (Redis-clock ms). */
  since: number;
}

export interface Transitions {
  /** VMs bad for sustainWindows passes in a row: to quarantine. */
  detected: Array<{ window: VmWindow; reason: string }>;
  /** Quarantined VMs good again for as long, past quarantineS. */
  cleared: Array<{ window: VmWindow; reason: string }>;
}

export class InterferenceDetector {
  readonly #settings: InterferenceSettings;
  readonly #previous = new Map<string, WorkerHealth>();
  readonly #tracks = new Map<string, VmTrack>();

  constructor(settings: InterferenceSettings) {
    this.#settings = settings;
  }

  /** The windows since the last call, per VM (a worker seen for the first time counts from its start). */
  windows(samples: readonly WorkerSample[]): VmWindow[] {
    const byVm = new Map<string, WorkerSample[]>();
    for (const sample of samples) byVm.set(sample.vm, [...(byVm.get(sample.vm) ?? []), sample]);
    const windows = [...byVm].map(([vm, group]) => windowOf(vm, group, (worker) => this.#previous.get(worker)));
    for (const sample of samples) if (sample.health !== null) this.#previous.set(sample.worker, sample.health);
    return windows.sort((a, b) => (a.vm < b.vm ? -1 : 1));
  }

  verdict(window: VmWindow): { verdict: Verdict; reason: string } {
    const s = this.#settings;
    const enough = window.packets >= s.minPackets;
    const bad: string[] = [];
    if (window.backlogAgeMs >= s.latencyP95Ms) bad.push(`oldest queued packet ${Math.round(window.backlogAgeMs)} ms old (≥ ${s.latencyP95Ms})`);
    if (enough && (window.missRate ?? 0) >= s.missRate) bad.push(`${pct(window.missRate)} of ${window.packets} packets past the ${s.deadlineMs} ms deadline (≥ ${pct(s.missRate)})`);
    if (enough && (window.serviceP95Ms ?? 0) >= s.latencyP95Ms) bad.push(`service p95 ${Math.round(window.serviceP95Ms ?? 0)} ms (≥ ${s.latencyP95Ms})`);
    if (bad.length > 0) return { verdict: 'bad', reason: bad.join('; ') };
    const clear = s.clearRatio;
    const calm = window.backlogAgeMs < s.latencyP95Ms * clear && (enough
      ? (window.missRate ?? 0) < s.missRate * clear && (window.serviceP95Ms ?? 0) < s.latencyP95Ms * clear
      : window.packets > 0 || (window.probeSlowdown ?? 1) <= s.probeClearSlowdown);
    if (!calm) return { verdict: 'neutral', reason: 'between the thresholds' };
    return {
      verdict: 'good',
      reason: enough
        ? `service p95 ${Math.round(window.serviceP95Ms ?? 0)} ms, ${pct(window.missRate)} missed, below ${clear} × the thresholds`
        : `no packets to judge by, CPU probe ${window.probeSlowdown ?? 1}× its best (≤ ${s.probeClearSlowdown})`,
    };
  }

  /**
   * Advances each VM's streaks by its window's verdict. VMs in `grace` (monitors were just moved to
   * them, and the packets their handovers delayed are still running) are not held to a bad window.
   */
  observe(now: number, windows: readonly VmWindow[], grace: ReadonlySet<string> = new Set()): Transitions {
    const s = this.#settings;
    const out: Transitions = { detected: [], cleared: [] };
    for (const window of windows) {
      let track = this.#tracks.get(window.vm);
      if (track === undefined) this.#tracks.set(window.vm, (track = { quarantined: false, badStreak: 0, goodStreak: 0, since: 0 }));
      const judged = this.verdict(window);
      const { verdict, reason } = judged.verdict === 'bad' && grace.has(window.vm) ? { verdict: 'neutral' as const, reason: 'in grace after a move' } : judged;
      track.badStreak = verdict === 'bad' ? track.badStreak + 1 : 0;
      track.goodStreak = verdict === 'good' ? track.goodStreak + 1 : 0;
      if (!track.quarantined && track.badStreak >= s.sustainWindows) {
        Object.assign(track, { quarantined: true, since: now, goodStreak: 0 });
        out.detected.push({ window, reason: `${reason}, ${track.badStreak} passes in a row` });
      } else if (track.quarantined && track.goodStreak >= s.sustainWindows && now - track.since >= s.quarantineS * 1000) {
        Object.assign(track, { quarantined: false, badStreak: 0 });
        out.cleared.push({ window, reason: `${reason}, ${track.goodStreak} passes in a row, ${Math.round((now - track.since) / 1000)} s after it was quarantined` });
      }
    }
    return out;
  }

  isQuarantined(vm: string): boolean {
    return this.#tracks.get(vm)?.quarantined ?? false;
  }

  /** Ends a VM's quarantine whatever its streaks (it was paused or shut down). */
  release(vm: string): void {
    this.#tracks.delete(vm);
  }

  /** Takes up a quarantine found in Redis (a restarted scheduler). */
  adopt(vm: string, since: number): void {
    this.#tracks.set(vm, { quarantined: true, badStreak: 0, goodStreak: 0, since });
  }
}

/**
 * The window of a group of workers (a VM's, or those moved monitors went to): each worker's
 * counters now less its counters `before` (all of them for a worker without earlier counters, or
 * whose counters went down: it restarted), the oldest queued packet, the slowest probe.
 */
export function windowOf(vm: string, samples: readonly WorkerSample[], before: (worker: string) => WorkerHealth | undefined): VmWindow {
  const deltas: WorkerHealth[] = [];
  let backlogAgeMs = 0;
  let probeSlowdown: number | null = null;
  for (const sample of samples) {
    backlogAgeMs = Math.max(backlogAgeMs, sample.backlogAgeMs);
    if (sample.health === null) continue;
    const earlier = before(sample.worker);
    deltas.push(earlier === undefined || sample.health.packets < earlier.packets ? sample.health : subtract(sample.health, earlier));
    if (sample.health.probeSlowdown !== null) probeSlowdown = Math.max(probeSlowdown ?? 0, sample.health.probeSlowdown);
  }
  return summarise(vm, deltas, backlogAgeMs, probeSlowdown);
}

function subtract(now: WorkerHealth, before: WorkerHealth): WorkerHealth {
  return {
    ...now,
    packets: now.packets - before.packets,
    misses: now.misses - before.misses,
    serviceBuckets: now.serviceBuckets.map((count, index) => count - (before.serviceBuckets[index] ?? 0)),
    queueWaitMsSum: now.queueWaitMsSum - before.queueWaitMsSum,
    computeMsSum: now.computeMsSum - before.computeMsSum,
    serviceMsSum: now.serviceMsSum - before.serviceMsSum,
  };
}

function summarise(vm: string, deltas: readonly WorkerHealth[], backlogAgeMs: number, probeSlowdown: number | null): VmWindow {
  const packets = deltas.reduce((sum, delta) => sum + delta.packets, 0);
  const misses = deltas.reduce((sum, delta) => sum + delta.misses, 0);
  const buckets = new Array<number>(SERVICE_BOUNDS_MS.length + 1).fill(0);
  for (const delta of deltas) delta.serviceBuckets.forEach((count, index) => { buckets[index] = (buckets[index] ?? 0) + count; });
  const mean = (sum: (delta: WorkerHealth) => number) => packets === 0 ? null : Math.round((deltas.reduce((total, delta) => total + sum(delta), 0) / packets) * 10) / 10;
  return {
    vm, packets, misses, missRate: packets === 0 ? null : misses / packets, serviceP95Ms: quantile(buckets, 0.95),
    meanQueueWaitMs: mean((delta) => delta.queueWaitMsSum), meanComputeMs: mean((delta) => delta.computeMsSum), meanServiceMs: mean((delta) => delta.serviceMsSum),
    backlogAgeMs, probeSlowdown,
  };
}

/** The q-quantile of a bucketed histogram, interpolated linearly within its bucket (as Prometheus's histogram_quantile). */
export function quantile(buckets: readonly number[], q: number): number | null {
  const total = buckets.reduce((sum, count) => sum + count, 0);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (const [index, count] of buckets.entries()) {
    if (below + count >= rank && count > 0) {
      const lower = index === 0 ? 0 : SERVICE_BOUNDS_MS[index - 1] as number;
      // Past the last bound there is no upper one: the last bound is all that can be said.
      if (index >= SERVICE_BOUNDS_MS.length) return lower;
      const upper = SERVICE_BOUNDS_MS[index] as number;
      return Math.round(lower + ((rank - below) / count) * (upper - lower));
    }
    below += count;
  }
  return SERVICE_BOUNDS_MS.at(-1) as number;
}

function pct(rate: number | null): string {
  return `${Math.round((rate ?? 0) * 1000) / 10} %`;
}
