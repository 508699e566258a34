/**
 * What a worker's results depend on: the machine (vCPUs, memory, kernel, hypervisor, cgroup CPU
 * quota) and the versions of the libraries on the hot path. Reported with every benchmark so runs
 * on different guests can be compared honestly.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { exists, readOrNull } from './files.js';
import { HYPERVISOR_KINDS, detectHypervisor } from './hypervisor.js';

/** Packages whose versions shape the measurements (keep in step with `packages` in the schema). */
export const TRACKED_PACKAGES = ['onnxruntime-node', 'bullmq', 'ioredis', 'fastify', '@aws-sdk/client-s3'] as const;

const NullableString = Type.Union([Type.String(), Type.Null()]);

export const HypervisorInfoSchema = Type.Object(
  {
    kind: Type.Union(HYPERVISOR_KINDS.map((kind) => Type.Literal(kind))),
    evidence: Type.Array(Type.String()),
    detail: NullableString,
  },
  { additionalProperties: false },
);

export const HostFactsSchema = Type.Object(
  {
    hostname: Type.String(),
    vcpus: Type.Integer({ minimum: 1 }),
    cpuModel: Type.String(),
    memoryBytes: Type.Integer({ minimum: 0 }),
    kernel: Type.String(),
    /** PRETTY_NAME from /etc/os-release; null when unreadable. */
    os: NullableString,
    node: Type.String(),
    /** Installed versions; null when the package is not installed. */
    packages: Type.Object(
      {
        'onnxruntime-node': NullableString,
        bullmq: NullableString,
        ioredis: NullableString,
        fastify: NullableString,
        '@aws-sdk/client-s3': NullableString,
      },
      { additionalProperties: false },
    ),
    cgroupVersion: Type.Union([Type.Literal('v1'), Type.Literal('v2'), Type.Literal('none')]),
    /** The tightest CFS quota on this process's cgroup path, in cores; null when unlimited or unknown. */
    cpuQuotaCores: Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.Null()]),
    hypervisor: HypervisorInfoSchema,
  },
  { additionalProperties: false },
);

export type HostFacts = Static<typeof HostFactsSchema>;

export async function collectHostFacts(): Promise<HostFacts> {
  const [osName, cgroup, hypervisor] = await Promise.all([readPrettyName(), cgroupFacts(), detectHypervisor()]);
  const packages = Object.fromEntries(TRACKED_PACKAGES.map((name) => [name, packageVersion(name)])) as HostFacts['packages'];
  return {
    hostname: os.hostname(),
    vcpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    os: osName,
    node: process.version,
    packages,
    cgroupVersion: cgroup.version,
    cpuQuotaCores: cgroup.cpuQuotaCores,
    hypervisor,
  };
}

const require = createRequire(import.meta.url);

/**
 * The installed version of `name`, or null. Packages with an `exports` map may not export
 * `./package.json`, so the fallback walks up from the resolved entry point to the package root.
 */
export function packageVersion(name: string): string | null {
  try {
    return readVersion(require.resolve(`${name}/package.json`), name);
  } catch {
    // Not exported (ERR_PACKAGE_PATH_NOT_EXPORTED) or not installed: try the entry point.
  }
  let entry: string | null = null;
  try {
    entry = require.resolve(name);
  } catch {
    try {
      // ESM-only packages have no "require" condition.
      entry = new URL(import.meta.resolve(name)).pathname;
    } catch {
      return null;
    }
  }
  for (let dir = path.dirname(entry); ; dir = path.dirname(dir)) {
    const version = readVersion(path.join(dir, 'package.json'), name);
    if (version !== null) return version;
    if (path.dirname(dir) === dir) return null;
  }
}

/** The version in `file` if it is the package.json of `name` (nested ones, e.g. build/esm/package.json, have no name). */
function readVersion(file: string, name: string): string | null {
  try {
    const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
    return json.name === name && typeof json.version === 'string' ? json.version : null;
  } catch {
    return null;
  }
}

