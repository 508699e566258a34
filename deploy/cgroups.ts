/**
 * CPU and memory confinement of a local "VM" (a group of worker processes) with Linux cgroups, so a
 * VM's vCPU share is real: v2 (`cpu.max`, `memory.max`, `cgroup.freeze`; most production hosts) and
 * v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`, the freezer controller; these machines). Groups
 * live under `ecgfaas/<name>` (deploy/vms.ts names a VM's group `<key prefix>.<vm>`). Needs write access to the cgroup filesystem (root, or a delegated
 * subtree); without it every call fails with CGROUP_UNAVAILABLE and says why.
 *
 * Written by hand: no maintained npm package manages cgroups v1 and v2; it is a few files to write.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EcgFaasError } from '../contracts/errors.js';

export type CgroupVersion = 'v1' | 'v2';

/** The CFS period the quota is a share of (µs): the kernel's default. */
const PERIOD_US = 100_000;

export class CgroupError extends EcgFaasError {
  constructor(code: 'CGROUP_UNAVAILABLE' | 'CGROUP_FAILED', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CgroupError';
  }
}

/** Which cgroup hierarchy `root` holds: v2 (unified), v1 (a cpu controller of its own), or none. */
export function detectCgroups(root = '/sys/fs/cgroup'): CgroupVersion | null {
  if (existsSync(path.join(root, 'cgroup.controllers'))) return 'v2';
  if (existsSync(path.join(root, 'cpu', 'cpu.cfs_quota_us'))) return 'v1';
  return null;
}

export interface GroupLimits {
  /** CPUs (fractions allowed: 0.5 is half a core). */
  cpus: number;
  /** Memory limit (MiB); none when absent. */
  memoryMb?: number;
}

async function write(file: string, value: string): Promise<void> {
  try {
    await writeFile(file, value);
  } catch (error) {
    throw new CgroupError('CGROUP_FAILED', `cannot write "${value.trim()}" to ${file}: ${(error as Error).message}`, { cause: error });
  }
}

interface Dirs {
  cpu: string;
  cpuacct: string;
  memory: string;
  freezer: string;
}

function dirsOf(name: string, version: CgroupVersion, root: string): Dirs {
  const v2 = path.join(root, 'ecgfaas', name);
  const v1 = (controller: string) => path.join(root, controller, 'ecgfaas', name);
  return version === 'v2'
    ? { cpu: v2, cpuacct: v2, memory: v2, freezer: v2 }
    : { cpu: v1('cpu'), cpuacct: v1('cpuacct'), memory: v1('memory'), freezer: v1('freezer') };
}

/** One VM's group, in every controller it needs. */
export class CpuGroup {
  readonly name: string;
  readonly version: CgroupVersion;
  readonly #dirs: Dirs;

  private constructor(name: string, version: CgroupVersion, dirs: Dirs) {
    this.name = name;
    this.version = version;
    this.#dirs = dirs;
  }

  /** The existing group of VM `name` (another process made it), to freeze, thaw or remove it. */
  static open(name: string, root = '/sys/fs/cgroup'): CpuGroup {
    const version = detectCgroups(root);
    if (version === null) throw new CgroupError('CGROUP_UNAVAILABLE', `no cgroup v1 or v2 hierarchy at ${root}`);
    return new CpuGroup(name, version, dirsOf(name, version, root));
  }

