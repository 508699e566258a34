/**
 * The scheduler's policy and planner: the policy file's schema and errors, the 2/2/2 case
 * through the real CLI (`ecgfaas plan --json`), and properties of placement over random inventories
 * checked by rules written again here, independently of scheduler/placement.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HYPERVISOR_KINDS } from '../contracts/invocation.js';
import {
  explain, hostReserve, loadPolicy, plan, resolvePolicy, type Inventory, type MonitorRequest, type Plan, type Policy,
} from '../scheduler/index.js';
import { ecgfaas } from './support/processes.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-scheduler-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function policyFile(name: string, yaml: string): Promise<string> {
  const file = path.join(scratch, name);
  await writeFile(file, yaml);
  return file;
}


describe('placement policy file', () => {
  it('fills what a file leaves out from the defaults, or from the paper preset', async () => {
    const plain = await loadPolicy(await policyFile('plain.yaml', 'maxVms: 4\n'));
    expect(plain).toMatchObject({ maxVms: 4, onNoCapacity: 'refuse', idleVm: 'keep', strategy: 'spread', cpuHeadroom: 0.2, defaultCostMsPerPacket: 5 });
    expect(plain.maxInstancesPerVm).toBeUndefined();
    const paper = await loadPolicy(path.join(root, 'scheduler', 'policies', 'paper.yaml'));
    expect(paper).toMatchObject({ maxInstancesPerVm: 2, defaultCostMsPerPacket: 305, idleVm: 'pause', onNoCapacity: 'scale-out' });
    expect(hostReserve(paper, 'xen-pv')).toBe(1);
    expect(hostReserve(paper, 'kvm')).toBe(0);
    expect((await loadPolicy(path.join(root, 'scheduler', 'policies', 'example.yaml'))).antiAffinity).toEqual([{ profile: 'high-rate', maxPerVm: 1 }]);
  });

  it.each([
    ['maxInstancesPerVm: 0', '/maxInstancesPerVm'],
    ['maxVms: 2.5', '/maxVms'],
    ['onNoCapacity: wait', '/onNoCapacity'],
    ['idleVm: hibernate', '/idleVm'],
    ['cpuHeadroom: 1.5', '/cpuHeadroom'],
    ['strategy: random', '/strategy'],
    ['hostReserveCpus: { vmware: 1 }', '/hostReserveCpus/vmware'],
    ['antiAffinity: [{ profile: noisy }]', '/antiAffinity/0/maxPerVm'],
    ['hypervisorPreference: [{ maxHostLoad: 0.5, prefer: [hyperv] }]', '/hypervisorPreference/0/prefer/0'],
    ['scaleOut: { vcpus: 0, memoryMb: 512, hypervisor: kvm }', '/scaleOut/vcpus'],
    ['maxInstancesPerVM: 2', '/maxInstancesPerVM'],
  ])('refuses "%s" with POLICY_INVALID naming %s', async (yaml, where) => {
    const file = await policyFile('bad.yaml', `${yaml}\n`);
    await expect(loadPolicy(file)).rejects.toMatchObject({ code: 'POLICY_INVALID', message: expect.stringContaining(`${where}:`) });
  });

  it('refuses a missing file, a file that is not YAML, and a document that is not a mapping', async () => {
    await expect(loadPolicy(path.join(scratch, 'nope.yaml'))).rejects.toMatchObject({ code: 'POLICY_UNREADABLE' });
    await expect(loadPolicy(await policyFile('broken.yaml', 'maxVms: [1\n'))).rejects.toMatchObject({ code: 'POLICY_UNREADABLE' });
    await expect(loadPolicy(await policyFile('list.yaml', '- 1\n- 2\n'))).rejects.toMatchObject({ code: 'POLICY_INVALID' });
  });
});

describe('ecgfaas plan (the issue\'s case: at most 2 per VM, 3 local VMs)', () => {
  it('places 6 monitors 2/2/2 and scales out a 4th VM for the 7th', async () => {
    const file = await policyFile('scale.yaml', 'maxInstancesPerVm: 2\nmaxVms: 4\nonNoCapacity: scale-out\n');
    const { code, stdout } = await ecgfaas(['plan', '--policy', file, '--vms', '3', '--monitors', '7', '--json']);
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as Pick<Plan, 'placements' | 'refused' | 'scaleOut'>;
    const perVm = (vm: string) => out.placements.filter((p) => p.vm === vm).length;
    expect(['vm-1', 'vm-2', 'vm-3'].map(perVm)).toEqual([2, 2, 2]);
    expect(out.placements.find((p) => p.monitor === 'm-7')).toEqual({ monitor: 'm-7', vm: 'vm-4', worker: 'vm-4-w1' });
    expect(out.scaleOut).toEqual([{ vm: 'vm-4', host: 'local', reason: expect.stringContaining('maxInstancesPerVm') }]);
    expect(out.refused).toEqual([]);
  });

  it('refuses the 7th with the policy\'s reason when it says refuse, or when maxVms is reached', async () => {
    for (const [yaml, why] of [
      ['maxInstancesPerVm: 2\nonNoCapacity: refuse\n', 'onNoCapacity is refuse'],
      ['maxInstancesPerVm: 2\nonNoCapacity: scale-out\nmaxVms: 3\n', 'maxVms 3'],
    ] as const) {
      const { code, stdout } = await ecgfaas(['plan', '--policy', await policyFile('refuse.yaml', yaml), '--vms', '3', '--monitors', '7', '--json']);
      expect(code).toBe(0);
      const out = JSON.parse(stdout) as Pick<Plan, 'placements' | 'refused' | 'scaleOut'>;
      expect(out.placements).toHaveLength(6);
      expect(out.scaleOut).toEqual([]);
      expect(out.refused).toEqual([{ monitor: 'm-7', reason: expect.stringContaining(why) }]);
      expect(out.refused[0]?.reason).toContain('maxInstancesPerVm: 2 of 2 on vm-1');
    }
  });

  it('prints a table and explanations as text; bad flags and policies exit non-zero with a message', async () => {
    const file = await policyFile('text.yaml', 'maxInstancesPerVm: 2\n');
    const text = await ecgfaas(['plan', '--policy', file, '--vms', '2', '--monitors', '5', '--explain']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/vm-1\s+m-1, m-3/);
    expect(text.stdout).toContain('placed 4, refused 1, new VMs 0');
    expect(text.stdout).toContain('m-5: refused.');
    expect(text.stdout).toMatch(/vm-1\/vm-1-w1 on local: excluded by maxInstancesPerVm: 2 of 2 on vm-1/);
    const badFlag = await ecgfaas(['plan', '--policy', file, '--vms', 'three', '--monitors', '5']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('CLI_BAD_NUMBER');
    const badPolicy = await ecgfaas(['plan', '--policy', await policyFile('bad2.yaml', 'strategy: random\n'), '--vms', '2', '--monitors', '5']);
    expect(badPolicy.code).toBe(1);
    expect(badPolicy.stderr).toContain('[POLICY_INVALID]');
    expect(badPolicy.stderr).toContain('/strategy');
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over random inventories, policies and monitors.

const arbitraryPolicy: fc.Arbitrary<Policy> = fc.record({
  maxInstancesPerVm: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
  maxInstancesPerHost: fc.option(fc.integer({ min: 1, max: 10 }), { nil: undefined }),
  maxVms: fc.integer({ min: 1, max: 8 }),
  onNoCapacity: fc.constantFrom('scale-out' as const, 'refuse' as const),
  strategy: fc.constantFrom('spread' as const, 'pack' as const),
  cpuHeadroom: fc.constantFrom(0, 0.1, 0.25, 0.5),
  defaultCostMsPerPacket: fc.constantFrom(5, 50, 305),
  reserveXen: fc.constantFrom(0, 1),
  antiAffinity: fc.constantFrom([], [{ profile: 'noisy', maxPerVm: 1 }], [{ profile: 'noisy', maxPerVm: 2 }, { profile: 'fast', maxPerVm: 1 }]),
  prefer: fc.boolean(),
  scaleOutVcpus: fc.constantFrom(0.5, 1, 2),
}).map((p) => resolvePolicy({
  ...(p.maxInstancesPerVm !== undefined ? { maxInstancesPerVm: p.maxInstancesPerVm } : {}),
  ...(p.maxInstancesPerHost !== undefined ? { maxInstancesPerHost: p.maxInstancesPerHost } : {}),
  maxVms: p.maxVms, onNoCapacity: p.onNoCapacity, strategy: p.strategy, cpuHeadroom: p.cpuHeadroom,
  defaultCostMsPerPacket: p.defaultCostMsPerPacket, hostReserveCpus: { 'xen-pv': p.reserveXen, 'xen-hvm': p.reserveXen, '*': 0 },
  antiAffinity: p.antiAffinity,
  hypervisorPreference: p.prefer ? [{ maxHostLoad: 0.6, prefer: ['xen-pv', 'kvm'] }, { maxHostLoad: 10, prefer: ['kvm'] }] : [],
  scaleOut: { vcpus: p.scaleOutVcpus, memoryMb: 512, hypervisor: 'kvm' },
}));

const arbitraryInventory: fc.Arbitrary<Inventory> = fc.record({
  hosts: fc.array(fc.record({ hypervisor: fc.constantFrom(...HYPERVISOR_KINDS), cpus: fc.integer({ min: 1, max: 8 }) }), { minLength: 1, maxLength: 3 }),
  vms: fc.array(fc.record({ host: fc.nat(), vcpus: fc.constantFrom(0.5, 1, 2), state: fc.constantFrom('running' as const, 'running' as const, 'paused' as const, 'shut-off' as const), workers: fc.integer({ min: 0, max: 2 }), dead: fc.boolean() }), { maxLength: 6 }),
}).map(({ hosts, vms }) => {
  const inventory: Inventory = { hosts: hosts.map((host, index) => ({ name: `h${index}`, hypervisor: host.hypervisor, cpus: host.cpus, memoryMb: 8192 })), vms: [], workers: [], instances: [] };
  vms.forEach((vm, index) => {
    const name = `vm-${index + 1}`;
    inventory.vms.push({ name, host: `h${vm.host % hosts.length}`, vcpus: vm.vcpus, memoryMb: 1024, state: vm.state });
    for (let w = 0; w < vm.workers; w++) inventory.workers.push({ id: `${name}-w${w + 1}`, vm: name, alive: !(vm.dead && w === 0) });
  });
  return inventory;
});

const arbitraryMonitors: fc.Arbitrary<MonitorRequest[]> = fc.array(fc.record({
  cost: fc.option(fc.constantFrom(1, 20, 120, 305, 900), { nil: undefined }),
  profiles: fc.subarray(['noisy', 'fast']),
}), { maxLength: 30 }).map((list) => list.map((m, index) => ({
  monitor: `m-${index}`, ...(m.cost !== undefined ? { costMsPerPacket: m.cost } : {}), profiles: m.profiles,
})));

/** The rules again, written separately from the planner: the loads and counts of a final inventory. */
function audit(inventory: Inventory, policy: Policy) {
  const vmOf = new Map(inventory.workers.map((w) => [w.id, w.vm]));
  const hostOf = new Map(inventory.vms.map((vm) => [vm.name, vm.host]));
  const vmLoad = new Map<string, number>();
  const hostLoad = new Map<string, number>();
  const vmCount = new Map<string, number>();
  const hostCount = new Map<string, number>();
  const profileCount = new Map<string, number>();
  for (const instance of inventory.instances) {
    const vm = vmOf.get(instance.worker) as string;
    const host = hostOf.get(vm) as string;
    const cost = (instance.costMsPerPacket ?? policy.defaultCostMsPerPacket) / 1000;
    vmLoad.set(vm, (vmLoad.get(vm) ?? 0) + cost);
    hostLoad.set(host, (hostLoad.get(host) ?? 0) + cost);
    vmCount.set(vm, (vmCount.get(vm) ?? 0) + 1);
    hostCount.set(host, (hostCount.get(host) ?? 0) + 1);
    for (const profile of instance.profiles ?? []) profileCount.set(`${vm}/${profile}`, (profileCount.get(`${vm}/${profile}`) ?? 0) + 1);
  }
  /** May `request` join `workerId` in this final state? (Used for refusals: loads only grow, so "no" now means "no" then.) */
  const fits = (request: MonitorRequest, workerId: string): boolean => {
    const worker = inventory.workers.find((w) => w.id === workerId);
    const vm = inventory.vms.find((v) => v.name === worker?.vm);
    const host = inventory.hosts.find((h) => h.name === vm?.host);
    if (worker === undefined || vm === undefined || host === undefined || !worker.alive || vm.state === 'shut-off') return false;
    const cost = (request.costMsPerPacket ?? policy.defaultCostMsPerPacket) / 1000;
    if (policy.maxInstancesPerVm !== undefined && (vmCount.get(vm.name) ?? 0) + 1 > policy.maxInstancesPerVm) return false;
    if (policy.maxInstancesPerHost !== undefined && (hostCount.get(host.name) ?? 0) + 1 > policy.maxInstancesPerHost) return false;
    if ((vmLoad.get(vm.name) ?? 0) + cost > vm.vcpus * (1 - policy.cpuHeadroom) + 1e-9) return false;
    if ((hostLoad.get(host.name) ?? 0) + cost > host.cpus - hostReserve(policy, host.hypervisor) + 1e-9) return false;
    return policy.antiAffinity.every((rule) => !(request.profiles ?? []).includes(rule.profile) || (profileCount.get(`${vm.name}/${rule.profile}`) ?? 0) + 1 <= rule.maxPerVm);
  };
  return { vmLoad, hostLoad, vmCount, hostCount, profileCount, fits };
}

