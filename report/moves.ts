/**
 * The scheduler's side of a run's report: its events (moves, handovers, interference found and
 * cleared, VMs paused), and for every move the moved monitor's latency before and after it, from
 * the run's latency records: service time (gateway receipt → result published) of the packets
 * received in the `windowMs` before the move, and of those received from the end of its handover
 * to `windowMs` later (the packets in between waited for the handover: they are its price, counted
 * apart).
 */
import { quantileSorted } from 'simple-statistics';
import type { LatencyRecord } from '../contracts/invocation.js';

/** A scheduler event as the report needs it (scheduler/events.ts writes them). */
export interface ReportEvent {
  /** Redis-clock ms. */
  at: number;
  type: string;
  reason: string;
  vm?: string;
  monitor?: string;
  fromVm?: string | null;
  toVm?: string | null;
  moveId?: string;
}

export interface WindowStats {
  n: number;
  /** Later than the deadline. */
  misses: number;
  p50: number | null;
  p95: number | null;
  max: number | null;
}

export interface MoveLatency {
  monitor: string;
  moveId: string | null;
  at: number;
  fromVm: string | null;
  toVm: string | null;
  reason: string;
  /** Move → its handover done (ms); null when the run ended first. */
  handoverMs: number | null;
  before: WindowStats;
  /** Packets received during the handover (they waited for it). */
  during: WindowStats;
  after: WindowStats;
}

export function moveLatencies(records: readonly LatencyRecord[], events: readonly ReportEvent[], deadlineMs: number, windowMs = 30_000): MoveLatency[] {
  const moves = events.filter((event) => event.type === 'monitor-moved' && event.monitor !== undefined);
  return moves.map((move) => {
    const done = events.find((event) => event.type === 'handover-done' && event.moveId !== undefined && event.moveId === move.moveId);
    const end = done?.at ?? null;
    const ofMonitor = records.filter((record) => record.monitorId === move.monitor && record.status === 'processed');
    const between = (from: number, to: number) => windowStats(ofMonitor.filter((record) => record.receivedAt >= from && record.receivedAt < to), deadlineMs);
    return {
      monitor: move.monitor as string, moveId: move.moveId ?? null, at: move.at, fromVm: move.fromVm ?? null, toVm: move.toVm ?? null, reason: move.reason,
      handoverMs: end === null ? null : end - move.at,
      before: between(move.at - windowMs, move.at),
      during: between(move.at, end ?? Number.POSITIVE_INFINITY),
      after: end === null ? windowStats([], deadlineMs) : between(end, end + windowMs),
    };
  });
}

function windowStats(records: readonly LatencyRecord[], deadlineMs: number): WindowStats {
  const values = records.map((record) => record.serviceTimeMs).sort((a, b) => a - b);
  const some = values.length > 0;
  return {
    n: values.length,
    misses: values.filter((value) => value > deadlineMs).length,
    p50: some ? quantileSorted(values, 0.5) : null,
    p95: some ? quantileSorted(values, 0.95) : null,
    max: some ? (values.at(-1) as number) : null,
  };
}