  /** The group of VM `name` (created if missing) with these limits. */
  static async create(name: string, limits: GroupLimits, root = '/sys/fs/cgroup'): Promise<CpuGroup> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(name)) throw new CgroupError('CGROUP_FAILED', `"${name}" is not a group name`);
    const version = detectCgroups(root);
    if (version === null) throw new CgroupError('CGROUP_UNAVAILABLE', `no cgroup v1 or v2 hierarchy at ${root}`);
    const dirs = dirsOf(name, version, root);
    try {
      if (version === 'v2') {
        // Controllers must be enabled in every ancestor's subtree_control for the leaf to have them.
        await mkdir(path.join(root, 'ecgfaas'), { recursive: true });
        await write(path.join(root, 'cgroup.subtree_control'), '+cpu +memory');
        await write(path.join(root, 'ecgfaas', 'cgroup.subtree_control'), '+cpu +memory');
      }
      for (const dir of new Set(Object.values(dirs))) await mkdir(dir, { recursive: true });
    } catch (error) {
      if (error instanceof CgroupError) throw error;
      throw new CgroupError('CGROUP_UNAVAILABLE', `cannot create cgroup ${name} (${version}) under ${root}: ${(error as Error).message}; run as root or delegate a subtree`, { cause: error });
    }
    const group = new CpuGroup(name, version, dirs);
    await group.setLimits(limits);
    return group;
  }

  async setLimits(limits: GroupLimits): Promise<void> {
    if (!(limits.cpus > 0)) throw new CgroupError('CGROUP_FAILED', `cpus must be positive, not ${limits.cpus}`);
    const quota = Math.max(1000, Math.round(limits.cpus * PERIOD_US));
    if (this.version === 'v2') {
      await write(path.join(this.#dirs.cpu, 'cpu.max'), `${quota} ${PERIOD_US}`);
      await write(path.join(this.#dirs.memory, 'memory.max'), limits.memoryMb === undefined ? 'max' : String(limits.memoryMb * 2 ** 20));
    } else {
      await write(path.join(this.#dirs.cpu, 'cpu.cfs_period_us'), String(PERIOD_US));
      await write(path.join(this.#dirs.cpu, 'cpu.cfs_quota_us'), String(quota));
      await write(path.join(this.#dirs.memory, 'memory.limit_in_bytes'), limits.memoryMb === undefined ? '-1' : String(limits.memoryMb * 2 ** 20));
    }
  }

  /** Moves a process (and, from then on, its children) into the group. */
  async add(pid: number): Promise<void> {
    for (const dir of new Set(Object.values(this.#dirs))) await write(path.join(dir, 'cgroup.procs'), String(pid));
  }

  async pids(): Promise<number[]> {
    const text = await readFile(path.join(this.#dirs.cpu, 'cgroup.procs'), 'utf8').catch(() => '');
    return text.split('\n').filter((line) => line.trim() !== '').map(Number);
  }

  /** Stops every process of the group where it stands (a paused VM); thaw() lets them go on. */
  async freeze(): Promise<void> {
    if (this.version === 'v2') await write(path.join(this.#dirs.freezer, 'cgroup.freeze'), '1');
    else await write(path.join(this.#dirs.freezer, 'freezer.state'), 'FROZEN');
  }

  async thaw(): Promise<void> {
    if (this.version === 'v2') await write(path.join(this.#dirs.freezer, 'cgroup.freeze'), '0');
    else await write(path.join(this.#dirs.freezer, 'freezer.state'), 'THAWED');
  }

  /** CPU time the group has used (s): cpu.stat usage_usec on v2, cpuacct.usage on v1. */
  async cpuSeconds(): Promise<number> {
    if (this.version === 'v2') {
      const stat = await readFile(path.join(this.#dirs.cpu, 'cpu.stat'), 'utf8');
      return Number(/usage_usec (\d+)/.exec(stat)?.[1] ?? 0) / 1e6;
    }
    return Number((await readFile(path.join(this.#dirs.cpuacct, 'cpuacct.usage'), 'utf8')).trim()) / 1e9;
  }

  /** Removes the group; its processes must have exited (a group with members cannot be removed). */
  async remove(): Promise<void> {
    for (const dir of new Set(Object.values(this.#dirs))) {
      // A group whose last process has just exited can stay busy for a moment (the kernel takes it
      // down asynchronously; a loaded machine, longer): try again for a few seconds.
      for (let attempt = 0; ; attempt++) {
        const error = await rmdir(dir).then(() => null, (failure: NodeJS.ErrnoException) => failure);
        if (error === null || error.code === 'ENOENT') break;
        if (error.code !== 'EBUSY' || attempt >= 50) throw new CgroupError('CGROUP_FAILED', `cannot remove ${dir}: ${error.message}`, { cause: error });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}
