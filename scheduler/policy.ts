/**
 * The placement policy: a YAML file validated against one TypeBox schema (the same schema documents
 * it in docs/SCHEDULER.md), with presets. Every rule the paper's findings suggest is a key here; a
 * policy with none of them places by CPU headroom alone.
 *
 * Error codes (SchedulerError): POLICY_UNREADABLE (file missing or not YAML), POLICY_INVALID (one
 * line per bad field, each with its path, e.g. `/maxInstancesPerVm: must be >= 1`).
 */
import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parse as parseYaml } from 'yaml';
import { HYPERVISOR_KINDS } from '../contracts/invocation.js';
import { SchedulerError } from './errors.js';

const Hypervisor = Type.Union(HYPERVISOR_KINDS.map((kind) => Type.Literal(kind)));

export const PolicySchema = Type.Object({
  /** Defaults to start from (`paper`: 2 instances per VM, a core left to the hypervisor). */
  preset: Type.Optional(Type.Union([Type.Literal('default'), Type.Literal('paper')])),
  /** Most function instances on one VM / one host (no cap when absent). */
  maxInstancesPerVm: Type.Optional(Type.Integer({ minimum: 1 })),
  maxInstancesPerHost: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The scale-out limit: most VMs the scheduler may run (existing ones included). */
  maxVms: Type.Integer({ minimum: 1 }),
  onNoCapacity: Type.Union([Type.Literal('scale-out'), Type.Literal('refuse')]),
  idleVm: Type.Union([Type.Literal('keep'), Type.Literal('pause'), Type.Literal('shutdown')]),
  /** A VM without instances for this long gets the idleVm treatment (s). */
  idleVmAfterS: Type.Integer({ minimum: 0 }),
  /** A monitor silent for this long releases its slot (s). */
  monitorIdleReleaseS: Type.Integer({ minimum: 1 }),
  /** A worker whose heartbeat is older than this is dead to placement and the control loop (s; heartbeats come every 2 s). */
  workerDeadAfterS: Type.Integer({ minimum: 3, maximum: 3600 }),
  /** spread: the least-loaded eligible VM; pack: the most-loaded one that still fits. */
  strategy: Type.Union([Type.Literal('spread'), Type.Literal('pack')]),
  /** Fraction of each VM's vCPUs kept free (0..0.9). */
  cpuHeadroom: Type.Number({ minimum: 0, maximum: 0.9 }),
  /** CPU per packet of a function before any is measured (ms; each monitor sends 1 packet/s). */
  defaultCostMsPerPacket: Type.Number({ exclusiveMinimum: 0, maximum: 1000 }),
  /** CPUs of each host left to the hypervisor/dom0, by hypervisor (`*`: any other). */
  hostReserveCpus: Type.Partial(Type.Object(Object.fromEntries(['*', ...HYPERVISOR_KINDS].map((kind) => [kind, Type.Number({ minimum: 0 })])), { additionalProperties: false })),
  /** Monitors of a profile (e.g. high beat rate, noisy) kept apart: at most maxPerVm of them on one VM. */
  antiAffinity: Type.Array(Type.Object({
    profile: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    maxPerVm: Type.Integer({ minimum: 1 }),
  }, { additionalProperties: false })),
  /**
   * Hypervisor preference, first match wins: when the candidate host's projected CPU use (its VMs'
   * load over its CPUs less the reserve) is at most `maxHostLoad`, prefer the listed hypervisors in
   * order. The paper's reading: Xen while load is controlled and the hypervisor has headroom, KVM
   * when hosts run heavily loaded.
   */
  hypervisorPreference: Type.Array(Type.Object({
    maxHostLoad: Type.Number({ minimum: 0, maximum: 10 }),
    prefer: Type.Array(Hypervisor, { minItems: 1 }),
  }, { additionalProperties: false })),
  /**
   * Interference detection and recovery (scheduler/interference.ts): each pass of the control loop
   * looks at every VM's last window of packets (deadline misses, service-time p95, the age of the
   * oldest packet still queued) and its workers' CPU probe. A VM bad for `sustainWindows` windows in
   * a row is quarantined (no new placements) and its monitors are moved to VMs the policy allows; a
   * while later the scheduler checks that it helped. The VM comes back once good (below the
   * thresholds × `clearRatio`, and an idle one's probe below `probeClearSlowdown`) for as many
   * windows, and `quarantineS` has passed.
   */
  interference: Type.Object({
    enabled: Type.Boolean(),
    /** Service time past which a packet missed its deadline (ms). */
    deadlineMs: Type.Number({ exclusiveMinimum: 0 }),
    /** Bad: at least this fraction of the window's packets missed the deadline... */
    missRate: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
    /** ...or their service-time p95, or the oldest queued packet's age, is at least this (ms). */
    latencyP95Ms: Type.Number({ exclusiveMinimum: 0 }),
    /** A window with fewer packets than this says nothing about latency (the backlog still counts). */
    minPackets: Type.Integer({ minimum: 1 }),
    /** Hysteresis: good means below the thresholds times this. */
    clearRatio: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
    sustainWindows: Type.Integer({ minimum: 1 }),
    quarantineS: Type.Integer({ minimum: 0 }),
    verifyAfterS: Type.Integer({ minimum: 1 }),
    /** A VM without packets is good while its workers' CPU probe runs within this many times its best. */
    probeClearSlowdown: Type.Number({ minimum: 1 }),
  }, { additionalProperties: false }),
  /** The VM a scale-out asks the deploy driver for. */
  scaleOut: Type.Object({
    vcpus: Type.Number({ exclusiveMinimum: 0, maximum: 256 }),
    memoryMb: Type.Integer({ minimum: 64 }),
    hypervisor: Hypervisor,
  }, { additionalProperties: false }),
}, { additionalProperties: false });

