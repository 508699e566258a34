/**
 * Placement: where each new monitor's function instance goes, under a policy (scheduler/policy.ts),
 * on an inventory of hosts, VMs and warm workers. Pure and deterministic: the same inventory, policy
 * and monitors (in the same order) give the same plan; nothing here touches Redis or a driver.
 *
 * Each monitor is decided on its own, in order, against the inventory as the decisions before it
 * left it: every live worker on a running VM is a candidate; each rule that excludes it is recorded
 * (that record is what `placement explain` prints); among the rest the hypervisor preference, then
 * the strategy (spread or pack), then the worker id decide. With no candidate left: a paused VM is
 * resumed if that makes room, else the policy scales out (a new VM, within maxVms) or refuses, with
 * the reason.
 *
 * Load model: a monitor sends one packet per second, so a function costing C ms of CPU per packet
 * keeps C/1000 of a CPU busy. A VM may carry vcpus × (1 − cpuHeadroom) of load; a host its CPUs
 * less the reserve the policy keeps for its hypervisor.
 */
import type { HypervisorKind } from '../contracts/invocation.js';
import { hostReserve, type Policy } from './policy.js';

export type VmState = 'running' | 'paused' | 'shut-off';

export interface HostInfo {
  name: string;
  hypervisor: HypervisorKind;
  /** CPU threads. */
  cpus: number;
  memoryMb: number;
}

export interface VmInfo {
  name: string;
  host: string;
  vcpus: number;
  memoryMb: number;
  state: VmState;
  /** Why the interference detector keeps new placements off this VM, while it does. */
  quarantined?: string;
}

export interface WorkerInfo {
  id: string;
  vm: string;
  alive: boolean;
}

/** A placed function instance. */
export interface InstanceInfo {
  monitor: string;
  worker: string;
  /** Measured CPU ms per packet (from latency records); the policy's default when absent. */
  costMsPerPacket?: number;
  profiles?: readonly string[];
}

export interface Inventory {
  hosts: HostInfo[];
  vms: VmInfo[];
  workers: WorkerInfo[];
  instances: InstanceInfo[];
}

export interface MonitorRequest {
  monitor: string;
  costMsPerPacket?: number;
  profiles?: readonly string[];
}

export interface Candidate {
  worker: string;
  vm: string;
  host: string;
  /** The rules that exclude this worker; empty when it may take the monitor. */
  excludedBy: string[];
  /** VM load (CPUs) with the monitor added. */
  vmLoadAfter: number;
}

export interface Decision {
  monitor: string;
  vm: string | null;
  worker: string | null;
  /** How it was placed: on a running VM, on a paused VM resumed for it, on a new VM; or refused. */
  how: 'placed' | 'resumed' | 'scaled-out' | 'refused';
  reason: string;
  /** The workers the rules excluded, each with its rules (kept for every decision: `placement explain`). */
  excluded: Candidate[];
  /** How many workers were eligible (not listed: 10,000 decisions on 500 workers would keep 5 M records). */
  eligible: number;
}

export interface Plan {
  placements: Array<{ monitor: string; vm: string; worker: string }>;
  refused: Array<{ monitor: string; reason: string }>;
  scaleOut: Array<{ vm: string; host: string; reason: string }>;
  resume: Array<{ vm: string; reason: string }>;
  decisions: Decision[];
  /** The inventory with the plan applied. */
  inventory: Inventory;
}

export interface PlanOptions {
  /** Name of the n-th VM a scale-out creates (n from 1); default `vm-<count of VMs + 1>`, skipping names in use. */
  newVmName?: (existing: ReadonlySet<string>) => string;
  /** Called after each decision with the time it took (ms): for benchmarks. */
  onDecision?: (decision: Decision, ms: number) => void;
}

/** Float sums compared with a little slack, so 10 × 0.1 fits in 1.0. */
const EPSILON = 1e-9;

function defaultVmName(existing: ReadonlySet<string>): string {
  for (let index = existing.size + 1; ; index++) {
    const name = `vm-${index}`;
    if (!existing.has(name)) return name;
  }
}

