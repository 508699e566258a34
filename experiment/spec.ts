/**
 * Experiment specs: one YAML file per table of the reference paper (experiments/paper/table-N.yaml),
 * validated against one TypeBox schema like the placement policy (a bad file is refused with one
 * line per bad field and its path), then resolved for a host: the paper's sizes times the scale,
 * time compressed by the spec's factor (see `resolveSpec`).
 *
 * Error codes (ExperimentError): EXPERIMENT_UNREADABLE (missing, not YAML), EXPERIMENT_INVALID.
 */
import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parse as parseYaml } from 'yaml';
import { ExperimentError } from './errors.js';

export const APPROACHES = ['bare', 'local', 'qemu', 'kvm', 'xen-pv', 'xen-hvm'] as const;
export type Approach = (typeof APPROACHES)[number];
export const IDLE_STATES = ['running', 'paused', 'shutdown'] as const;
export type IdleState = (typeof IDLE_STATES)[number];
export const METRICS = ['compute', 'roundTrip', 'write'] as const;
export type Metric = (typeof METRICS)[number];
export const ROMAN = ['I', 'II', 'III', 'IV', 'V', 'VI', 'VII', 'VIII'] as const;

const Slug = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,47}$' });

/** The paper's numbers for one of its rows, for the side-by-side table. */
const PaperRowSchema = Type.Object({
  row: Type.String({ minLength: 1, maxLength: 48 }),
  mean: Type.Number(),
  min: Type.Number(),
  max: Type.Number(),
  sd: Type.Number(),
  failurePct: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 100 }), Type.Null()])),
}, { additionalProperties: false });

export const RowSchema = Type.Object({
  /** What --rows names and the JSON output's `row` (e.g. `xen-pv-paused`). */
  id: Slug,
  /** As the paper's table prints it (e.g. `Xen PV (paused)`). */
  label: Type.String({ minLength: 1, maxLength: 48 }),
  approach: Type.Union(APPROACHES.map((approach) => Type.Literal(approach))),
  /** The paper's row this one reproduces (only a real counterpart: a local VM is never the paper's KVM). */
  paperRow: Type.Optional(Type.String({ minLength: 1, maxLength: 48 })),
  /** Monitors in the row, in all. */
  monitors: Type.Integer({ minimum: 1, maximum: 10_000 }),
  /** bare: worker processes at the paper's size (its JVM threads), scaled like vCPUs. */
  workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  /** VM approaches: the VMs at the paper's size (vCPUs are scaled, memory is not). */
  vms: Type.Optional(Type.Object({
    count: Type.Integer({ minimum: 1, maximum: 64 }),
    vcpus: Type.Number({ exclusiveMinimum: 0, maximum: 64 }),
    memoryMb: Type.Integer({ minimum: 256, maximum: 262_144 }),
  }, { additionalProperties: false })),
  /** Warm workers in each VM (local VMs, default 2: the paper's JVM ran 2 threads per VM; a libvirt guest runs 1). */
  workersPerVm: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
  /** Monitors on each VM that carries any: VM 1 gets the first this many, and so on; the rest stay idle. */
  monitorsPerVm: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  /** What the VMs without monitors do during the row (the paper's Tables V-VI). */
  idleVms: Type.Optional(Type.Union(IDLE_STATES.map((state) => Type.Literal(state)))),
}, { additionalProperties: false });

