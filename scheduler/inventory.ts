/**
 * The inventory in Redis, as the planner sees it: workers from their heartbeat records, VMs and
 * hosts from what the workers report (and, where a deploy driver registered one, a host's own
 * record), function instances from the assignment table.
 *
 * A worker's record is written by its heartbeat (worker/warm-worker.ts) with the fields below; its
 * VM is the name the deploy driver gave it (`ecgfaas worker --vm`), else its hostname, which inside
 * a guest is the VM's. A worker whose heartbeat is older than `deadAfterMs` is dead.
 */
import type { Redis } from 'ioredis';
import type { HypervisorKind } from '../contracts/invocation.js';
import type { RedisKeys } from '../queue/keys.js';
import type { HostInfo, InstanceInfo, Inventory, VmInfo, VmState, WorkerInfo } from './placement.js';

/** The scheduler's fields of a worker's heartbeat record (the record holds more: facts, stats, clock). */
export interface WorkerPlacementFields {
  vm: string;
  host: string;
  /** CPUs the worker may use: its VM's vCPUs, or its cgroup quota when tighter. */
  vcpus: number;
  memoryMb: number;
  hypervisor: HypervisorKind;
  /** Mean CPU per packet of its functions (ms), extra compute included; null before any packet. */
  costMsPerPacket: number | null;
}

export function encodePlacementFields(fields: WorkerPlacementFields): Record<string, string> {
  return {
    vm: fields.vm, host: fields.host, vcpus: String(fields.vcpus), memoryMb: String(fields.memoryMb), hypervisor: fields.hypervisor,
    costMs: fields.costMsPerPacket === null ? '' : String(fields.costMsPerPacket),
  };
}

function decodePlacementFields(hash: Record<string, string>): WorkerPlacementFields | null {
  const vcpus = Number(hash.vcpus);
  if (hash.vm === undefined || hash.host === undefined || !(vcpus > 0)) return null;
  const cost = hash.costMs === undefined || hash.costMs === '' ? null : Number(hash.costMs);
  return {
    vm: hash.vm, host: hash.host, vcpus, memoryMb: Number(hash.memoryMb) || 0, hypervisor: (hash.hypervisor ?? 'other') as HypervisorKind,
    costMsPerPacket: cost !== null && Number.isFinite(cost) ? cost : null,
  };
}

export interface ReadInventoryOptions {
  /** Redis-clock now (ms). */
  now: number;
  /** A worker whose last heartbeat is older than this is dead (ms). */
  deadAfterMs: number;
}

