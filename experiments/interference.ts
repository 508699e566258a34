/**
 * The interference experiment (issue 4): local VMs confined by cgroups, functions as heavy as the
 * paper's (`--extra-compute-ms`), monitors placed 2 per VM by a policy, and the scheduler's control
 * loop watching. Mid-replay a CPU hog starts inside the cgroup of the VM carrying the most monitors;
 * the scheduler should see its latency rise, quarantine it and move its monitors to the other VMs,
 * after which their deadline misses stop. Prints the scheduler's events and, for the monitors that
 * started on the hogged VM, their latency before the hog, under it before the move, and after the
 * move (service time: gateway receipt → result published, from the latency records).
 *
 *   npx tsx experiments/interference.ts [--vms 3] [--vcpus 0.5] [--monitors 4] [--extra-compute-ms 150]
 *       [--duration 90] [--hog-at 25] [--hog-processes 4] [--json]
 *
 * The hog is several busy processes: the Linux scheduler shares a cgroup's quota fairly among its
 * runnable tasks and favours one that sleeps between packets, so a single busy loop leaves a light
 * function most of what it needs; four take all but a fifth.
 *
 * Needs a writable cgroup filesystem (root): without one a VM's CPU share is not real and a hog
 * "inside" it would slow every VM alike.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { quantileSorted } from 'simple-statistics';
import type { LatencyRecord } from '../contracts/invocation.js';
import { CpuGroup, detectCgroups } from '../deploy/cgroups.js';
import { readSchedulerEvents, type SchedulerEvent } from '../scheduler/index.js';
import { runOnStack } from '../stack/run.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '3' },
    vcpus: { type: 'string', default: '0.5' },
    monitors: { type: 'string', default: '4' },
    'extra-compute-ms': { type: 'string', default: '150' },
    duration: { type: 'string', default: '90' },
    'hog-at': { type: 'string', default: '25' },
    'hog-processes': { type: 'string', default: '4' },
    'data-dir': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const vmCount = Number(values.vms);
const extraComputeMs = Number(values['extra-compute-ms']);
const hogAtS = Number(values['hog-at']);
const durationS = Number(values.duration);
if (detectCgroups() === null) {
  process.stderr.write('interference experiment: no cgroup filesystem here; a local VM\'s CPU share would not be real\n');
  process.exit(2);
}

const scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-interference-'));
const policyFile = path.join(scratch, 'policy.yaml');
// The paper's rule (2 per VM), the functions' expected cost, and a quarantine that outlasts the run.
await writeFile(policyFile, [
  'maxInstancesPerVm: 2', 'strategy: spread', 'onNoCapacity: refuse', `defaultCostMsPerPacket: ${extraComputeMs + 10}`, 'cpuHeadroom: 0.2',
  'interference: { quarantineS: 600, verifyAfterS: 20 }',
].join('\n'));

const hogs: Array<ReturnType<typeof spawn>> = [];
let hogged = '';
let hogStartedAt = 0;
let events: SchedulerEvent[] = [];
let firstPlacement = new Map<string, string>();
const outcome = await runOnStack({
  stack: {
    dir: scratch, workers: 0, extraComputeMs, policy: policyFile, scheduler: { intervalMs: 2000 },
    vms: { count: vmCount, vcpus: Number(values.vcpus), memoryMb: 768 },
  },
  logger: pino({ level: 'warn' }), monitors: Number(values.monitors), durationS, dataDir: values['data-dir'] ?? path.join(root, 'data', 'excerpt'),
  seed: 1, deadlineMs: 1000, reportsDir: path.join(scratch, 'reports'), runPrefix: 'interference',
  during: async (stack) => {
    const redis = new Redis(stack.info?.redisUrl as string);
    try {
      await sleep(hogAtS * 1000);
      const assignments = await redis.hgetall(stack.keys.assignments);
      const vmOf = async (worker: string) => (await redis.hget(stack.keys.worker(worker), 'vm')) ?? worker;
      firstPlacement = new Map(await Promise.all(Object.entries(assignments).map(async ([monitor, slot]) => [monitor, await vmOf(slot)] as [string, string])));
      const counts = new Map<string, number>();
      for (const vm of firstPlacement.values()) counts.set(vm, (counts.get(vm) ?? 0) + 1);
      hogged = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0] ?? 'vm-1';
      // The hog: busy loops, each in the VM's cgroup before it runs a single iteration of note.
      for (let index = 0; index < Number(values['hog-processes']); index++) {
        const hog = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
        hogs.push(hog);
        await CpuGroup.open(hogged).add(hog.pid as number);
      }
      hogStartedAt = Date.now();
      process.stderr.write(`hog (${hogs.length} busy processes) started in ${hogged} at +${hogAtS} s\n`);
      await sleep((durationS - hogAtS - 1) * 1000);
      events = await readSchedulerEvents(redis, stack.keys, 1000);
    } finally {
      for (const hog of hogs) hog.kill('SIGKILL');
      redis.disconnect();
    }
  },
});

const ours = events.filter((event) => event.at >= hogStartedAt - 60_000);
const moves = ours.filter((event) => event.type === 'monitor-moved');
const movedAt = moves.length > 0 ? Math.min(...moves.map((event) => event.at)) : null;
const handovers = ours.filter((event) => event.type === 'handover-done');
const settledAt = handovers.length > 0 ? Math.max(...handovers.map((event) => event.at)) : movedAt;
const onHogged = [...firstPlacement].filter(([, vm]) => vm === hogged).map(([monitor]) => monitor);
const start = Math.min(...outcome.records.map((record) => record.receivedAt));
const phase = (from: number, to: number, monitors: readonly string[]) => summarise(outcome.records.filter((record) => monitors.includes(record.monitorId) && record.receivedAt >= from && record.receivedAt < to));
const end = Math.max(...outcome.records.map((record) => record.receivedAt)) + 1;
const everyone = [...firstPlacement.keys()];
const result = {
  config: { vms: vmCount, vcpus: Number(values.vcpus), monitors: Number(values.monitors), extraComputeMs, durationS, hogAtS },
  hoggedVm: hogged,
  placementBeforeHog: Object.fromEntries(firstPlacement),
  detectedAfterS: round((ours.find((event) => event.type === 'interference-detected')?.at ?? Number.NaN) - hogStartedAt),
  movedAfterS: movedAt === null ? null : round(movedAt - hogStartedAt),
  handoverDoneAfterS: settledAt === null ? null : round(settledAt - hogStartedAt),
  movedMonitors: {
    monitors: onHogged,
    beforeHog: phase(start + 5000, hogStartedAt, onHogged),
    hogBeforeMove: phase(hogStartedAt, movedAt ?? end, onHogged),
    afterMove: phase((settledAt ?? end) + 2000, end, onHogged),
  },
  allMonitorsAfterMove: phase((settledAt ?? end) + 2000, end, everyone),
  packets: outcome.packets,
  /** Seqs without a record, per monitor (none expected). */
  missingSeqs: Object.fromEntries(everyone.map((monitor) => {
    const seqs = new Set(outcome.records.filter((record) => record.monitorId === monitor).map((record) => record.seq));
    const last = Math.max(-1, ...seqs);
    return [monitor, Array.from({ length: last + 1 }, (_, seq) => seq).filter((seq) => !seqs.has(seq))];
  }).filter(([, missing]) => (missing as number[]).length > 0)),
  events: ours.map((event) => ({ atS: round(event.at - hogStartedAt), type: event.type, vm: event.vm ?? event.fromVm ?? null, monitor: event.monitor ?? null, toVm: event.toVm ?? null, reason: event.reason })),
};
await rm(scratch, { recursive: true, force: true });
if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
else {
  process.stdout.write(`hogged ${result.hoggedVm}; detected +${result.detectedAfterS} s, moved +${result.movedAfterS} s, handovers done +${result.handoverDoneAfterS} s (times from the hog's start)\n`);
  for (const [name, stats] of Object.entries(result.movedMonitors)) if (name !== 'monitors') process.stdout.write(`  ${name.padEnd(14)} ${JSON.stringify(stats)}\n`);
  process.stdout.write(`  all monitors after the move: ${JSON.stringify(result.allMonitorsAfterMove)}\n  packets: ${JSON.stringify(result.packets)}; missing seqs: ${JSON.stringify(result.missingSeqs)}\n`);
  for (const event of result.events) process.stdout.write(`  +${event.atS} s ${event.type} ${event.monitor ?? event.vm ?? ''}${event.toVm ? ` → ${event.toVm}` : ''}: ${event.reason}\n`);
}

function summarise(records: readonly LatencyRecord[]) {
  const times = records.filter((record) => record.status === 'processed').map((record) => record.serviceTimeMs).sort((a, b) => a - b);
  return {
    packets: times.length,
    misses: times.filter((ms) => ms > 1000).length,
    p50Ms: times.length === 0 ? null : Math.round(quantileSorted(times, 0.5)),
    p95Ms: times.length === 0 ? null : Math.round(quantileSorted(times, 0.95)),
    maxMs: times.length === 0 ? null : Math.round(times.at(-1) as number),
  };
}

function round(ms: number): number | null {
  return Number.isFinite(ms) ? Math.round(ms / 100) / 10 : null;
}
