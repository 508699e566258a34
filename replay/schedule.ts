/**
 * The replay schedule: which record each simulated monitor plays, from where, and when in each
 * second it sends. Pure and seeded, so the same seed gives byte-identical load against every
 * hypervisor under test.
 *
 * Rules, per monitor i (0-based), from PRNGs seeded with the seed (record order) and with (seed, i)
 * (offset, phase) only — adding monitors never changes the plan of the existing ones:
 * - record: the candidates in a seeded shuffled order, dealt round robin (monitor i gets
 *   shuffled[i mod R]), so every record carries an equal share of monitors (±1);
 * - offsetS: whole seconds into the record, drawn uniformly from 0..recordPackets-1;
 * - phaseMs: the send time within each second, uniform in [0, 1000) at 1 µs resolution, so N
 *   monitors spread their packets over the second instead of bursting at its start;
 * - send k (k = 0, 1, …) is due at k·1000 + phaseMs ms after the start: open loop, from the clock only;
 *   with a packet period P other than 1000 ms (time compressed: a 1-second packet every P ms), at
 *   k·P + phaseMs·P/1000, the same plan on a shorter clock;
 * - packets: durationS sends, or with durationS 0 one pass (recordPackets sends);
 * - sessions: the first is `<prefix>` (default `r<seed>`) starting at packet offsetS with seq 0; at
 *   the record's end the monitor wraps to packet 0 under a new session `<prefix>.w1`, `.w2`, …, seq
 *   again from 0, as a restarted device would.
 */
import { mulberry32 } from '../functions/model/mlp.js';
import { ReplayError } from './errors.js';

export const PACKET_PERIOD_MS = 1000;
const MONITOR_ID = /^[A-Za-z0-9_-]{1,64}$/;
// Leaves room for the `.w<k>` suffix within the 64 characters a session may have.
const SESSION_PREFIX = /^[A-Za-z0-9_.:-]{1,48}$/;

export interface PlanRecord {
  name: string;
  /** Whole 1-second packets in the record (a trailing partial second is not sent). */
  packets: number;
}

export interface PlanInput {
  /** Unsigned 32-bit integer. */
  seed: number;
  monitors: number;
  records: readonly PlanRecord[];
  /** Seconds of sending per monitor; 0 = one pass over each monitor's record. */
  durationS: number;
  /** Session name of each monitor's first pass; default `r<seed>`. */
  sessionPrefix?: string | undefined;
  /** ms between a monitor's sends (default 1000: real time); durationS then counts packets. */
  periodMs?: number | undefined;
}

export interface PlannedSession {
  session: string;
  /** Index k of the monitor's send that carries this session's seq 0. */
  firstSend: number;
  /** Record packet (second) sent as seq 0. */
  firstPacket: number;
  packets: number;
}

export interface PlannedMonitor {
  index: number;
  monitorId: string;
  record: string;
  recordPackets: number;
  offsetS: number;
  phaseMs: number;
  /** Sends in the run. */
  packets: number;
  sessions: PlannedSession[];
}

export interface SchedulePlan {
  seed: number;
  durationS: number;
  /** ms between a monitor's sends. */
  periodMs: number;
  /** Seconds from the first to the end of the last scheduled second (the longest monitor's packets). */
  spanS: number;
  monitors: PlannedMonitor[];
  /** Monitor indices by phase (then index): the order sends go out within every second. */
  order: number[];
  totalPackets: number;
}

export function monitorIdFor(seed: number, index: number): string {
  return `m${seed}-${index}`;
}

/** Scheduled time of a monitor's send k, ms after the replay's start. */
export function sendTimeMs(monitor: Pick<PlannedMonitor, 'phaseMs'>, k: number, periodMs = PACKET_PERIOD_MS): number {
  return k * periodMs + monitor.phaseMs;
}

