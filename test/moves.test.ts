/**
 * Moving placed monitors during a replay (scheduler/moves.ts): every packet runs exactly once and in
 * order, across the handover; the move and the handover are events. Real stack: redis-server, the
 * embedded S3 store, a gateway and two worker processes, the replay over HTTP.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LatencyRecord } from '../contracts/invocation.js';
import { RedisClock } from '../queue/clock.js';
import { moveMonitors, type SchedulerEvent } from '../scheduler/index.js';
import { runOnStack, type RunOutcome } from '../stack/run.js';
import { excerptDir } from './support/data.js';
import { ecgfaas } from './support/processes.js';

/** The run, for the report test after it; its scratch directory goes when the file is done. */
let storedRun: { runId: string; dir: string; moved: string[] } = { runId: '', dir: '', moved: [] };
afterAll(async () => {
  if (storedRun.dir !== '') await rm(storedRun.dir, { recursive: true, force: true });
});

describe('moving monitors during a replay', () => {
  let scratch: string;
  let outcome: RunOutcome;
  const moved: Array<{ monitor: string; from: string; to: string; at: number }> = [];
  let parkedBySecond = 0;
  let cliMove: { code: number; json: Record<string, unknown> | null } = { code: -1, json: null };

  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-moves-'));
    outcome = await runOnStack({
      stack: { dir: scratch, workers: 2 },
      logger: pino({ level: 'warn' }), monitors: 4, durationS: 20, dataDir: excerptDir(), seed: 7, deadlineMs: 1000,
      reportsDir: path.join(scratch, 'reports'), runPrefix: 'moves',
      during: async (stack) => {
        const redisUrl = stack.info?.redisUrl as string;
        const redis = new Redis(redisUrl);
        const clock = new RedisClock(redis, { refreshMs: 0 });
        await clock.start();
        try {
          await sleep(3000);
          // Every monitor of the first worker goes to the second, in one route change. The first
          // worker is stopped meanwhile (well inside its lease), so packets queue up behind it and
          // the second must park the ones it gets until the first has run them.
          const assignments = await redis.hgetall(stack.keys.assignments);
          const slots = [...new Set(Object.values(assignments))].sort();
          const first = slots[0] as string;
          const second = stack.workers.map((worker) => worker.ready?.workerId).find((id) => id !== first) as string;
          const firstPid = stack.workers.find((worker) => worker.ready?.workerId === first)?.pid as number;
          const leaving = Object.keys(assignments).filter((monitor) => assignments[monitor] === first);
          process.kill(firstPid, 'SIGSTOP');
          try {
            await sleep(1200);
            const result = await moveMonitors({
              redis, keys: stack.keys, now: () => clock.now(), moves: leaving.map((monitor) => ({ monitor, to: second, reason: 'test: empty the first worker' })),
            });
            for (const item of result.outcomes) if (item.moved) moved.push({ monitor: item.monitor, from: first, to: second, at: clock.now() });
            await sleep(2000);
          } finally {
            process.kill(firstPid, 'SIGCONT');
          }
          await sleep(1000);
          parkedBySecond = (JSON.parse(await redis.hget(stack.keys.worker(second), 'stats') ?? '{}') as { parked?: number }).parked ?? 0;
          // And one back, by the CLI, as an operator would.
          const back = moved[0];
          if (back !== undefined) {
            const run = await ecgfaas(['monitors', 'move', back.monitor, '--to', back.from, '--reason', 'test: back again', '--json', '--redis', redisUrl, '--prefix', stack.keys.prefix]);
            cliMove = { code: run.code, json: run.code === 0 ? JSON.parse(run.stdout) as Record<string, unknown> : null };
            if (run.code === 0) moved.push({ monitor: back.monitor, from: back.to, to: back.from, at: clock.now() });
          }
        } finally {
          await clock.close();
          redis.disconnect();
        }
      },
    });
  }, 180_000);

  afterAll(() => {
    storedRun = { runId: outcome.runId, dir: scratch, moved: moved.map((move) => move.monitor) };
  });

  it('moved monitors without losing or repeating a packet', () => {
    expect(moved.length, 'monitors moved').toBeGreaterThanOrEqual(2);
    expect(parkedBySecond, 'packets the new worker parked while the old one had not run its queue').toBeGreaterThan(0);
    expect(cliMove.code, 'the CLI move').toBe(0);
    expect(cliMove.json).toMatchObject({ moved: true, acknowledged: true });
    expect(outcome.packets.accepted).toBeGreaterThan(40);
    expect(outcome.packets.lost).toBe(0);
    expect(outcome.failedJobs).toBe(0);
    const ids = outcome.records.filter((record) => record.status !== 'duplicate').map((record) => record.invocationId);
    expect(ids.length, 'one record per packet').toBe(new Set(ids).size);
  });

  it('ran each moved monitor\'s packets in order, on the old worker and then the new one', () => {
    for (const monitor of new Set(moved.map((move) => move.monitor))) {
      const records = outcome.records.filter((record) => record.monitorId === monitor).sort((a, b) => a.startedAt - b.startedAt);
      expect(records.map((record) => record.status).filter((status) => status !== 'processed'), `${monitor}: every packet processed`).toEqual([]);
      const seqs = records.map((record) => record.seq);
      expect(seqs, `${monitor}: in order, none missing`).toEqual(Array.from({ length: seqs.length }, (_, index) => (seqs[0] as number) + index));
      const workers = runs(records);
      const hops = moved.filter((move) => move.monitor === monitor);
      expect(workers, `${monitor}: the workers that ran it, in turn`).toEqual([hops[0]?.from, ...hops.map((move) => move.to)]);
    }
  });

  it('recorded every move and every handover as events', () => {
    // The run's events, read after it drained (every handover done by then).
    const events = outcome.report.events as SchedulerEvent[];
    const movedEvents = events.filter((event) => event.type === 'monitor-moved');
    const done = events.filter((event) => event.type === 'handover-done');
    expect(movedEvents.map((event) => event.monitor).sort()).toEqual(moved.map((move) => move.monitor).sort());
    expect(movedEvents.map((event) => event.reason)).toContain('test: back again');
    expect(done.map((event) => event.moveId).sort()).toEqual(movedEvents.map((event) => event.moveId).sort());
  });
});

describe('moves in the stored report', () => {
  it('are listed by ecgfaas report later, with each moved monitor\'s latency before and after', async () => {
    // (Runs after the describe above, on the store its run left in its scratch directory.)
    const run = await ecgfaas(['report', '--run', storedRun.runId, '--store', storedRun.dir, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { events: Array<{ type: string; monitor?: string }>; moves: Array<{ monitor: string; before: { n: number }; after: { n: number } }> };
    expect(report.events.filter((event) => event.type === 'monitor-moved').map((event) => event.monitor).sort()).toEqual(storedRun.moved.sort());
    expect(report.moves.map((move) => move.monitor).sort()).toEqual(storedRun.moved.sort());
    for (const move of report.moves) expect(move.before.n + move.after.n).toBeGreaterThan(0);
  });
});

/** The workers that ran a monitor's packets, each run of consecutive records once. */
function runs(records: readonly LatencyRecord[]): string[] {
  const out: string[] = [];
  for (const record of records) if (out.at(-1) !== record.workerId) out.push(record.workerId);
  return out;
}
