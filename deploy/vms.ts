/**
 * VMs the deploy drivers manage, and the local driver: on this host a "VM" is a group of warm-worker
 * processes, confined by a cgroup (CPU quota = its vCPUs, memory limit, freezer for pause) where
 * the cgroup filesystem is writable, so a VM's vCPU share is real. Its workers report `--vm NAME
 * --host <this host>` and driver `local`, and the hypervisor they detect.
 *
 * Each VM is a record in Redis (`<prefix>:vm:<name>`, JSON), so `ecgfaas vms` and `ecgfaas vm pause
 * NAME` work from any shell on the host: pause, resume, shut down and destroy act on the record's
 * processes and cgroup directly (vmControl). Creating and starting a VM's workers is the driver's
 * (the process that runs `ecgfaas deploy`: the workers are its children).
 *
 * Error codes: VM_EXISTS, VM_NOT_FOUND, VM_BAD_STATE (e.g. resuming a running VM), DEPLOY_* (a
 * worker did not start), CGROUP_* (deploy/cgroups.ts).
 */
import { hostname } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { EcgFaasError } from '../contracts/errors.js';
import type { RedisKeys } from '../queue/keys.js';
import type { VmState } from '../scheduler/index.js';
import { CpuGroup, detectCgroups, type CgroupVersion } from './cgroups.js';
import { declareWorkerDead, LocalProcess, requestWorkerStop } from './local.js';
import { Virsh } from './libvirt/virsh.js';

export interface VmSpec {
  name: string;
  vcpus: number;
  memoryMb: number;
  /** Warm workers in the VM (default 1). */
  workers?: number;
}

export interface VmRecord {
  name: string;
  driver: 'local' | 'libvirt';
  host: string;
  vcpus: number;
  memoryMb: number;
  state: VmState;
  workers: Array<{ workerId: string; pid: number | null }>;
  /** The cgroup confining it (local driver), or null when it runs unconfined. */
  cgroup: CgroupVersion | null;
  /** libvirt driver: the connection URI the domain lives behind, and the guest's hypervisor. */
  connect?: string;
  hypervisor?: string;
  /** ms since the epoch. */
  updatedAt: number;
}

/** What every deploy driver does (the libvirt driver is issue 5's). */
export interface DeployDriver {
  readonly kind: 'local' | 'libvirt';
  create(spec: VmSpec): Promise<VmRecord>;
  /** Boots the VM and its workers; resolves once every worker is consuming its queue. */
  start(name: string): Promise<VmRecord>;
  /** One more worker in a running VM; resolves to its id. */
  startWorker(name: string): Promise<string>;
  pause(name: string): Promise<VmRecord>;
  resume(name: string): Promise<VmRecord>;
  shutdown(name: string): Promise<VmRecord>;
  destroy(name: string): Promise<void>;
  list(): Promise<VmRecord[]>;
  close(): Promise<void>;
}

export class VmError extends EcgFaasError {
  constructor(code: 'VM_EXISTS' | 'VM_NOT_FOUND' | 'VM_BAD_STATE', message: string) {
    super(code, message);
    this.name = 'VmError';
  }
}

const VM_NAME = /^[A-Za-z0-9_-]{1,48}$/;

/**
 * The cgroup of a local VM: named by the key prefix too, so two deployments (or two test runs) on
 * one host that both have a `vm-1` never freeze, limit or remove each other's.
 */
export function vmCgroupName(keys: RedisKeys, vm: string): string {
  return `${keys.prefix}.${vm}`;
}

export async function readVm(redis: Redis, keys: RedisKeys, name: string): Promise<VmRecord | null> {
  const raw = await redis.get(keys.vm(name));
  return raw === null ? null : JSON.parse(raw) as VmRecord;
}

/** Forgets a VM: its record and its place in the set of VMs. */
async function deleteVm(redis: Redis, keys: RedisKeys, name: string): Promise<void> {
  await redis.multi().del(keys.vm(name)).srem(keys.vms, name).exec();
}