describe('placement properties (fast-check)', () => {
  it('never breaks a rule on a VM or host it placed on, places only on live workers of running (or resumed) VMs, scales out only as allowed', () => {
    fc.assert(fc.property(arbitraryInventory, arbitraryPolicy, arbitraryMonitors, (inventory, policy, monitors) => {
      const result = plan(inventory, policy, monitors);
      const after = audit(result.inventory, policy);
      const touchedVms = new Set(result.placements.map((p) => p.vm));
      const vms = new Map(result.inventory.vms.map((vm) => [vm.name, vm]));
      for (const name of touchedVms) {
        const vm = vms.get(name);
        expect(vm?.state).toBe('running');
        if (policy.maxInstancesPerVm !== undefined) expect(after.vmCount.get(name)).toBeLessThanOrEqual(policy.maxInstancesPerVm);
        expect(after.vmLoad.get(name) ?? 0).toBeLessThanOrEqual((vm?.vcpus ?? 0) * (1 - policy.cpuHeadroom) + 1e-9);
        const host = result.inventory.hosts.find((h) => h.name === vm?.host);
        expect(after.hostLoad.get(host?.name as string) ?? 0).toBeLessThanOrEqual((host?.cpus ?? 0) - hostReserve(policy, host?.hypervisor ?? 'kvm') + 1e-9);
        if (policy.maxInstancesPerHost !== undefined) expect(after.hostCount.get(host?.name as string)).toBeLessThanOrEqual(policy.maxInstancesPerHost);
        for (const rule of policy.antiAffinity) expect(after.profileCount.get(`${name}/${rule.profile}`) ?? 0).toBeLessThanOrEqual(rule.maxPerVm);
      }
      for (const placement of result.placements) expect(result.inventory.workers.find((w) => w.id === placement.worker)?.alive).toBe(true);
      const before = new Map(inventory.vms.map((vm) => [vm.name, vm.state]));
      for (const name of touchedVms) if (before.has(name) && before.get(name) !== 'running') expect(result.resume.map((r) => r.vm)).toContain(name);
      if (policy.onNoCapacity === 'refuse') expect(result.scaleOut).toEqual([]);
      expect(result.inventory.vms.filter((vm) => vm.state !== 'shut-off').length).toBeLessThanOrEqual(Math.max(policy.maxVms, inventory.vms.filter((vm) => vm.state !== 'shut-off').length));
      expect(result.placements.length + result.refused.length).toBe(monitors.length);
    }), { numRuns: 300 });
  });

  it('places every monitor whenever capacity allows: no refused monitor fits any worker, even in the final state', () => {
    fc.assert(fc.property(arbitraryInventory, arbitraryPolicy, arbitraryMonitors, (inventory, policy, monitors) => {
      const result = plan(inventory, policy, monitors);
      const after = audit(result.inventory, policy);
      for (const refusal of result.refused) {
        const request = monitors.find((m) => m.monitor === refusal.monitor) as MonitorRequest;
        for (const worker of result.inventory.workers) expect(after.fits(request, worker.id), `${refusal.monitor} on ${worker.id}`).toBe(false);
        expect(refusal.reason.length).toBeGreaterThan(0);
      }
    }), { numRuns: 300 });
  });

  it('is deterministic: the same inputs give the same plan, whatever order the inventory lists workers and VMs in', () => {
    fc.assert(fc.property(arbitraryInventory, arbitraryPolicy, arbitraryMonitors, (inventory, policy, monitors) => {
      const first = plan(inventory, policy, monitors);
      const again = plan(inventory, policy, monitors);
      const shuffled = plan({ ...inventory, workers: [...inventory.workers].reverse(), vms: [...inventory.vms].reverse() }, policy, monitors);
      const shape = (p: Plan) => ({ placements: p.placements, refused: p.refused, scaleOut: p.scaleOut, resume: p.resume });
      expect(shape(again)).toEqual(shape(first));
      expect(shape(shuffled)).toEqual(shape(first));
    }), { numRuns: 200 });
  });

  it('explains a decision: the chosen VM, and each other worker with the rules that excluded it', () => {
    const policy = resolvePolicy({ maxInstancesPerVm: 1, maxVms: 2, onNoCapacity: 'scale-out' });
    const inventory: Inventory = {
      hosts: [{ name: 'h', hypervisor: 'kvm', cpus: 4, memoryMb: 4096 }],
      vms: [{ name: 'a', host: 'h', vcpus: 1, memoryMb: 512, state: 'running' }, { name: 'b', host: 'h', vcpus: 1, memoryMb: 512, state: 'paused' }],
      workers: [{ id: 'a1', vm: 'a', alive: true }, { id: 'b1', vm: 'b', alive: true }],
      instances: [],
    };
    const result = plan(inventory, policy, [{ monitor: 'x' }, { monitor: 'y' }, { monitor: 'z' }]);
    expect(result.placements).toEqual([{ monitor: 'x', vm: 'a', worker: 'a1' }, { monitor: 'y', vm: 'b', worker: 'b1' }]);
    expect(result.resume).toEqual([{ vm: 'b', reason: expect.stringContaining('was paused') }]);
    const text = explain(result.decisions[2] as Plan['decisions'][number]);
    expect(text).toContain('z: refused.');
    expect(text).toContain('maxVms 2');
    expect(text).toContain('a/a1 on h: excluded by maxInstancesPerVm: 1 of 1 on a');
  });
});
