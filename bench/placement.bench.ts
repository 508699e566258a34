/**
 * Placement decision time: 10,000 new monitors placed one by one on 500 warm workers (500 VMs of
 * 2 vCPUs on 25 hosts of 48 CPUs), the policy capping 25 instances per VM, every rule evaluated for
 * every worker at every decision (that record is what `placement explain` shows).
 *
 *   npx tsx bench/placement.bench.ts [--monitors 10000] [--workers 500] [--rounds 3] [--json]
 */
import { parseArgs } from 'node:util';
import { plan, resolvePolicy, type Inventory } from '../scheduler/index.js';

const { values } = parseArgs({
  options: {
    monitors: { type: 'string', default: '10000' },
    workers: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const monitors = Number(values.monitors);
const workers = Number(values.workers);
const hosts = Math.ceil(workers / 20);
const inventory: Inventory = {
  hosts: Array.from({ length: hosts }, (_, index) => ({ name: `host-${index}`, hypervisor: index % 2 === 0 ? 'kvm' as const : 'xen-hvm' as const, cpus: 48, memoryMb: 262_144 })),
  vms: Array.from({ length: workers }, (_, index) => ({ name: `vm-${index}`, host: `host-${index % hosts}`, vcpus: 2, memoryMb: 4096, state: 'running' as const })),
  workers: Array.from({ length: workers }, (_, index) => ({ id: `w-${String(index).padStart(4, '0')}`, vm: `vm-${index}`, alive: true })),
  instances: [],
};
const policy = resolvePolicy({
  maxInstancesPerVm: 25, maxVms: workers, strategy: 'spread', defaultCostMsPerPacket: 5,
  antiAffinity: [{ profile: 'noisy', maxPerVm: 2 }],
  hypervisorPreference: [{ maxHostLoad: 0.7, prefer: ['xen-hvm', 'kvm'] }, { maxHostLoad: 10, prefer: ['kvm', 'xen-hvm'] }],
});
const requests = Array.from({ length: monitors }, (_, index) => ({ monitor: `m-${index}`, ...(index % 10 === 0 ? { profiles: ['noisy'] } : {}) }));

const rounds = [];
for (let round = 0; round < Number(values.rounds); round++) {
  const times: number[] = [];
  const started = performance.now();
  const result = plan(inventory, policy, requests, { onDecision: (_decision, ms) => times.push(ms) });
  const totalMs = performance.now() - started;
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))] as number;
  rounds.push({ placed: result.placements.length, refused: result.refused.length, totalMs, medianMs: at(0.5), p99Ms: at(0.99), maxMs: at(1) });
}
const best = [...rounds].sort((a, b) => a.medianMs - b.medianMs)[Math.floor(rounds.length / 2)] as (typeof rounds)[number];
const summary = { monitors, workers, rounds: rounds.length, medianOfRounds: best, rounds_: rounds };
if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
else {
  for (const r of rounds) process.stdout.write(`placed ${r.placed}, refused ${r.refused}: per decision median ${r.medianMs.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, max ${r.maxMs.toFixed(1)} ms; all ${(r.totalMs / 1000).toFixed(2)} s\n`);
}
