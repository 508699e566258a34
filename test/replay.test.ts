/**
 * The replay load generator against a stand-in gateway (node:http on port 0) that decodes every
 * binary body and answers as the gateway does: 200 with a result, 202 when its wait runs out, slow
 * answers for one monitor. Uses the shipped MIT-BIH excerpt.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CliError } from '../cli/common.js';
import { registerReplayCommand } from '../cli/commands/replay.js';
import { decodePacket, encodePacket, type AdcPacket } from '../contracts/packet-binary.js';
import { readRecord, type WfdbRecord } from '../functions/wfdb/index.js';
import {
  packetOfSend, planSchedule, recordLengths, RecordSource, runReplay,
  type PlanRecord, type ReplaySummary, type RoundTripLine, type SchedulePlan,
} from '../replay/index.js';
import { excerptDir } from './support/data.js';

const RECORDS = ['101', '119', '208', '209', '223'];

interface Received {
  monitorId: string;
  packet: AdcPacket;
  /** performance.now() when the whole body had arrived. */
  at: number;
  wallAt: number;
}

interface Behaviour {
  delayMs: number;
  status: 200 | 202 | 429 | 503 | 'duplicate';
}

interface StandIn {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

/** Answers like the gateway: 200 + a minimal InvocationResult, or 202 {invocationId}, after `delayMs`. */
async function startStandIn(behaviour: (monitorId: string) => Behaviour): Promise<StandIn> {
  const received: Received[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const match = /^\/v1\/monitors\/([A-Za-z0-9_-]{1,64})\/packets(\?wait=1)?$/.exec(req.url ?? '');
    if (req.method !== 'POST' || match === null) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'no route' }));
      return;
    }
    const monitorId = match[1] as string;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const at = performance.now();
      let packet: AdcPacket;
      try {
        packet = decodePacket(Buffer.concat(chunks));
      } catch (error) {
        res.writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ statusCode: 400, code: 'BAD_BINARY_PACKET', error: 'Bad Request', message: (error as Error).message }));
        return;
      }
      received.push({ monitorId, packet, at, wallAt: Date.now() });
      const { delayMs, status } = behaviour(monitorId);
      const invocationId = `${monitorId}:${packet.session}:${packet.seq}`;
      let code: number;
      let body: object;
      if (status === 429 || status === 503) {
        code = status;
        body = { statusCode: status, code: status === 429 ? 'RATE_LIMITED' : 'QUEUE_UNAVAILABLE', error: 'error', message: 'stand-in' };
      } else if (status === 'duplicate') {
        code = 200;
        body = { invocationId, duplicate: true };
      } else if (status === 202 || match[2] === undefined) {
        code = 202;
        body = { invocationId };
      } else {
        code = 200;
        body = { invocationId, monitorId, session: packet.session ?? null, seq: packet.seq, status: 'processed', beats: [], events: [] };
      }
      const headers = { 'content-type': 'application/json', ...(code === 429 ? { 'retry-after': '1' } : {}) };
      setTimeout(() => res.writeHead(code, headers).end(JSON.stringify(body)), delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

let scratch: string;
let lengths: PlanRecord[];
const records = new Map<string, WfdbRecord>();

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-replay-'));
  lengths = await recordLengths(excerptDir(), RECORDS);
  for (const name of RECORDS) records.set(name, await readRecord(excerptDir(), name));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Every received packet carries the planned record's samples for its (session, seq), both leads. */
function expectRealSamples(plan: SchedulePlan, received: readonly Received[]): void {
  for (const r of received) {
    const monitor = plan.monitors.find((m) => m.monitorId === r.monitorId);
    expect(monitor, r.monitorId).toBeDefined();
    const session = monitor!.sessions.find((s) => s.session === r.packet.session);
    expect(session, `${r.monitorId} session ${r.packet.session}`).toBeDefined();
    const recordPacket = session!.firstPacket + r.packet.seq;
    const record = records.get(monitor!.record)!;
    expect(r.packet.gain).toBe(200);
    expect(r.packet.baseline).toBe(1024);
    expect(r.packet.leads.map((l) => l.name)).toEqual(['MLII', 'V1']);
    r.packet.leads.forEach((lead, i) => {
      const expected = (record.signals[i] as Int16Array).subarray(recordPacket * 360, (recordPacket + 1) * 360);
      expect(Buffer.from(lead.samples.buffer).equals(Buffer.from(expected.slice().buffer)), `${r.monitorId} seq ${r.packet.seq} lead ${i}`).toBe(true);
    });
    expect(Math.abs((r.packet.sentAt as number) - r.wallAt)).toBeLessThan(200);
  }
}

describe('planSchedule', () => {
  it('is a pure function of the seed: same seed, same records, offsets, phases and sessions', () => {
    const a = planSchedule({ seed: 7, monitors: 40, records: lengths, durationS: 10 });
    const b = planSchedule({ seed: 7, monitors: 40, records: lengths, durationS: 10 });
    expect(b).toEqual(a);
    const c = planSchedule({ seed: 8, monitors: 40, records: lengths, durationS: 10 });
    expect(c.monitors.map((m) => [m.record, m.offsetS, m.phaseMs])).not.toEqual(a.monitors.map((m) => [m.record, m.offsetS, m.phaseMs]));
    expect(c.monitors[0]!.sessions[0]!.session).toBe('r8');
    // Adding monitors keeps the existing ones' plans.
    const more = planSchedule({ seed: 7, monitors: 60, records: lengths, durationS: 10 });
    expect(more.monitors.slice(0, 40)).toEqual(a.monitors);

    for (const m of a.monitors) {
      expect(m.monitorId).toBe(`m7-${m.index}`);
      expect(m.monitorId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
      expect(RECORDS).toContain(m.record);
      expect(Number.isInteger(m.offsetS) && m.offsetS >= 0 && m.offsetS < 180).toBe(true);
      expect(m.phaseMs >= 0 && m.phaseMs < 1000).toBe(true);
      expect(m.packets).toBe(10);
    }
    // Records are dealt evenly: 40 monitors over 5 records is 8 each.
    for (const name of RECORDS) expect(a.monitors.filter((m) => m.record === name)).toHaveLength(8);
    // Load is spread: phases are not bunched at the start of the second.
    expect(new Set(a.monitors.map((m) => Math.floor(m.phaseMs / 100))).size).toBeGreaterThanOrEqual(7);
    expect(a.order.map((i) => a.monitors[i]!.phaseMs)).toEqual([...a.monitors.map((m) => m.phaseMs)].sort((x, y) => x - y));
    expect(a.totalPackets).toBe(400);
  });

  it('wraps at the end of the record with a new session and seq from 0; duration 0 is one pass', () => {
    const plan = planSchedule({ seed: 3, monitors: 5, records: [{ name: '101', packets: 180 }], durationS: 400 });
    for (const m of plan.monitors) {
      const first = m.sessions[0]!;
      expect(first).toEqual({ session: 'r3', firstSend: 0, firstPacket: m.offsetS, packets: 180 - m.offsetS });
      expect(m.sessions.slice(1).every((s, i) => s.session === `r3.w${i + 1}` && s.firstPacket === 0)).toBe(true);
      expect(m.sessions.reduce((n, s) => n + s.packets, 0)).toBe(400);
      // Sends walk the record in order, wrapping from 179 to 0.
      for (let k = 1; k < 400; k++) {
        const previous = packetOfSend(m, k - 1);
        const current = packetOfSend(m, k);
        expect(current.recordPacket).toBe((previous.recordPacket + 1) % 180);
        expect(current.seq).toBe(current.session === previous.session ? previous.seq + 1 : 0);
      }
    }
    const onePass = planSchedule({ seed: 3, monitors: 5, records: [{ name: '101', packets: 180 }], durationS: 0 });
    expect(onePass.monitors.every((m) => m.packets === 180)).toBe(true);
  });

  it('rejects bad input with a stable code', () => {
    expect(() => planSchedule({ seed: 1, monitors: 0, records: lengths, durationS: 1 })).toThrow(expect.objectContaining({ code: 'REPLAY_BAD_OPTION' }));
    expect(() => planSchedule({ seed: -1, monitors: 1, records: lengths, durationS: 1 })).toThrow(expect.objectContaining({ code: 'REPLAY_BAD_OPTION' }));
  });
});

describe('RecordSource', () => {
  it('builds exactly the bytes encodePacket builds, for two leads and for the primary lead', () => {
    const record = records.get('208')!;
    for (const leads of [2, 1] as const) {
      const source = new RecordSource(record, leads);
      expect(source.packets).toBe(180);
      const body = source.encode(Buffer.from('r1.w2'), 17, 1_700_000_000_123.5, 42);
      const expected = encodePacket({
        session: 'r1.w2', seq: 17, sentAt: 1_700_000_000_123.5, sampleRate: 360, gain: 200, baseline: 1024,
        leads: (leads === 2 ? [0, 1] : [0]).map((i) => ({ name: i === 0 ? 'MLII' : 'V1', samples: record.signals[i]!.subarray(42 * 360, 43 * 360) })),
      });
      expect(body.equals(expected)).toBe(true);
    }
  });
});

describe('runReplay', () => {
  it('sends real record seconds open loop, counts 202s and slow answers as misses, and writes the round trips', async () => {
    // m7-0 answers after 1.2 s (past the deadline), m7-1 gets 202s, the rest answer at once.
    const gateway = await startStandIn((id) => (id === 'm7-0' ? { delayMs: 1200, status: 200 } : id === 'm7-1' ? { delayMs: 20, status: 202 } : { delayMs: 0, status: 200 }));
    const roundtrips = path.join(scratch, 'roundtrips.ndjson');
    const progress: number[] = [];
    let summary: ReplaySummary;
    try {
      summary = await runReplay(
        { gateway: gateway.url, monitors: 4, durationS: 3, dataDir: excerptDir(), seed: 7, roundtripsFile: roundtrips, drainMs: 1500, progressIntervalMs: 100 },
        { onProgress: (p) => progress.push(p.sent) },
      );
    } finally {
      await gateway.close();
    }
    const plan = planSchedule({ seed: 7, monitors: 4, records: lengths, durationS: 3 });

    // Every packet once, the real samples, in seq order per session.
    expect(gateway.received).toHaveLength(12);
    expectRealSamples(plan, gateway.received);
    for (const m of plan.monitors) {
      const mine = gateway.received.filter((r) => r.monitorId === m.monitorId);
      expect(mine.map((r) => [r.packet.session, r.packet.seq])).toEqual([0, 1, 2].map((k) => {
        const p = packetOfSend(m, k);
        return [p.session, p.seq];
      }));
    }

    // Open loop: the slow monitor's packets left 1 s apart although each answer took 1.2 s.
    const slow = gateway.received.filter((r) => r.monitorId === 'm7-0').map((r) => r.at);
    expect(slow).toHaveLength(3);
    // (A closed loop would space them ≥ 1.2 s.)
    for (const gap of [slow[1]! - slow[0]!, slow[2]! - slow[1]!]) {
      expect(gap).toBeGreaterThan(850);
      expect(gap).toBeLessThan(1150);
    }
    // …and at their phase: every monitor's sends keep the planned offsets between monitors.
    const firstAt = (id: string) => gateway.received.find((r) => r.monitorId === id)!.at;
    const phase = (i: number) => plan.monitors[i]!.phaseMs;
    expect(Math.abs(firstAt('m7-2') - firstAt('m7-3') - (phase(2) - phase(3)))).toBeLessThan(100);

    // Counts: 3 slow results and 3 202s are misses; the 6 others are results in time.
    expect(summary.packets).toEqual({ planned: 12, sent: 12, accepted: 12, failed: 0, duplicates: 0, rejected429: 0, unanswered: 0 });
    expect(summary.deadlineMisses).toBe(6);
    expect(summary.deadlineMissRate).toBeCloseTo(0.5, 10);
    expect(summary.statusCounts).toEqual({ 200: 9, 202: 3 });
    expect(summary.roundTripMs.count).toBe(9);
    expect(summary.roundTripMs.max).toBeGreaterThanOrEqual(1200);
    expect(summary.roundTripMs.p50).toBeLessThan(200);
    for (const key of ['monitors', 'durationS', 'packets', 'roundTripMs', 'deadlineMisses', 'deadlineMissRate', 'statusCounts', 'requestsPerSecond', 'seed', 'records']) {
      expect(summary).toHaveProperty(key);
    }
    expect(Object.keys(summary.roundTripMs)).toEqual(expect.arrayContaining(['mean', 'p50', 'p95', 'p99', 'max']));
    expect(summary).toMatchObject({ monitors: 4, durationS: 3, seed: 7, records: RECORDS, aborted: false });
    expect(summary.requestsPerSecond).toBeCloseTo(4, 5);
    expect(progress.length).toBeGreaterThan(5);
    expect(progress.at(-1)).toBe(12);

    const lines = (await readFile(roundtrips, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as RoundTripLine);
    expect(lines).toHaveLength(12);
    const slowLines = lines.filter((l) => l.monitorId === 'm7-0');
    expect(slowLines.every((l) => l.status === 200 && l.miss && l.roundTripMs! >= 1200 && l.invocationId === `m7-0:${l.session}:${l.seq}`)).toBe(true);
    const acceptedOnly = lines.filter((l) => l.monitorId === 'm7-1');
    expect(acceptedOnly.every((l) => l.status === 202 && l.miss && l.roundTripMs === null && l.invocationId !== null)).toBe(true);
    expect(lines.filter((l) => !l.miss)).toHaveLength(6);
  });

  it('delivers every packet exactly once with 50 monitors for 3 s', async () => {
    const gateway = await startStandIn(() => ({ delayMs: 5, status: 200 }));
    let summary: ReplaySummary;
    try {
      summary = await runReplay({ gateway: gateway.url, monitors: 50, durationS: 3, dataDir: excerptDir(), seed: 11 });
    } finally {
      await gateway.close();
    }
    const plan = planSchedule({ seed: 11, monitors: 50, records: lengths, durationS: 3 });
    const keys = gateway.received.map((r) => `${r.monitorId}/${r.packet.session}/${r.packet.seq}`);
    expect(keys).toHaveLength(150);
    expect(new Set(keys).size).toBe(150);
    const expected = plan.monitors.flatMap((m) => [0, 1, 2].map((k) => {
      const p = packetOfSend(m, k);
      return `${m.monitorId}/${p.session}/${p.seq}`;
    }));
    expect([...keys].sort()).toEqual(expected.sort());
    expectRealSamples(plan, gateway.received);
    expect(summary.packets).toMatchObject({ sent: 150, accepted: 150, failed: 0, unanswered: 0 });
    expect(summary.deadlineMisses).toBe(0);
    expect(summary.requestsPerSecond).toBeCloseTo(50, 5);
    expect(summary.sendLagMs.max).toBeLessThan(300);
  });

  it('counts 429s and 503s as failed (no retry) and duplicates as accepted misses', async () => {
    const answers: Record<string, Behaviour['status']> = { 'm9-0': 429, 'm9-1': 503, 'm9-2': 'duplicate' };
    const gateway = await startStandIn((id) => ({ delayMs: 0, status: answers[id] ?? 200 }));
    let summary: ReplaySummary;
    try {
      summary = await runReplay({ gateway: gateway.url, monitors: 4, durationS: 2, dataDir: excerptDir(), seed: 9 });
    } finally {
      await gateway.close();
    }
    expect(gateway.received).toHaveLength(8); // a 429 is not retried
    expect(summary.packets).toEqual({ planned: 8, sent: 8, accepted: 4, failed: 4, duplicates: 2, rejected429: 2, unanswered: 0 });
    expect(summary.statusCounts).toEqual({ 200: 4, 429: 2, 503: 2 });
    expect(summary.errorCodes).toEqual({ RATE_LIMITED: 2, QUEUE_UNAVAILABLE: 2 });
    expect(summary.deadlineMisses).toBe(6);
    expect(summary.roundTripMs.count).toBe(2);
  });

  it('stops sending on abort, waits for outstanding answers, and returns the summary', async () => {
    const gateway = await startStandIn(() => ({ delayMs: 3000, status: 200 }));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 1500);
    const started = performance.now();
    let summary: ReplaySummary;
    try {
      summary = await runReplay({ gateway: gateway.url, monitors: 3, durationS: 30, dataDir: excerptDir(), seed: 5, deadlineMs: 500 }, { signal: controller.signal });
    } finally {
      await gateway.close();
    }
    const took = performance.now() - started;
    expect(took).toBeLessThan(1500 + 1000 + 1500); // abort + drain (deadline + 500 ms) + slack
    expect(summary.aborted).toBe(true);
    expect(summary.packets.sent).toBeGreaterThanOrEqual(3);
    expect(summary.packets.sent).toBeLessThanOrEqual(6);
    expect(gateway.received).toHaveLength(summary.packets.sent);
    // Answers take 3 s: none came within the drain, all are unanswered misses.
    expect(summary.packets.unanswered).toBe(summary.packets.sent);
    expect(summary.deadlineMisses).toBe(summary.packets.sent);
    expect(summary.statusCounts).toEqual({ none: summary.packets.sent });
  });
});

describe('ecgfaas replay', () => {
  async function replay(...args: string[]): Promise<{ error?: unknown; stdout: string }> {
    const program = new Command('ecgfaas').exitOverride();
    registerReplayCommand(program);
    for (const command of program.commands) command.exitOverride();
    let stdout = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    try {
      await program.parseAsync(['replay', ...args], { from: 'user' });
      return { stdout };
    } catch (error) {
      return { error, stdout };
    } finally {
      spy.mockRestore();
    }
  }

  it('prints one JSON summary with the contract keys', async () => {
    const gateway = await startStandIn(() => ({ delayMs: 0, status: 200 }));
    let out: { error?: unknown; stdout: string };
    try {
      out = await replay('--gateway', gateway.url, '--monitors', '2', '--duration', '1', '--data', excerptDir(), '--records', '119,223', '--seed', '4', '--leads', '1', '--json');
    } finally {
      await gateway.close();
    }
    expect(out.error).toBeUndefined();
    const lines = out.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const summary = JSON.parse(lines[0]!) as ReplaySummary;
    expect(summary).toMatchObject({ monitors: 2, durationS: 1, seed: 4, records: ['119', '223'], leads: 1, deadlineMissRate: 0 });
    expect(Object.keys(summary.packets)).toEqual(expect.arrayContaining(['sent', 'accepted', 'failed', 'duplicates', 'rejected429']));
    expect(summary.packets.sent).toBe(2);
    expect(gateway.received.every((r) => r.packet.leads.length === 1 && r.packet.leads[0]!.name === 'MLII')).toBe(true);
  });

  it('turns bad flags, unknown records and an unreachable gateway into CliErrors', async () => {
    const base = ['--gateway', 'http://127.0.0.1:9', '--duration', '1', '--data', excerptDir()];
    const noMonitors = await replay(...base, '--monitors', '0');
    expect(noMonitors.error).toBeInstanceOf(CliError);
    expect(noMonitors.error).toMatchObject({ code: 'CLI_BAD_NUMBER', exitCode: 2, message: expect.stringContaining('--monitors') });

    const unknown = await replay(...base, '--monitors', '1', '--records', '101,999');
    expect(unknown.error).toBeInstanceOf(CliError);
    expect(unknown.error).toMatchObject({ code: 'REPLAY_UNKNOWN_RECORD', exitCode: 2, message: expect.stringContaining('999') });

    const unwritable = await replay(...base, '--monitors', '1', '--roundtrips', path.join(scratch, 'no-such-dir', 'rt.ndjson'));
    expect(unwritable.error).toMatchObject({ code: 'REPLAY_IO', exitCode: 1 });

    // A port nothing listens on: the start-up probe fails before any packet is planned to go.
    const closed = await startStandIn(() => ({ delayMs: 0, status: 200 }));
    await closed.close();
    const unreachable = await replay('--gateway', closed.url, '--duration', '1', '--data', excerptDir(), '--monitors', '1');
    expect(unreachable.error).toBeInstanceOf(CliError);
    expect(unreachable.error).toMatchObject({ code: 'REPLAY_GATEWAY_UNREACHABLE', exitCode: 1, message: expect.stringContaining(closed.url) });
  });
});