/** Mutable working state of a planning run: indexes over the inventory, kept current as instances are added. */
class Working {
  readonly hosts = new Map<string, HostInfo>();
  readonly vms = new Map<string, VmInfo>();
  readonly workers: WorkerInfo[];
  readonly instances: InstanceInfo[];
  readonly #vmLoad = new Map<string, number>();
  readonly #vmCount = new Map<string, number>();
  readonly #hostLoad = new Map<string, number>();
  readonly #hostCount = new Map<string, number>();
  readonly #vmProfiles = new Map<string, Map<string, number>>();
  readonly #vmOfWorker = new Map<string, string>();

  constructor(inventory: Inventory, readonly policy: Policy) {
    for (const host of inventory.hosts) this.hosts.set(host.name, { ...host });
    for (const vm of inventory.vms) this.vms.set(vm.name, { ...vm });
    this.workers = inventory.workers.map((worker) => ({ ...worker })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const worker of this.workers) this.#vmOfWorker.set(worker.id, worker.vm);
    this.instances = [];
    for (const instance of inventory.instances) this.add({ ...instance });
  }

  cost(instance: { costMsPerPacket?: number | undefined }): number {
    return (instance.costMsPerPacket ?? this.policy.defaultCostMsPerPacket) / 1000;
  }

  add(instance: InstanceInfo): void {
    this.instances.push(instance);
    const vm = this.#vmOfWorker.get(instance.worker);
    if (vm === undefined) return;
    const host = this.vms.get(vm)?.host;
    const cost = this.cost(instance);
    this.#vmLoad.set(vm, this.vmLoad(vm) + cost);
    this.#vmCount.set(vm, this.vmCount(vm) + 1);
    if (host !== undefined) {
      this.#hostLoad.set(host, this.hostLoad(host) + cost);
      this.#hostCount.set(host, this.hostCount(host) + 1);
    }
    let profiles = this.#vmProfiles.get(vm);
    if (profiles === undefined) this.#vmProfiles.set(vm, (profiles = new Map()));
    for (const profile of instance.profiles ?? []) profiles.set(profile, (profiles.get(profile) ?? 0) + 1);
  }

  addVm(vm: VmInfo, worker: WorkerInfo): void {
    this.vms.set(vm.name, vm);
    this.workers.push(worker);
    this.workers.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.#vmOfWorker.set(worker.id, vm.name);
  }

  vmLoad(vm: string): number {
    return this.#vmLoad.get(vm) ?? 0;
  }

  vmCount(vm: string): number {
    return this.#vmCount.get(vm) ?? 0;
  }

  hostLoad(host: string): number {
    return this.#hostLoad.get(host) ?? 0;
  }

  hostCount(host: string): number {
    return this.#hostCount.get(host) ?? 0;
  }

  profileCount(vm: string, profile: string): number {
    return this.#vmProfiles.get(vm)?.get(profile) ?? 0;
  }

  vmCapacity(vm: VmInfo): number {
    return vm.vcpus * (1 - this.policy.cpuHeadroom);
  }

  hostCapacity(host: HostInfo): number {
    return Math.max(0, host.cpus - hostReserve(this.policy, host.hypervisor));
  }

  toInventory(): Inventory {
    return { hosts: [...this.hosts.values()], vms: [...this.vms.values()], workers: [...this.workers], instances: [...this.instances] };
  }
}