/** Session, seq and record packet of a monitor's send k (k < monitor.packets). */
export function packetOfSend(monitor: PlannedMonitor, k: number): { session: string; seq: number; recordPacket: number } {
  for (const s of monitor.sessions) {
    if (k < s.firstSend + s.packets) return { session: s.session, seq: k - s.firstSend, recordPacket: s.firstPacket + k - s.firstSend };
  }
  throw new ReplayError('REPLAY_STATE', `send ${k} is past monitor ${monitor.monitorId}'s ${monitor.packets} packets`);
}

/** Mixes seed and monitor index into one 32-bit PRNG seed (murmur3's finaliser). */
function monitorSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export function planSchedule(input: PlanInput): SchedulePlan {
  const { seed, monitors, records, durationS } = input;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ReplayError('REPLAY_BAD_OPTION', `seed must be an integer 0..4294967295, not ${seed}`);
  if (!Number.isInteger(monitors) || monitors < 1) throw new ReplayError('REPLAY_BAD_OPTION', `monitors must be an integer >= 1, not ${monitors}`);
  if (!Number.isInteger(durationS) || durationS < 0) throw new ReplayError('REPLAY_BAD_OPTION', `duration must be a whole number of seconds >= 0, not ${durationS}`);
  if (records.length === 0) throw new ReplayError('REPLAY_BAD_OPTION', 'no records to replay');
  const periodMs = input.periodMs ?? PACKET_PERIOD_MS;
  if (!(Number.isFinite(periodMs) && periodMs >= 10 && periodMs <= PACKET_PERIOD_MS)) throw new ReplayError('REPLAY_BAD_OPTION', `packet period must be 10..1000 ms, not ${periodMs}`);
  for (const r of records) {
    if (!Number.isInteger(r.packets) || r.packets < 1) throw new ReplayError('REPLAY_BAD_RECORD', `record ${r.name} has no whole second of samples to send`);
  }
  const prefix = input.sessionPrefix ?? `r${seed}`;
  if (!SESSION_PREFIX.test(prefix)) throw new ReplayError('REPLAY_BAD_OPTION', `session prefix "${prefix}" is not 1-48 of [A-Za-z0-9_.:-]`);

  // Fisher-Yates over the candidates with a stream of its own (index -1 is no monitor's).
  const shuffled = [...records];
  const shuffle = mulberry32(monitorSeed(seed, -1));
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(shuffle() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j] as PlanRecord, shuffled[i] as PlanRecord];
  }
  const planned: PlannedMonitor[] = [];
  let totalPackets = 0;
  let spanS = 0;
  for (let index = 0; index < monitors; index++) {
    const monitorId = monitorIdFor(seed, index);
    if (!MONITOR_ID.test(monitorId)) throw new ReplayError('REPLAY_BAD_OPTION', `monitor id ${monitorId} is not 1-64 of [A-Za-z0-9_-]`);
    const rand = mulberry32(monitorSeed(seed, index));
    const record = shuffled[index % shuffled.length] as PlanRecord;
    const offsetS = Math.floor(rand() * record.packets);
    const phaseMs = (Math.floor(rand() * 1e6) / 1e3) * (periodMs / PACKET_PERIOD_MS);
    const packets = durationS === 0 ? record.packets : durationS;
    const sessions: PlannedSession[] = [];
    for (let firstSend = 0, firstPacket = offsetS, wrap = 0; firstSend < packets; wrap++) {
      const count = Math.min(packets - firstSend, record.packets - firstPacket);
      sessions.push({ session: wrap === 0 ? prefix : `${prefix}.w${wrap}`, firstSend, firstPacket, packets: count });
      firstSend += count;
      firstPacket = 0;
    }
    planned.push({ index, monitorId, record: record.name, recordPackets: record.packets, offsetS, phaseMs, packets, sessions });
    totalPackets += packets;
    spanS = Math.max(spanS, packets);
  }
  const order = planned.map((m) => m.index).sort((a, b) => (planned[a] as PlannedMonitor).phaseMs - (planned[b] as PlannedMonitor).phaseMs || a - b);
  return { seed, durationS, periodMs, spanS, monitors: planned, order, totalPackets };
}
