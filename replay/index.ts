/**
 * Replay: N simulated heart monitors send real MIT-BIH seconds to the gateway, open loop, and the
 * round trip of every packet is measured here. Used by `ecgfaas replay` and in-process by the demo
 * and the benchmarks, so all of them drive the platform the same way.
 */
import { ReplayError } from './errors.js';
import { LoadGenerator } from './load-generator.js';
import { planSchedule, type SchedulePlan } from './schedule.js';
import { listRecords, loadSources, recordLengths, type RecordSource } from './source.js';
import type { ReplayHooks, ReplayOptions, ReplaySummary } from './types.js';

export { ReplayError } from './errors.js';
export { LoadGenerator, type LoadGeneratorConfig, type LoadResult } from './load-generator.js';
export {
  planSchedule, packetOfSend, sendTimeMs, monitorIdFor, PACKET_PERIOD_MS,
  type PlanInput, type PlanRecord, type PlannedMonitor, type PlannedSession, type SchedulePlan,
} from './schedule.js';
export { RecordSource, listRecords, loadSources, recordLengths, type LeadCount } from './source.js';
export type { Distribution } from './stats.js';
export type { ReplayHooks, ReplayOptions, ReplayProgress, ReplaySummary, PacketCounts, RoundTripLine } from './types.js';

export const DEFAULT_SEED = 1;
export const DEFAULT_DEADLINE_MS = 1000;
export const MAX_DEFAULT_CONNECTIONS = 256;
/** Added to the deadline when draining: misses are misses either way, but the status is kept. */
export const DRAIN_GRACE_MS = 500;

export interface PreparedReplay {
  options: Required<Pick<ReplayOptions, 'seed' | 'leads' | 'deadlineMs' | 'wait' | 'connections' | 'drainMs' | 'requestTimeoutMs'>> & ReplayOptions;
  gateway: URL;
  records: string[];
  plan: SchedulePlan;
  sources: Map<string, RecordSource>;
}

function positiveInteger(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new ReplayError('REPLAY_BAD_OPTION', `${what} must be an integer >= ${min}, not ${value}`);
}

/** Validates options, reads the records and plans the schedule; no network. */
export async function prepareReplay(options: ReplayOptions): Promise<PreparedReplay> {
  positiveInteger(options.monitors, 'monitors', 1);
  positiveInteger(options.durationS, 'duration (s)', 0);
  const seed = options.seed ?? DEFAULT_SEED;
  const leads = options.leads ?? 2;
  if (leads !== 1 && leads !== 2) throw new ReplayError('REPLAY_BAD_OPTION', `leads must be 1 or 2, not ${String(leads)}`);
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  if (!(Number.isFinite(deadlineMs) && deadlineMs > 0)) throw new ReplayError('REPLAY_BAD_OPTION', `deadline must be a positive number of ms, not ${deadlineMs}`);
  // Two per monitor: with the gateway holding each answer up to about a second, a monitor can have
  // its next packet in flight before the last answer; fewer would queue sends in the client.
  const connections = options.connections ?? Math.min(2 * options.monitors, MAX_DEFAULT_CONNECTIONS);
  positiveInteger(connections, 'connections', 1);
  const drainMs = options.drainMs ?? deadlineMs + DRAIN_GRACE_MS;
  if (!(Number.isFinite(drainMs) && drainMs >= 0)) throw new ReplayError('REPLAY_BAD_OPTION', `drain must be a number of ms >= 0, not ${drainMs}`);
  const requestTimeoutMs = options.requestTimeoutMs ?? Math.max(10_000, 5 * deadlineMs);
  if (!(Number.isFinite(requestTimeoutMs) && requestTimeoutMs > 0)) throw new ReplayError('REPLAY_BAD_OPTION', `request timeout must be a positive number of ms, not ${requestTimeoutMs}`);
  let gateway: URL;
  try {
    gateway = new URL(options.gateway);
  } catch {
    throw new ReplayError('REPLAY_BAD_OPTION', `gateway "${options.gateway}" is not a URL (e.g. http://127.0.0.1:3000)`);
  }
  if (gateway.protocol !== 'http:' && gateway.protocol !== 'https:') throw new ReplayError('REPLAY_BAD_OPTION', `gateway ${gateway.href} is not http(s)`);
  if (gateway.search !== '' || gateway.hash !== '') throw new ReplayError('REPLAY_BAD_OPTION', `gateway ${gateway.href} must not carry a query or fragment`);

  const records = options.records === undefined ? await listRecords(options.dataDir) : [...new Set(options.records)];
  if (records.length === 0) throw new ReplayError('REPLAY_BAD_OPTION', 'records names no record');
  const lengths = await recordLengths(options.dataDir, records);
  const plan = planSchedule({ seed, monitors: options.monitors, records: lengths, durationS: options.durationS, sessionPrefix: options.sessionPrefix, periodMs: options.packetPeriodMs });
  const sources = await loadSources(options.dataDir, new Set(plan.monitors.map((m) => m.record)), leads);
  return { options: { ...options, seed, leads, deadlineMs, wait: options.wait ?? true, connections, drainMs, requestTimeoutMs }, gateway, records, plan, sources };
}