/** The inventory now, and which queue slot each worker consumes (its own, the one it was born with). */
export async function readInventory(redis: Redis, keys: RedisKeys, options: ReadInventoryOptions): Promise<Inventory> {
  const [workerScores, assignments, slotIds, managed, quarantine, pending] = await Promise.all([
    redis.zrange(keys.workers, '0', '-1', 'WITHSCORES'),
    redis.hgetall(keys.assignments),
    redis.zrange(keys.slots, '0', '-1'),
    redis.smembers(keys.vms),
    redis.hgetall(keys.quarantine),
    pendingVms(redis, keys),
  ]);
  // VMs a deploy driver manages (deploy/vms.ts records): a paused one's workers are frozen, not dead.
  const vmStates = new Map<string, VmState>();
  if (managed.length > 0) {
    const raw = await redis.mget(...managed.map((name) => keys.vm(name)));
    raw.forEach((json, index) => {
      if (json !== null) vmStates.set(managed[index] as string, (JSON.parse(json) as { state: VmState }).state);
    });
  }
  const heartbeats = new Map<string, number>();
  for (let index = 0; index < workerScores.length; index += 2) heartbeats.set(workerScores[index] as string, Number(workerScores[index + 1]));
  const ids = [...heartbeats.keys()].sort();
  const records = ids.length === 0 ? [] : await Promise.all(ids.map((id) => redis.hgetall(keys.worker(id))));
  // Who consumes each slot now: its lease holder (an adopter, after a failover), else the worker it was born with.
  const holders = slotIds.length === 0 ? [] : await redis.mget(...slotIds.map((slot) => keys.slotLease(slot)));
  const holderOf = new Map(slotIds.map((slot, index) => [slot, holders[index] ?? slot]));

  const workers: WorkerInfo[] = [];
  const vms = new Map<string, VmInfo & { alive: boolean }>();
  const hosts = new Map<string, HostInfo>();
  const costOf = new Map<string, number | null>();
  ids.forEach((id, index) => {
    const fields = decodePlacementFields(records[index] ?? {});
    if (fields === null) return; // expired, or written by a worker that predates placement fields
    const alive = (heartbeats.get(id) ?? 0) >= options.now - options.deadAfterMs || vmStates.get(fields.vm) === 'paused';
    workers.push({ id, vm: fields.vm, alive });
    costOf.set(id, fields.costMsPerPacket);
    const vm = vms.get(fields.vm);
    if (vm === undefined) {
      vms.set(fields.vm, { name: fields.vm, host: fields.host, vcpus: fields.vcpus, memoryMb: fields.memoryMb, state: 'running', alive });
    } else {
      vm.alive ||= alive;
    }
    const host = hosts.get(fields.host);
    if (host === undefined) hosts.set(fields.host, { name: fields.host, hypervisor: fields.hypervisor, cpus: 0, memoryMb: 0 });
  });
  // VMs asked for and not up yet count as running, with the worker they will have: the monitors
  // placed on them are theirs, and the next ones fill them before another VM is asked for.
  for (const vm of pending) {
    if (vms.has(vm.name)) continue;
    vms.set(vm.name, { name: vm.name, host: vm.host, vcpus: vm.vcpus, memoryMb: vm.memoryMb, state: 'running', alive: true });
    if (!hosts.has(vm.host)) hosts.set(vm.host, { name: vm.host, hypervisor: 'other', cpus: 0, memoryMb: 0 });
    workers.push({ id: vm.worker, vm: vm.name, alive: true });
    costOf.set(vm.worker, null);
  }
  // A host's CPUs: the sum of its VMs' vCPUs (a guest cannot see the host; a deploy driver that knows better registers the host).
  for (const vm of vms.values()) {
    const host = hosts.get(vm.host) as HostInfo;
    host.cpus += vm.vcpus;
    host.memoryMb += vm.memoryMb;
    const recorded = vmStates.get(vm.name);
    if (recorded !== undefined) vm.state = recorded;
    else if (!vm.alive) vm.state = 'shut-off';
    const quarantined = quarantine[vm.name];
    if (quarantined !== undefined) vm.quarantined = (JSON.parse(quarantined) as { reason: string }).reason;
  }
  const known = new Set(workers.map((worker) => worker.id));
  const instances: InstanceInfo[] = [];
  for (const [monitor, slot] of Object.entries(assignments)) {
    const worker = holderOf.get(slot) ?? slot;
    if (!known.has(worker)) continue;
    const cost = costOf.get(worker);
    instances.push({ monitor, worker, ...(cost !== null && cost !== undefined ? { costMsPerPacket: cost } : {}) });
  }
  instances.sort((a, b) => (a.monitor < b.monitor ? -1 : a.monitor > b.monitor ? 1 : 0));
  return {
    hosts: [...hosts.values()],
    vms: [...vms.values()].map(({ alive: _alive, ...vm }) => vm),
    workers,
    instances,
  };
}

/** A VM placement asked for (`keys.scaleOutPending`). */
export interface PendingVm {
  name: string;
  host: string;
  vcpus: number;
  memoryMb: number;
  /** The hypervisor placement planned it on (policy scaleOut.hypervisor): a driver of another one leaves it to others. */
  hypervisor?: string;
  /** The worker (and slot) the monitors placed on it wait for. */
  worker: string;
  /** Redis-clock ms. */
  requestedAt: number;
  reason: string;
}

/** A driver whose heartbeat is older than this is not counted on for scale-out (ms). */
export const DRIVER_LIVE_MS = 10_000;

export async function liveDrivers(redis: Redis, keys: RedisKeys, now: number): Promise<string[]> {
  return redis.zrangebyscore(keys.drivers, Math.round(now - DRIVER_LIVE_MS), '+inf');
}

export async function pendingVms(redis: Redis, keys: RedisKeys): Promise<PendingVm[]> {
  return Object.values(await redis.hgetall(keys.scaleOutPending)).map((json) => JSON.parse(json) as PendingVm);
}