/** The rules that keep `request` off `worker` (empty: it may go there). `ignoreState` judges a paused VM as if running. */
function exclusions(state: Working, request: MonitorRequest, worker: WorkerInfo, ignoreState = false): { excludedBy: string[]; vmLoadAfter: number } {
  const { policy } = state;
  const excludedBy: string[] = [];
  const vm = state.vms.get(worker.vm);
  const host = vm === undefined ? undefined : state.hosts.get(vm.host);
  if (vm === undefined || host === undefined) return { excludedBy: ['unknown VM or host'], vmLoadAfter: 0 };
  const cost = state.cost(request);
  const vmLoadAfter = state.vmLoad(vm.name) + cost;
  if (!worker.alive) excludedBy.push('worker: no heartbeat (dead)');
  if (vm.state !== 'running' && !(ignoreState && vm.state === 'paused')) excludedBy.push(`vm: ${vm.state}`);
  if (vm.quarantined !== undefined) excludedBy.push(`interference: ${vm.quarantined}`);
  if (policy.maxInstancesPerVm !== undefined && state.vmCount(vm.name) >= policy.maxInstancesPerVm) {
    excludedBy.push(`maxInstancesPerVm: ${state.vmCount(vm.name)} of ${policy.maxInstancesPerVm} on ${vm.name}`);
  }
  if (policy.maxInstancesPerHost !== undefined && state.hostCount(host.name) >= policy.maxInstancesPerHost) {
    excludedBy.push(`maxInstancesPerHost: ${state.hostCount(host.name)} of ${policy.maxInstancesPerHost} on ${host.name}`);
  }
  if (vmLoadAfter > state.vmCapacity(vm) + EPSILON) {
    excludedBy.push(`cpuHeadroom: ${format(vmLoadAfter)} CPUs of load would exceed ${format(state.vmCapacity(vm))} usable of ${vm.name}'s ${vm.vcpus} vCPUs`);
  }
  const hostLoadAfter = state.hostLoad(host.name) + cost;
  if (hostLoadAfter > state.hostCapacity(host) + EPSILON) {
    excludedBy.push(`hostReserveCpus: ${format(hostLoadAfter)} CPUs of load would exceed ${format(state.hostCapacity(host))} left on ${host.name} after its ${hostReserve(policy, host.hypervisor)} for ${host.hypervisor}`);
  }
  for (const rule of policy.antiAffinity) {
    if ((request.profiles ?? []).includes(rule.profile) && state.profileCount(vm.name, rule.profile) >= rule.maxPerVm) {
      excludedBy.push(`antiAffinity: ${state.profileCount(vm.name, rule.profile)} '${rule.profile}' monitors of ${rule.maxPerVm} on ${vm.name}`);
    }
  }
  return { excludedBy, vmLoadAfter };
}

function format(value: number): string {
  return String(Math.round(value * 1000) / 1000);
}

/** Rank of a candidate's hypervisor under the preference rules (lower is better); 0 with no rules. */
function hypervisorRank(state: Working, request: MonitorRequest, candidate: Candidate): number {
  const host = state.hosts.get(candidate.host) as HostInfo;
  const capacity = state.hostCapacity(host);
  const loadAfter = capacity > 0 ? (state.hostLoad(host.name) + state.cost(request)) / capacity : Number.POSITIVE_INFINITY;
  for (const rule of state.policy.hypervisorPreference) {
    if (loadAfter <= rule.maxHostLoad + EPSILON) {
      const index = rule.prefer.indexOf(host.hypervisor);
      return index < 0 ? rule.prefer.length : index;
    }
  }
  return 0;
}

/** The best of the eligible candidates (deterministic). */
function choose(state: Working, request: MonitorRequest, eligible: Candidate[]): Candidate {
  const pack = state.policy.strategy === 'pack';
  const keyed = eligible.map((candidate) => {
    const vm = state.vms.get(candidate.vm) as VmInfo;
    return { candidate, rank: hypervisorRank(state, request, candidate), fill: candidate.vmLoadAfter / Math.max(vm.vcpus, EPSILON), count: state.vmCount(vm.name) };
  });
  const order = (a: (typeof keyed)[number], b: (typeof keyed)[number]): number => {
    if (a.rank !== b.rank) return a.rank - b.rank;
    if (Math.abs(a.fill - b.fill) > EPSILON) return pack ? b.fill - a.fill : a.fill - b.fill;
    if (a.count !== b.count) return pack ? b.count - a.count : a.count - b.count;
    return a.candidate.worker < b.candidate.worker ? -1 : a.candidate.worker > b.candidate.worker ? 1 : 0;
  };
  // One pass for the first in that order (a sort of every candidate per decision cost more).
  let best = keyed[0] as (typeof keyed)[number];
  for (const each of keyed) if (order(each, best) < 0) best = each;
  return best.candidate;
}