export async function writeVm(redis: Redis, keys: RedisKeys, record: VmRecord): Promise<VmRecord> {
  const stamped = { ...record, updatedAt: Date.now() };
  await redis.multi().set(keys.vm(record.name), JSON.stringify(stamped)).sadd(keys.vms, record.name).exec();
  return stamped;
}

export async function listVms(redis: Redis, keys: RedisKeys): Promise<VmRecord[]> {
  const names = (await redis.smembers(keys.vms)).sort();
  const records = await Promise.all(names.map((name) => readVm(redis, keys, name)));
  return records.filter((record): record is VmRecord => record !== null);
}

function signal(pids: ReadonlyArray<number | null>, name: NodeJS.Signals): void {
  for (const pid of pids) {
    if (pid === null) continue;
    try {
      process.kill(pid, name);
    } catch {
      // gone already
    }
  }
}

/**
 * Pause, resume, shut down, destroy: on the record's processes and cgroup, from any process on the
 * host. A paused VM's workers stop where they stand (freezer, or SIGSTOP without a cgroup): they
 * miss heartbeats, so pause only VMs without monitors (the idle-VM policy does).
 */
export function vmControl(redis: Redis, keys: RedisKeys) {
  const need = async (name: string): Promise<VmRecord> => {
    const record = await readVm(redis, keys, name);
    if (record === null) throw new VmError('VM_NOT_FOUND', `no VM named ${name} (ecgfaas vms lists them)`);
    return record;
  };
  const pids = (record: VmRecord) => record.workers.map((worker) => worker.pid);
  /** Stops (or lets go on) every process of the VM: libvirt's suspend, its cgroup's freezer, or SIGSTOP/SIGCONT. */
  const setFrozen = async (record: VmRecord, frozen: boolean): Promise<void> => {
    if (record.driver === 'libvirt') await new Virsh(record.connect ?? '').call([frozen ? 'suspend' : 'resume', record.name]);
    else if (record.cgroup === null) signal(pids(record), frozen ? 'SIGSTOP' : 'SIGCONT');
    else if (frozen) await CpuGroup.open(vmCgroupName(keys, record.name)).freeze();
    else await CpuGroup.open(vmCgroupName(keys, record.name)).thaw();
  };
  return {
    need,
    async pause(name: string): Promise<VmRecord> {
      const record = await need(name);
      if (record.state !== 'running') throw new VmError('VM_BAD_STATE', `${name} is ${record.state}, not running`);
      await setFrozen(record, true);
      return writeVm(redis, keys, { ...record, state: 'paused' });
    },
    async resume(name: string): Promise<VmRecord> {
      const record = await need(name);
      if (record.state !== 'paused') throw new VmError('VM_BAD_STATE', `${name} is ${record.state}, not paused`);
      await setFrozen(record, false);
      return writeVm(redis, keys, { ...record, state: 'running' });
    },
    /** Its workers stop gracefully (they finish their job and hand their slots back). */
    async shutdown(name: string): Promise<VmRecord> {
      const record = await need(name);
      if (record.state === 'shut-off') return record;
      if (record.state === 'paused') await setFrozen(record, false);
      if (record.driver === 'libvirt') {
        await shutdownGuest(redis, keys, record);
        return writeVm(redis, keys, { ...record, state: 'shut-off' });
      }
      signal(pids(record), 'SIGTERM');
      return writeVm(redis, keys, { ...record, state: 'shut-off', workers: record.workers.map((worker) => ({ ...worker, pid: null })) });
    },
    /** Its workers are killed (as a crash), its cgroup and record removed. */
    async destroy(name: string): Promise<void> {
      const record = await need(name);
      if (record.driver === 'libvirt') await destroyGuest(record);
      else {
        if (record.cgroup !== null) await CpuGroup.open(vmCgroupName(keys, name)).thaw().catch(() => undefined);
        signal(pids(record), 'SIGKILL');
        if (record.cgroup !== null) {
          const group = CpuGroup.open(vmCgroupName(keys, name));
          // The killed processes leave the group a moment later.
          for (let tries = 0; tries < 50 && (await group.pids()).length > 0; tries++) await new Promise((resolve) => setTimeout(resolve, 20));
          await group.remove();
        }
      }
      await deleteVm(redis, keys, name);
    },
  };
}

