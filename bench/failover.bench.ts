/**
 * Failover time: the embedded stack with 3 workers under an open-loop replay of N monitors; after
 * `--kill-after` seconds the worker holding the most monitors is SIGKILLed. Failover = kill → the
 * first packet of each of its monitors processed by another worker (latency records, Redis clock),
 * reported per monitor (median and max), with the run's lost and duplicated packets.
 *
 *   npx tsx bench/failover.bench.ts [--monitors 30] [--duration 30] [--kill-after 10] [--rounds 3] [--json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { newRunId, runOnStack } from '../stack/run.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    monitors: { type: 'string', default: '30' },
    duration: { type: 'string', default: '30' },
    'kill-after': { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});

const scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-failover-'));
const rounds = [];
for (let round = 0; round < Number(values.rounds); round++) {
  let killedAt = 0;
  let victimId = '';
  const outcome = await runOnStack({
    stack: { dir: scratch, workers: 3 },
    logger: pino({ level: 'warn' }), monitors: Number(values.monitors), durationS: Number(values.duration),
    dataDir: path.join(root, 'data', 'excerpt'), seed: round + 1, deadlineMs: 1000, warmupS: 3,
    reportsDir: path.join(scratch, 'reports'), runPrefix: `failover${round}`,
    during: async (stack) => {
      await sleep(Number(values['kill-after']) * 1000);
      const redis = new Redis(stack.info?.redisUrl as string);
      const assignments = Object.values(await redis.hgetall(stack.keys.assignments));
      redis.disconnect();
      const load = (id: string) => assignments.filter((slot) => slot === id).length;
      const victim = [...stack.workers].filter((worker) => worker.running).sort((a, b) => load(b.ready?.workerId ?? '') - load(a.ready?.workerId ?? ''))[0];
      victimId = victim?.ready?.workerId ?? '';
      killedAt = Date.now();
      await victim?.kill();
    },
  });
  const before = outcome.records.filter((record) => record.workerId === victimId && record.startedAt < killedAt);
  const victimMonitors = new Set(before.map((record) => record.monitorId));
  const failoverMs: number[] = [];
  for (const monitor of victimMonitors) {
    const after = outcome.records.filter((record) => record.monitorId === monitor && record.startedAt >= killedAt && record.workerId !== victimId);
    const first = Math.min(...after.map((record) => record.startedAt));
    if (Number.isFinite(first)) failoverMs.push(first - killedAt);
  }
  failoverMs.sort((a, b) => a - b);
  const ids = outcome.records.filter((record) => record.status !== 'duplicate').map((record) => record.invocationId);
  rounds.push({
    victim: victimId, monitorsMoved: victimMonitors.size, resumed: failoverMs.length,
    failoverMs: { median: failoverMs[Math.floor(failoverMs.length / 2)] ?? null, max: failoverMs.at(-1) ?? null },
    lost: outcome.packets.lost, duplicated: ids.length - new Set(ids).size, deadlineMisses: outcome.report.overall.misses,
  });
  if (!values.json) process.stderr.write(`${JSON.stringify(rounds.at(-1))}\n`);
}
await rm(scratch, { recursive: true, force: true });
if (values.json) process.stdout.write(`${JSON.stringify({ runId: newRunId('failover'), rounds })}\n`);