async function readPrettyName(): Promise<string | null> {
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      const text = await readFile(file, 'utf8');
      const match = /^PRETTY_NAME=(.*)$/m.exec(text);
      if (match?.[1] !== undefined) return match[1].trim().replace(/^(["'])(.*)\1$/, '$2');
    } catch {
      // Try the next location.
    }
  }
  return null;
}

export interface CgroupFacts {
  version: 'v1' | 'v2' | 'none';
  cpuQuotaCores: number | null;
}

export async function cgroupFacts(): Promise<CgroupFacts> {
  const [selfCgroup, mountinfo] = await Promise.all([readOrNull('/proc/self/cgroup'), readOrNull('/proc/self/mountinfo')]);
  const mounts = mountinfo === null ? [] : parseMountinfo(mountinfo);
  if (await exists('/sys/fs/cgroup/cgroup.controllers')) {
    // Unified hierarchy. Our path is the "0::" line, relative to the cgroup2 mount's root.
    const relative = selfCgroup === null ? null : /^0::(.*)$/m.exec(selfCgroup)?.[1] ?? null;
    const mount = mounts.find((m) => m.fsType === 'cgroup2') ?? { mountPoint: '/sys/fs/cgroup', root: '/' };
    return { version: 'v2', cpuQuotaCores: await tightestQuota(mount, relative, readCpuMax) };
  }
  const v1Mount = mounts.find((m) => m.fsType === 'cgroup' && m.superOptions.split(',').includes('cpu'));
  if (v1Mount === undefined && !(selfCgroup !== null && /^\d+:[^:]+:/m.test(selfCgroup))) return { version: 'none', cpuQuotaCores: null };
  if (v1Mount === undefined) return { version: 'v1', cpuQuotaCores: null };
  // The line whose controller list includes "cpu", e.g. "4:cpu,cpuacct:/docker/abc".
  const relative =
    selfCgroup
      ?.split('\n')
      .map((line) => /^\d+:([^:]*):(.*)$/.exec(line))
      .find((m) => m?.[1]?.split(',').includes('cpu'))?.[2] ?? null;
  return { version: 'v1', cpuQuotaCores: await tightestQuota(v1Mount, relative, readCfsQuota) };
}

interface Mount {
  root: string;
  mountPoint: string;
  fsType?: string;
  superOptions?: string;
}

function parseMountinfo(text: string): Array<Required<Mount>> {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  const mounts: Array<Required<Mount>> = [];
  for (const line of text.split('\n')) {
    const [before, after] = line.split(' - ');
    if (before === undefined || after === undefined) continue;
    const fields = before.split(' ');
    const [fsType, , superOptions] = after.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (root === undefined || mountPoint === undefined || fsType === undefined) continue;
    mounts.push({ root: unescape(root), mountPoint: unescape(mountPoint), fsType, superOptions: superOptions ?? '' });
  }
  return mounts;
}

/**
 * The smallest quota from our cgroup directory up to the mount point: a parent's limit caps its
 * children, so the effective limit is the tightest one on the path.
 */
async function tightestQuota(mount: Mount, relative: string | null, read: (dir: string) => Promise<number | null>): Promise<number | null> {
  let inside = '/';
  if (relative !== null && relative.startsWith(mount.root)) inside = relative.slice(mount.root.length) || '/';
  let tightest: number | null = null;
  for (let dir = path.join(mount.mountPoint, inside); ; dir = path.dirname(dir)) {
    const quota = await read(dir);
    if (quota !== null && (tightest === null || quota < tightest)) tightest = quota;
    if (dir === mount.mountPoint || path.dirname(dir) === dir || !dir.startsWith(mount.mountPoint)) break;
  }
  return tightest;
}

/** v2 `cpu.max`: "max 100000" (unlimited) or "<quota> <period>". */
async function readCpuMax(dir: string): Promise<number | null> {
  const text = await readOrNull(path.join(dir, 'cpu.max'));
  const [quota, period] = text?.trim().split(/\s+/) ?? [];
  if (quota === undefined || quota === 'max' || period === undefined) return null;
  return coresFrom(Number(quota), Number(period));
}

/** v1 `cpu.cfs_quota_us` (-1 = unlimited) over `cpu.cfs_period_us`. */
async function readCfsQuota(dir: string): Promise<number | null> {
  const [quota, period] = await Promise.all([readOrNull(path.join(dir, 'cpu.cfs_quota_us')), readOrNull(path.join(dir, 'cpu.cfs_period_us'))]);
  if (quota === null || period === null) return null;
  return coresFrom(Number(quota.trim()), Number(period.trim()));
}

function coresFrom(quota: number, period: number): number | null {
  return Number.isFinite(quota) && Number.isFinite(period) && quota > 0 && period > 0 ? quota / period : null;
}