/**
 * Runs a replay to the end of its schedule (or until `hooks.signal` aborts) and returns the summary.
 * Throws ReplayError for bad options, unknown records, or a gateway that does not answer at start.
 */
export async function runReplay(options: ReplayOptions, hooks: ReplayHooks = {}): Promise<ReplaySummary> {
  const prepared = await prepareReplay(options);
  const o = prepared.options;
  const generator = new LoadGenerator({
    gateway: prepared.gateway,
    plan: prepared.plan,
    sources: prepared.sources,
    deadlineMs: o.deadlineMs,
    wait: o.wait,
    connections: o.connections,
    drainMs: o.drainMs,
    requestTimeoutMs: o.requestTimeoutMs,
    roundtripsFile: o.roundtripsFile,
  });
  const onAbort = (): void => generator.stop();
  let progressTimer: NodeJS.Timeout | undefined;
  try {
    if (hooks.signal?.aborted) generator.stop();
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    await generator.start();
    const onProgress = hooks.onProgress;
    if (onProgress !== undefined) {
      progressTimer = setInterval(() => onProgress(generator.progress()), o.progressIntervalMs ?? 250);
    }
    const result = await generator.finished();
    onProgress?.(generator.progress());
    const monitorsPerRecord: Record<string, number> = {};
    for (const m of prepared.plan.monitors) monitorsPerRecord[m.record] = (monitorsPerRecord[m.record] ?? 0) + 1;
    return {
      gateway: prepared.gateway.href,
      monitors: o.monitors,
      durationS: prepared.plan.spanS,
      seed: o.seed,
      records: prepared.records,
      monitorsPerRecord,
      leads: o.leads,
      wait: o.wait,
      deadlineMs: o.deadlineMs,
      connections: o.connections,
      ...result,
    };
  } finally {
    if (progressTimer !== undefined) clearInterval(progressTimer);
    hooks.signal?.removeEventListener('abort', onAbort);
    await generator.close();
  }
}

const fmt = (value: number | null, digits = 1): string => (value === null ? '-' : value.toFixed(digits));

/** The short human summary `ecgfaas replay` prints without --json. */
export function formatSummary(s: ReplaySummary): string {
  const p = s.packets;
  const rt = s.roundTripMs;
  const statuses = Object.entries(s.statusCounts).map(([status, n]) => `${status}×${n}`).join(' ') || '-';
  const errors = Object.entries(s.errorCodes).map(([code, n]) => `${code}×${n}`).join(' ');
  const lines = [
    `replay: ${s.monitors} monitors × ${s.durationS} s${s.aborted ? ' (stopped early)' : ''}, seed ${s.seed}, records ${s.records.join(',')}, ${s.leads} lead(s), ${s.wait ? 'wait for results' : 'no wait'}`,
    `  packets: ${p.sent}/${p.planned} sent at ${s.requestsPerSecond.toFixed(1)}/s; accepted ${p.accepted}, failed ${p.failed} (429: ${p.rejected429}), duplicates ${p.duplicates}, unanswered ${p.unanswered}`,
    `  round trip ms (${rt.count}${s.wait ? ' results' : ' acceptances'}): mean ${fmt(rt.mean)}  p50 ${fmt(rt.p50)}  p95 ${fmt(rt.p95)}  p99 ${fmt(rt.p99)}  max ${fmt(rt.max)}`,
    `  deadline misses (> ${s.deadlineMs} ms or no result): ${s.deadlineMisses} (${(s.deadlineMissRate * 100).toFixed(2)} %)`,
    `  statuses: ${statuses}${errors ? `; errors: ${errors}` : ''}`,
    `  send lag ms: p99 ${fmt(s.sendLagMs.p99, 2)}, max ${fmt(s.sendLagMs.max, 2)}; client queue max ${s.clientQueuedMax} (of ${s.connections} connections)`,
  ];
  return `${lines.join('\n')}\n`;
}