export const ExperimentSpecSchema = Type.Object({
  experiment: Slug,
  paperTable: Type.Union(ROMAN.map((numeral) => Type.Literal(numeral))),
  title: Type.String({ minLength: 1, maxLength: 200 }),
  /** What the paper's table reports: time in the function, device round trip, or each storage write. */
  metric: Type.Union(METRICS.map((metric) => Type.Literal(metric))),
  scaling: Type.Object({
    /** This host's CPUs over the paper's 8 hardware threads: vCPUs, bare workers and CPU cost per packet are multiplied by it. */
    scale: Type.Number({ exclusiveMinimum: 0, maximum: 4 }),
    /**
     * Packets per second per monitor (1 = real time). Each packet is still one second of ECG; CPU
     * cost per packet and the deadline are divided by it, so utilisation and the deadline's ratio
     * to the work stay the paper's while a repeat gathers this many times more round trips.
     */
    timeCompression: Type.Integer({ minimum: 1, maximum: 20 }),
    /** The rule in words (printed with every result). */
    rule: Type.String({ minLength: 1 }),
  }, { additionalProperties: false }),
  load: Type.Object({
    /** Record names in the data directory, or all of them (default). */
    records: Type.Optional(Type.Union([Type.Literal('all'), Type.Array(Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$' }), { minItems: 1 })])),
    /** Measured seconds (wall clock) of each repeat. */
    durationS: Type.Integer({ minimum: 1, maximum: 36_000 }),
    /** Seconds before those (models, JIT, connections warm up; not counted). */
    warmupS: Type.Integer({ minimum: 0, maximum: 600 }),
    /** Abnormal episodes written to the store (the paper's "disk writes"). */
    episodes: Type.Boolean(),
    /** The paper's CPU per packet at its own size (its Table I: ~305 ms). */
    paperCostMs: Type.Number({ minimum: 0, maximum: 10_000 }),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffff_ffff })),
  }, { additionalProperties: false }),
  repeats: Type.Integer({ minimum: 1, maximum: 100 }),
  /** The paper's failure rule at real time (an answer later than this fails). */
  deadlineMs: Type.Number({ exclusiveMinimum: 0 }),
  /** The statistics' unit: blocks of this many seconds of a run (see experiment/stats). */
  blockS: Type.Integer({ minimum: 1, maximum: 600 }),
  /** What --quick runs instead. */
  quick: Type.Object({
    durationS: Type.Integer({ minimum: 1 }),
    warmupS: Type.Integer({ minimum: 0 }),
    repeats: Type.Integer({ minimum: 1 }),
    blockS: Type.Optional(Type.Integer({ minimum: 1 })),
  }, { additionalProperties: false }),
  paper: Type.Object({
    /** Where the numbers come from (table and page). */
    source: Type.String(),
    rows: Type.Array(PaperRowSchema),
  }, { additionalProperties: false }),
  rows: Type.Array(RowSchema, { minItems: 1 }),
}, { additionalProperties: false });

export type ExperimentSpec = Static<typeof ExperimentSpecSchema>;
export type RowSpec = Static<typeof RowSchema>;

const DEFAULTS = { repeats: 5, deadlineMs: 1000, blockS: 10 };
const checkSpec = TypeCompiler.Compile(ExperimentSpecSchema);
const VM_APPROACHES: readonly Approach[] = ['local', 'qemu', 'kvm', 'xen-pv', 'xen-hvm'];

export function isVmApproach(approach: Approach): boolean {
  return VM_APPROACHES.includes(approach);
}

/** The spec in a parsed YAML document, validated: every bad field is one line with its path. */
export function validateSpec(document: unknown, source = 'experiment spec'): ExperimentSpec {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new ExperimentError('EXPERIMENT_INVALID', `${source}: an experiment spec must be a mapping of keys to values`);
  }
  const merged = { ...DEFAULTS, ...(document as Record<string, unknown>) };
  if (!checkSpec.Check(merged)) {
    const lines = [...checkSpec.Errors(merged)].map((error) => `${error.path || '/'}: ${error.message}`);
    throw new ExperimentError('EXPERIMENT_INVALID', `${source} is not a valid experiment spec:\n  ${[...new Set(lines)].join('\n  ')}`);
  }
  const lines = crossFieldErrors(merged);
  if (lines.length > 0) throw new ExperimentError('EXPERIMENT_INVALID', `${source} is not a valid experiment spec:\n  ${lines.join('\n  ')}`);
  return merged;
}

/** What the schema cannot say: which keys each approach needs, unique ids, references to the paper's rows. */
function crossFieldErrors(spec: ExperimentSpec): string[] {
  const lines: string[] = [];
  const ids = new Set<string>();
  const paperRows = new Set(spec.paper.rows.map((row) => row.row));
  spec.rows.forEach((row, index) => {
    const at = `/rows/${index}`;
    if (ids.has(row.id)) lines.push(`${at}/id: "${row.id}" is used by an earlier row`);
    ids.add(row.id);
    if (row.paperRow !== undefined && !paperRows.has(row.paperRow)) lines.push(`${at}/paperRow: "${row.paperRow}" is not a row of /paper/rows`);
    if (row.approach === 'bare') {
      if (row.workers === undefined) lines.push(`${at}/workers: required for approach bare`);
      for (const key of ['vms', 'workersPerVm', 'monitorsPerVm', 'idleVms'] as const) {
        if (row[key] !== undefined) lines.push(`${at}/${key}: not for approach bare (its workers run outside any VM)`);
      }
      return;
    }
    if (row.workers !== undefined) lines.push(`${at}/workers: only for approach bare (VMs have workersPerVm)`);
    if (row.approach !== 'local' && row.workersPerVm !== undefined && row.workersPerVm !== 1) lines.push(`${at}/workersPerVm: a ${row.approach} guest runs one worker (its initramfs starts one)`);
    if (row.vms === undefined) lines.push(`${at}/vms: required for approach ${row.approach}`);
    if (row.monitorsPerVm === undefined) lines.push(`${at}/monitorsPerVm: required for approach ${row.approach}`);
    if (row.vms !== undefined && row.monitorsPerVm !== undefined && row.monitors > row.vms.count * row.monitorsPerVm) {
      lines.push(`${at}/monitors: ${row.monitors} do not fit on ${row.vms.count} VMs of ${row.monitorsPerVm} monitors`);
    }
  });
  return lines;
}

/** Reads and validates a spec file. */
export async function loadSpec(file: string): Promise<ExperimentSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ExperimentError('EXPERIMENT_UNREADABLE', `cannot read experiment spec ${file}: ${(error as Error).message}`, { cause: error });
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ExperimentError('EXPERIMENT_UNREADABLE', `experiment spec ${file} is not YAML: ${(error as Error).message}`, { cause: error });
  }
  return validateSpec(document, file);
}