function candidatesFor(state: Working, request: MonitorRequest, ignoreState = false): Candidate[] {
  return state.workers.map((worker) => {
    const vm = state.vms.get(worker.vm);
    return { worker: worker.id, vm: worker.vm, host: vm?.host ?? '?', ...exclusions(state, request, worker, ignoreState) };
  });
}

function verdicts(candidates: Candidate[]): { excluded: Candidate[]; eligible: number } {
  const excluded = candidates.filter((candidate) => candidate.excludedBy.length > 0);
  return { excluded, eligible: candidates.length - excluded.length };
}

function summary(candidates: Candidate[]): string {
  if (candidates.length === 0) return 'there are no workers';
  const shown = candidates.slice(0, 4).map((candidate) => `${candidate.vm}/${candidate.worker}: ${candidate.excludedBy.join('; ')}`);
  return shown.join(' | ') + (candidates.length > shown.length ? ` | and ${candidates.length - shown.length} more` : '');
}

/** A host for a new VM: one of the scale-out hypervisor's hosts (else any), the least loaded, then by name. */
function scaleOutHost(state: Working): HostInfo | null {
  const hosts = [...state.hosts.values()];
  const matching = hosts.filter((host) => host.hypervisor === state.policy.scaleOut.hypervisor);
  const pool = matching.length > 0 ? matching : hosts;
  pool.sort((a, b) => {
    const loadA = state.hostLoad(a.name) / Math.max(state.hostCapacity(a), EPSILON);
    const loadB = state.hostLoad(b.name) / Math.max(state.hostCapacity(b), EPSILON);
    if (Math.abs(loadA - loadB) > EPSILON) return loadA - loadB;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
  return pool[0] ?? null;
}

/** Decides every monitor in order; see the file comment. */
export function plan(inventory: Inventory, policy: Policy, monitors: readonly MonitorRequest[], options: PlanOptions = {}): Plan {
  const state = new Working(inventory, policy);
  const out: Plan = { placements: [], refused: [], scaleOut: [], resume: [], decisions: [], inventory: inventory };
  const newVmName = options.newVmName ?? defaultVmName;
  const place = (request: MonitorRequest, candidate: Candidate) => {
    state.add({ monitor: request.monitor, worker: candidate.worker, ...(request.costMsPerPacket !== undefined ? { costMsPerPacket: request.costMsPerPacket } : {}), ...(request.profiles !== undefined ? { profiles: request.profiles } : {}) });
    out.placements.push({ monitor: request.monitor, vm: candidate.vm, worker: candidate.worker });
  };

  for (const request of monitors) {
    const started = performance.now();
    const before = out.decisions.length;
    decide(request);
    const decision = out.decisions[before];
    if (options.onDecision !== undefined && decision !== undefined) options.onDecision(decision, performance.now() - started);
  }
  out.inventory = state.toInventory();
  return out;

  function decide(request: MonitorRequest): void {
    const candidates = candidatesFor(state, request);
    const eligible = candidates.filter((candidate) => candidate.excludedBy.length === 0);
    if (eligible.length > 0) {
      const chosen = choose(state, request, eligible);
      place(request, chosen);
      out.decisions.push({ monitor: request.monitor, vm: chosen.vm, worker: chosen.worker, how: 'placed', reason: `${policy.strategy}: ${chosen.vm} carries ${format(chosen.vmLoadAfter)} CPUs with it`, ...verdicts(candidates) });
      return;
    }
    // A paused VM (the idle-VM policy paused it) is cheaper to bring back than a new one.
    const paused = candidatesFor(state, request, true).filter((candidate) => candidate.excludedBy.length === 0 && state.vms.get(candidate.vm)?.state === 'paused');
    if (paused.length > 0) {
      const chosen = choose(state, request, paused);
      (state.vms.get(chosen.vm) as VmInfo).state = 'running';
      place(request, chosen);
      const reason = `no running VM may take ${request.monitor}; ${chosen.vm} was paused`;
      out.resume.push({ vm: chosen.vm, reason });
      out.decisions.push({ monitor: request.monitor, vm: chosen.vm, worker: chosen.worker, how: 'resumed', reason, ...verdicts(candidates) });
      return;
    }
    const refuse = (why: string) => {
      const reason = `no worker may take it (${summary(candidates)}); ${why}`;
      out.refused.push({ monitor: request.monitor, reason });
      out.decisions.push({ monitor: request.monitor, vm: null, worker: null, how: 'refused', reason, ...verdicts(candidates) });
    };
    if (policy.onNoCapacity === 'refuse') {
      refuse('onNoCapacity is refuse');
      return;
    }
    const running = [...state.vms.values()].filter((vm) => vm.state !== 'shut-off').length;
    if (running >= policy.maxVms) {
      refuse(`scale-out stopped at maxVms ${policy.maxVms}`);
      return;
    }
    const host = scaleOutHost(state);
    if (host === null) {
      refuse('there is no host to scale out on');
      return;
    }
    const vm: VmInfo = { name: newVmName(new Set(state.vms.keys())), host: host.name, vcpus: policy.scaleOut.vcpus, memoryMb: policy.scaleOut.memoryMb, state: 'running' };
    const worker: WorkerInfo = { id: `${vm.name}-w1`, vm: vm.name, alive: true };
    // Would the monitor fit the new VM at all? Judge it before asking for one.
    state.addVm(vm, worker);
    const fresh = exclusions(state, request, worker);
    if (fresh.excludedBy.length > 0) {
      state.vms.delete(vm.name);
      state.workers.splice(state.workers.indexOf(worker), 1);
      refuse(`a new VM of ${vm.vcpus} vCPUs would not take it either (${fresh.excludedBy.join('; ')})`);
      return;
    }
    const reason = `no worker may take ${request.monitor}: ${summary(candidates)}`;
    out.scaleOut.push({ vm: vm.name, host: host.name, reason });
    place(request, { worker: worker.id, vm: vm.name, host: host.name, excludedBy: [], vmLoadAfter: fresh.vmLoadAfter });
    out.decisions.push({ monitor: request.monitor, vm: vm.name, worker: worker.id, how: 'scaled-out', reason, ...verdicts(candidates) });
  }
}

/** N equal local VMs on this host, one worker each: the what-if inventory of `ecgfaas plan`. */
export function whatIfInventory(options: { vms: number; vcpus: number; memoryMb: number; hostCpus: number; hostMemoryMb: number; hypervisor?: HypervisorKind }): Inventory {
  const host: HostInfo = { name: 'local', hypervisor: options.hypervisor ?? 'kvm', cpus: options.hostCpus, memoryMb: options.hostMemoryMb };
  const vms: VmInfo[] = Array.from({ length: options.vms }, (_, index) => ({ name: `vm-${index + 1}`, host: host.name, vcpus: options.vcpus, memoryMb: options.memoryMb, state: 'running' }));
  return { hosts: [host], vms, workers: vms.map((vm) => ({ id: `${vm.name}-w1`, vm: vm.name, alive: true })), instances: [] };
}

/** What `placement explain` prints for one decision. */
export function explain(decision: Decision): string {
  const lines = [decision.vm === null ? `${decision.monitor}: refused. ${decision.reason}` : `${decision.monitor} → ${decision.vm} (${decision.worker}), ${decision.how}: ${decision.reason}`];
  for (const candidate of decision.excluded) {
    lines.push(`  ${candidate.vm}/${candidate.worker} on ${candidate.host}: excluded by ${candidate.excludedBy.join('; ')}`);
  }
  if (decision.eligible > 0) lines.push(`  ${decision.eligible} worker${decision.eligible === 1 ? '' : 's'} eligible`);
  return lines.join('\n');
}