/**
 * A guest's workers cannot be signalled from the host: each is asked through Redis to stop (it
 * finishes its job and flushes its records), its init then powers the guest off. A guest still up
 * after `timeoutMs` is destroyed.
 */
async function shutdownGuest(redis: Redis, keys: RedisKeys, record: VmRecord, timeoutMs = 30_000): Promise<void> {
  const virsh = new Virsh(record.connect ?? '');
  for (const worker of record.workers) await requestWorkerStop(redis, keys, worker.workerId);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const state = (await virsh.list()).get(record.name);
    if (state === undefined || state === 'shut off') return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await virshTolerating(virsh, ['destroy', record.name], ['VM_BAD_STATE']);
}

/** Powers the guest off at once (as a crash) and removes its definition. */
async function destroyGuest(record: VmRecord): Promise<void> {
  const virsh = new Virsh(record.connect ?? '');
  await virshTolerating(virsh, ['destroy', record.name], ['VM_BAD_STATE', 'VM_NOT_FOUND']);
  await virshTolerating(virsh, ['undefine', record.name], ['VM_NOT_FOUND']);
}

/** A virsh command whose failure with one of `codes` means it has nothing left to do (already off, already gone). */
async function virshTolerating(virsh: Virsh, args: string[], codes: readonly string[]): Promise<void> {
  await virsh.call(args).catch((error: { code?: string }) => {
    if (!codes.includes(error.code ?? '')) throw error;
  });
}

export interface LocalVmDriverOptions {
  redis: Redis;
  keys: RedisKeys;
  /** `ecgfaas worker` arguments every worker gets (Redis, prefix, model, extra compute...). */
  workerArgs: string[];
  env?: NodeJS.ProcessEnv;
  /** Directory for the workers' logs (`<vm>-w<n>.log`); none: ignored. */
  logsDir?: string;
  /** Confine each VM in a cgroup (default: when the cgroup filesystem is writable; false: never). */
  confine?: boolean;
}

export class LocalVmDriver implements DeployDriver {
  readonly kind = 'local' as const;
  readonly #o: LocalVmDriverOptions;
  readonly #host = hostname();
  readonly #processes = new Map<string, Array<LocalProcess<{ workerId: string }>>>();
  readonly #specs = new Map<string, VmSpec>();
  readonly #control: ReturnType<typeof vmControl>;

  constructor(options: LocalVmDriverOptions) {
    this.#o = options;
    this.#control = vmControl(options.redis, options.keys);
  }