export interface ResolveOptions {
  /** Overrides the spec's scale (--scale; 1 = the paper's sizes, for an 8-thread host). */
  scale?: number;
  quick?: boolean;
  repeats?: number;
  /** Only these row ids (--rows). */
  rows?: readonly string[];
}

/** One row as it runs on this host. */
export interface ResolvedRow {
  spec: RowSpec;
  id: string;
  label: string;
  approach: Approach;
  monitors: number;
  /** bare: worker processes. */
  workers: number;
  /** VM approaches: the VMs as made here. */
  vms: { count: number; vcpus: number; memoryMb: number } | null;
  workersPerVm: number;
  monitorsPerVm: number;
  /** VMs that carry monitors; the others are idle in `idleVms`. */
  activeVms: number;
  idleVms: IdleState;
}

export interface ResolvedExperiment {
  spec: ExperimentSpec;
  scale: number;
  timeCompression: number;
  /** ms between a monitor's packets. */
  packetPeriodMs: number;
  /** The failure rule here: the paper's deadline over the time compression. */
  deadlineMs: number;
  /** CPU per packet here (ms of this host's CPU): paperCostMs × scale / timeCompression. */
  costMs: number;
  durationS: number;
  warmupS: number;
  repeats: number;
  blockS: number;
  /** Packets each monitor sends per repeat (warm-up included). */
  packetsPerMonitor: number;
  rows: ResolvedRow[];
  /** The scaling rule with this run's numbers. */
  rule: string;
}

/**
 * The spec for this host. With scale s and time compression k: VM vCPUs × s (a CPU quota where
 * that is under one), bare workers × s (at least one), CPU cost per packet × s / k, packets every
 * 1000/k ms, deadline / k. Memory is not scaled (it is not what the paper's tables stress).
 */
export function resolveSpec(spec: ExperimentSpec, options: ResolveOptions = {}): ResolvedExperiment {
  const scale = options.scale ?? spec.scaling.scale;
  if (!(Number.isFinite(scale) && scale > 0 && scale <= 4)) throw new ExperimentError('EXPERIMENT_BAD_OPTION', `--scale must be in (0, 4], not ${scale}`);
  const k = spec.scaling.timeCompression;
  let rows = spec.rows;
  if (options.rows !== undefined) {
    const unknown = options.rows.filter((id) => !spec.rows.some((row) => row.id === id));
    if (unknown.length > 0) {
      throw new ExperimentError('EXPERIMENT_BAD_OPTION', `--rows: ${unknown.join(', ')} not in ${spec.experiment} (its rows: ${spec.rows.map((row) => row.id).join(', ')})`);
    }
    rows = spec.rows.filter((row) => options.rows?.includes(row.id));
  }
  const durationS = options.quick ? spec.quick.durationS : spec.load.durationS;
  const warmupS = options.quick ? spec.quick.warmupS : spec.load.warmupS;
  const repeats = options.repeats ?? (options.quick ? spec.quick.repeats : spec.repeats);
  if (!(Number.isInteger(repeats) && repeats >= 1)) throw new ExperimentError('EXPERIMENT_BAD_OPTION', `--repeats must be a whole number >= 1, not ${repeats}`);
  const costMs = (spec.load.paperCostMs * scale) / k;
  const resolved: ResolvedExperiment = {
    spec, scale, timeCompression: k, packetPeriodMs: 1000 / k, deadlineMs: spec.deadlineMs / k, costMs, durationS, warmupS, repeats,
    blockS: options.quick ? spec.quick.blockS ?? Math.max(1, Math.min(spec.blockS, Math.floor(durationS / 3))) : spec.blockS,
    packetsPerMonitor: (durationS + warmupS) * k,
    rows: rows.map((row) => resolveRow(row, scale)),
    rule: '',
  };
  resolved.rule = `${spec.scaling.rule.trim()} Here: scale ${scale}, time compression ${k} (a packet every ${round(1000 / k)} ms), `
    + `CPU per packet ${round(costMs)} ms (${spec.load.paperCostMs} × ${scale} / ${k}), deadline ${round(resolved.deadlineMs)} ms (${spec.deadlineMs} / ${k}).`;
  return resolved;
}

function resolveRow(row: RowSpec, scale: number): ResolvedRow {
  const vms = row.vms === undefined ? null : { count: row.vms.count, vcpus: round(row.vms.vcpus * scale, 3), memoryMb: row.vms.memoryMb };
  const monitorsPerVm = row.monitorsPerVm ?? row.monitors;
  return {
    spec: row, id: row.id, label: row.label, approach: row.approach, monitors: row.monitors,
    workers: row.workers === undefined ? 0 : Math.max(1, Math.round(row.workers * scale)),
    vms, workersPerVm: row.workersPerVm ?? (row.approach === 'local' ? 2 : 1), monitorsPerVm,
    activeVms: vms === null ? 0 : Math.ceil(row.monitors / monitorsPerVm),
    idleVms: row.idleVms ?? 'running',
  };
}

function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
