/**
 * The interference experiment (issue 4): local VMs confined by cgroups, functions as heavy as the
 * paper's (`--extra-compute-ms`), monitors placed 2 per VM by a policy, and the scheduler's control
 * loop watching. Mid-replay a CPU hog starts inside the cgroup of the VM carrying the most monitors;
 * the scheduler should see its latency rise, quarantine it and move its monitors to the other VMs,
 * after which their deadline misses stop. Prints the scheduler's events and, for the monitors that
 * started on the hogged VM, their latency before the hog, under it before the move, and after the
 * move (service time: gateway receipt → result published, from the latency records).
 *
 *   npx tsx experiments/interference.ts [--vms 3] [--vcpus 0.5] [--monitors 4] [--extra-compute-ms 100]
 *       [--duration 90] [--hog-at 20] [--hog-processes 4] [--kind hog|stutter] [--json]
 *
 * The hog is several busy processes: the Linux scheduler shares a cgroup's quota fairly among its
 * runnable tasks and favours one that sleeps between packets, so a single busy loop leaves a light
 * function most of what it needs; four take all but a fifth.
 *
 * `--kind hog` needs a writable cgroup filesystem (root): without one a VM's CPU share is not real
 * and a hog "inside" it would slow every VM alike; `--kind stutter` starves the VM's workers by
 * stopping them most of the time instead, and runs anywhere.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { quantileSorted } from 'simple-statistics';
import type { LatencyRecord } from '../contracts/invocation.js';
import { CpuGroup, detectCgroups } from '../deploy/cgroups.js';
import { readVm, vmCgroupName } from '../deploy/vms.js';
import { runOnStack } from '../stack/run.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface InterferenceOptions {
  vms: number;
  vcpus: number;
  monitors: number;
  extraComputeMs: number;
  durationS: number;
  hogAtS: number;
  /**
   * What interferes: `hog`, busy processes in the VM's cgroup (needs cgroups); `stutter`, its workers
   * stopped for 1.5 s of every 1.8 s by SIGSTOP/SIGCONT (any machine; a VM starved by its host).
   */
  kind: 'hog' | 'stutter';
  hogProcesses: number;
  dataDir: string;
  /** Passes of the scheduler's control loop (ms). */
  intervalMs?: number;
  /** How long after the moves the scheduler checks that they helped (s; default 20). */
  verifyAfterS?: number;
}