export type Policy = Static<typeof PolicySchema>;

/** What a policy file may leave out: everything but what it wants changed. */
const DEFAULTS: Omit<Policy, 'preset'> = {
  maxVms: 8,
  onNoCapacity: 'refuse',
  idleVm: 'keep',
  idleVmAfterS: 300,
  monitorIdleReleaseS: 60,
  workerDeadAfterS: 15,
  strategy: 'spread',
  cpuHeadroom: 0.2,
  defaultCostMsPerPacket: 5,
  hostReserveCpus: { '*': 0 },
  antiAffinity: [],
  hypervisorPreference: [],
  scaleOut: { vcpus: 1, memoryMb: 1024, hypervisor: 'kvm' },
  interference: {
    enabled: true, deadlineMs: 1000, missRate: 0.02, latencyP95Ms: 800, minPackets: 5, clearRatio: 0.5,
    sustainWindows: 2, quarantineS: 60, verifyAfterS: 20, probeClearSlowdown: 3,
  },
};

/**
 * The paper's findings as a policy (Ericson & Pallickara): 2 monitors per VM never missed a deadline
 * and 3 did (Tables II-IV), with functions of ~305 ms per packet; Xen did best with a core left to
 * dom0 (Table VIII); idle VMs hurt Xen (Table V); Xen when placement is controlled, KVM when loaded.
 */
const PRESETS: Record<'default' | 'paper', Partial<Policy>> = {
  default: {},
  paper: {
    maxInstancesPerVm: 2,
    defaultCostMsPerPacket: 305,
    hostReserveCpus: { 'xen-pv': 1, 'xen-hvm': 1, '*': 0 },
    idleVm: 'pause',
    hypervisorPreference: [{ maxHostLoad: 0.7, prefer: ['xen-pv', 'xen-hvm', 'kvm'] }, { maxHostLoad: 10, prefer: ['kvm', 'xen-hvm', 'xen-pv'] }],
  },
};

const checkPolicy = TypeCompiler.Compile(PolicySchema);

/** The policy from a parsed document: preset, then the document's own keys, validated. */
export function resolvePolicy(document: unknown, source = 'policy'): Policy {
  if (document === null || document === undefined) document = {};
  if (typeof document !== 'object' || Array.isArray(document)) {
    throw new SchedulerError('POLICY_INVALID', `${source}: the policy must be a mapping of keys to values`);
  }
  const given = document as Record<string, unknown>;
  const preset = given.preset === 'paper' ? 'paper' : 'default';
  const merged: Record<string, unknown> = { ...DEFAULTS, ...PRESETS[preset], ...given };
  // A document may set some interference keys and keep the defaults of the rest.
  if (typeof given.interference === 'object' && given.interference !== null && !Array.isArray(given.interference)) {
    merged.interference = { ...DEFAULTS.interference, ...given.interference };
  }
  if (!checkPolicy.Check(merged)) {
    const lines = [...checkPolicy.Errors(merged)].map((error) => `${error.path || '/'}: ${error.message}`);
    throw new SchedulerError('POLICY_INVALID', `${source} is not a valid placement policy:\n  ${[...new Set(lines)].join('\n  ')}`);
  }
  return merged;
}

/** Reads and validates a policy YAML file. */
export async function loadPolicy(file: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new SchedulerError('POLICY_UNREADABLE', `cannot read policy ${file}: ${(error as Error).message}`, { cause: error });
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new SchedulerError('POLICY_UNREADABLE', `policy ${file} is not YAML: ${(error as Error).message}`, { cause: error });
  }
  return resolvePolicy(document, file);
}

/** CPUs a host keeps for its hypervisor under this policy. */
export function hostReserve(policy: Policy, hypervisor: string): number {
  const reserves = policy.hostReserveCpus as Record<string, number | undefined>;
  return reserves[hypervisor] ?? reserves['*'] ?? 0;
}