  async create(spec: VmSpec): Promise<VmRecord> {
    if (!VM_NAME.test(spec.name)) throw new VmError('VM_BAD_STATE', `"${spec.name}" is not a VM name ([A-Za-z0-9_-]{1,48})`);
    if (await readVm(this.#o.redis, this.#o.keys, spec.name) !== null) throw new VmError('VM_EXISTS', `a VM named ${spec.name} exists`);
    let cgroup: CgroupVersion | null = null;
    if (this.#o.confine !== false && detectCgroups() !== null) {
      try {
        cgroup = (await CpuGroup.create(vmCgroupName(this.#o.keys, spec.name), { cpus: spec.vcpus, memoryMb: spec.memoryMb })).version;
      } catch (error) {
        // Only a cgroup filesystem we may not write (not root) makes the VM run unconfined (its
        // record says so); any other failure is a fault to report, not to paper over.
        if (this.#o.confine === true || (error as { code?: string }).code !== 'CGROUP_UNAVAILABLE') throw error;
      }
    }
    this.#specs.set(spec.name, spec);
    return writeVm(this.#o.redis, this.#o.keys, {
      name: spec.name, driver: 'local', host: this.#host, vcpus: spec.vcpus, memoryMb: spec.memoryMb, state: 'shut-off', workers: [], cgroup, updatedAt: 0,
    });
  }

  async start(name: string): Promise<VmRecord> {
    const record = await this.#control.need(name);
    if (record.state !== 'shut-off') throw new VmError('VM_BAD_STATE', `${name} is ${record.state}, not shut off`);
    await writeVm(this.#o.redis, this.#o.keys, { ...record, state: 'running', workers: [] });
    const count = this.#specs.get(name)?.workers ?? 1;
    for (let index = 0; index < count; index++) await this.startWorker(name);
    return this.#control.need(name);
  }

  async startWorker(name: string): Promise<string> {
    const record = await this.#control.need(name);
    if (record.state !== 'running') throw new VmError('VM_BAD_STATE', `${name} is ${record.state}, not running`);
    const processes = this.#processes.get(name) ?? [];
    const workerId = `${name}-w${record.workers.length + 1}`;
    const worker = new LocalProcess<{ workerId: string }>({
      args: ['worker', ...this.#o.workerArgs, '--vm', name, '--host', this.#host, '--worker-id', workerId, '--driver', 'local'],
      ...(this.#o.env !== undefined ? { env: this.#o.env } : {}),
      logs: this.#o.logsDir === undefined ? 'ignore' : path.join(this.#o.logsDir, `${workerId}.log`),
      // A crash is seen at once: the worker's slots are adopted on the next heartbeat of another, not after the lease lapses.
      onCrash: () => {
        void declareWorkerDead(this.#o.redis, this.#o.keys, workerId).catch(() => 0);
      },
    });
    // Confined before it loads anything: start() resolves when it is ready, so add the pid as soon as it exists.
    const started = worker.start();
    if (record.cgroup !== null && worker.pid !== null) await CpuGroup.open(vmCgroupName(this.#o.keys, name)).add(worker.pid);
    await started;
    processes.push(worker);
    this.#processes.set(name, processes);
    await writeVm(this.#o.redis, this.#o.keys, { ...record, workers: [...record.workers, { workerId, pid: worker.pid }] });
    return workerId;
  }

  pause(name: string): Promise<VmRecord> {
    return this.#control.pause(name);
  }

  resume(name: string): Promise<VmRecord> {
    return this.#control.resume(name);
  }

  async shutdown(name: string): Promise<VmRecord> {
    // Our own workers get ONE SIGTERM, from LocalProcess.stop (a second one makes a worker exit at
    // once, before its latency records are flushed); frozen ones are thawed first, or they could not stop.
    if ((await this.#control.need(name)).state === 'paused') await this.#control.resume(name);
    await Promise.all((this.#processes.get(name) ?? []).map((worker) => worker.stop()));
    this.#processes.delete(name);
    return this.#control.shutdown(name);
  }

  async destroy(name: string): Promise<void> {
    await this.#control.destroy(name);
    await Promise.all((this.#processes.get(name) ?? []).map((worker) => worker.kill()));
    this.#processes.delete(name);
    this.#specs.delete(name);
  }

  list(): Promise<VmRecord[]> {
    return listVms(this.#o.redis, this.#o.keys);
  }

  /** The worker processes of this driver's VMs (for CPU accounting). */
  pids(): number[] {
    return [...this.#processes.values()].flat().map((worker) => worker.pid).filter((pid): pid is number => pid !== null);
  }

  /** Shuts down and removes every VM this driver created. */
  async close(): Promise<void> {
    for (const name of [...this.#specs.keys()]) {
      const record = await readVm(this.#o.redis, this.#o.keys, name).catch(() => null);
      if (record === null) continue;
      await this.shutdown(name).catch(() => undefined);
      if (record.cgroup !== null) await CpuGroup.open(vmCgroupName(this.#o.keys, name)).remove().catch(() => undefined);
      await deleteVm(this.#o.redis, this.#o.keys, name).catch(() => undefined);
    }
    this.#specs.clear();
  }
}