export async function runInterferenceExperiment(options: InterferenceOptions) {
  const scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-interference-'));
  const policyFile = path.join(scratch, 'policy.yaml');
  // The paper's rule (2 per VM), the functions' expected cost, and a quarantine that outlasts the run.
  await writeFile(policyFile, [
    'maxInstancesPerVm: 2', 'strategy: spread', 'onNoCapacity: refuse', `defaultCostMsPerPacket: ${options.extraComputeMs + 10}`, 'cpuHeadroom: 0.2',
    `interference: { quarantineS: 600, verifyAfterS: ${options.verifyAfterS ?? 20} }`,
  ].join('\n'));
  const hogs: Array<ReturnType<typeof spawn>> = [];
  let stutter: NodeJS.Timeout | null = null;
  let hogged = '';
  let hogStartedAt = 0;
  let firstPlacement = new Map<string, string>();
  try {
    const outcome = await runOnStack({
      stack: {
        dir: scratch, workers: 0, extraComputeMs: options.extraComputeMs, policy: policyFile, scheduler: { intervalMs: options.intervalMs ?? 2000 },
        vms: { count: options.vms, vcpus: options.vcpus, memoryMb: 768 },
      },
      logger: pino({ level: 'warn' }), monitors: options.monitors, durationS: options.durationS, dataDir: options.dataDir,
      seed: 1, deadlineMs: 1000, reportsDir: path.join(scratch, 'reports'), runPrefix: 'interference',
      during: async (stack) => {
        const redis = new Redis(stack.info?.redisUrl as string);
        try {
          await sleep(options.hogAtS * 1000);
          const assignments = await redis.hgetall(stack.keys.assignments);
          const vmOf = async (worker: string) => (await redis.hget(stack.keys.worker(worker), 'vm')) ?? worker;
          firstPlacement = new Map(await Promise.all(Object.entries(assignments).map(async ([monitor, slot]) => [monitor, await vmOf(slot)] as [string, string])));
          const counts = new Map<string, number>();
          for (const vm of firstPlacement.values()) counts.set(vm, (counts.get(vm) ?? 0) + 1);
          hogged = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0] ?? 'vm-1';
          if (options.kind === 'hog') {
            // Busy loops, each in the VM's cgroup before it runs a single iteration of note.
            for (let index = 0; index < options.hogProcesses; index++) {
              const hog = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
              hogs.push(hog);
              await CpuGroup.open(vmCgroupName(stack.keys, hogged)).add(hog.pid as number);
            }
          } else {
            const record = await readVm(redis, stack.keys, hogged);
            const pids = (record?.workers ?? []).map((worker) => worker.pid).filter((pid): pid is number => pid !== null);
            const cycle = () => {
              for (const pid of pids) process.kill(pid, 'SIGSTOP');
              setTimeout(() => {
                for (const pid of pids) process.kill(pid, 'SIGCONT');
              }, 1500).unref();
            };
            cycle();
            stutter = setInterval(cycle, 1800);
          }
          hogStartedAt = Date.now();
          await sleep((options.durationS - options.hogAtS - 1) * 1000);
        } finally {
          for (const hog of hogs) hog.kill('SIGKILL');
          if (stutter !== null) clearInterval(stutter);
          // Let a stopped worker go on, whatever the cycle's state.
          await sleep(1600);
          redis.disconnect();
        }
      },
    });
    const events = outcome.report.events.filter((event) => event.at >= hogStartedAt - 60_000);
    const moves = events.filter((event) => event.type === 'monitor-moved');
    const movedAt = moves.length > 0 ? Math.min(...moves.map((event) => event.at)) : null;
    const handovers = events.filter((event) => event.type === 'handover-done');
    const settledAt = handovers.length > 0 ? Math.max(...handovers.map((event) => event.at)) : movedAt;
    const onHogged = [...firstPlacement].filter(([, vm]) => vm === hogged).map(([monitor]) => monitor);
    const start = Math.min(...outcome.records.map((record) => record.receivedAt));
    const end = Math.max(...outcome.records.map((record) => record.receivedAt)) + 1;
    const phase = (from: number, to: number, monitors: readonly string[]) => summarise(outcome.records.filter((record) => monitors.includes(record.monitorId) && record.receivedAt >= from && record.receivedAt < to));
    const everyone = [...firstPlacement.keys()];
    return {
      config: { ...options, dataDir: undefined },
      hoggedVm: hogged,
      placementBeforeHog: Object.fromEntries(firstPlacement),
      detectedAfterS: round((events.find((event) => event.type === 'interference-detected' && event.vm === hogged)?.at ?? Number.NaN) - hogStartedAt),
      movedAfterS: movedAt === null ? null : round(movedAt - hogStartedAt),
      handoverDoneAfterS: settledAt === null ? null : round(settledAt - hogStartedAt),
      movedMonitors: {
        monitors: onHogged,
        beforeHog: phase(start + 5000, hogStartedAt, onHogged),
        hogBeforeMove: phase(hogStartedAt, movedAt ?? end, onHogged),
        afterMove: phase((settledAt ?? end) + 2000, end, onHogged),
      },
      allMonitorsAfterMove: phase((settledAt ?? end) + 2000, end, everyone),
      /** The last 20 s of the run: every monitor, wherever it ran. */
      allMonitorsLast20s: phase(end - 20_000, end, everyone),
      packets: outcome.packets,
      /** Seqs without a record, per monitor (none expected). */
      missingSeqs: Object.fromEntries(everyone.map((monitor) => {
        const seqs = new Set(outcome.records.filter((record) => record.monitorId === monitor).map((record) => record.seq));
        const last = Math.max(-1, ...seqs);
        return [monitor, Array.from({ length: last + 1 }, (_, seq) => seq).filter((seq) => !seqs.has(seq))];
      }).filter(([, missing]) => (missing as number[]).length > 0)),
      events: events.map((event) => ({ atS: round(event.at - hogStartedAt), type: event.type, vm: event.vm ?? event.fromVm ?? null, monitor: event.monitor ?? null, toVm: event.toVm ?? null, reason: event.reason })),
      moves: outcome.report.moves,
      reportText: outcome.reportText,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
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

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      vms: { type: 'string', default: '3' },
      vcpus: { type: 'string', default: '0.5' },
      monitors: { type: 'string', default: '4' },
      'extra-compute-ms': { type: 'string', default: '100' },
      duration: { type: 'string', default: '90' },
      'hog-at': { type: 'string', default: '20' },
      'hog-processes': { type: 'string', default: '4' },
      kind: { type: 'string', default: 'hog' },
      'data-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const kind = values.kind === 'stutter' ? 'stutter' : 'hog';
  if (kind === 'hog' && detectCgroups() === null) {
    process.stderr.write('interference experiment: no cgroup filesystem here, so a hog cannot be put inside one VM; try --kind stutter\n');
    process.exit(2);
  }
  const result = await runInterferenceExperiment({
    vms: Number(values.vms), vcpus: Number(values.vcpus), monitors: Number(values.monitors), extraComputeMs: Number(values['extra-compute-ms']),
    durationS: Number(values.duration), hogAtS: Number(values['hog-at']), kind, hogProcesses: Number(values['hog-processes']),
    dataDir: values['data-dir'] ?? path.join(root, 'data', 'excerpt'),
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ ...result, reportText: undefined })}\n`);
  else {
    process.stdout.write(`${kind} in ${result.hoggedVm}; detected +${result.detectedAfterS} s, moved +${result.movedAfterS} s, handovers done +${result.handoverDoneAfterS} s (from the interference's start)\n`);
    for (const [name, stats] of Object.entries(result.movedMonitors)) if (name !== 'monitors') process.stdout.write(`  ${name.padEnd(14)} ${JSON.stringify(stats)}\n`);
    process.stdout.write(`  all monitors after the move: ${JSON.stringify(result.allMonitorsAfterMove)}\n  all monitors, last 20 s: ${JSON.stringify(result.allMonitorsLast20s)}\n`);
    process.stdout.write(`  packets: ${JSON.stringify(result.packets)}; missing seqs: ${JSON.stringify(result.missingSeqs)}\n`);
    for (const event of result.events) process.stdout.write(`  +${event.atS} s ${event.type} ${event.monitor ?? event.vm ?? ''}${event.toVm ? ` → ${event.toVm}` : ''}: ${event.reason}\n`);
    process.stdout.write(`\n${result.reportText}`);
  }
}
