/**
 * Periodic CPU samples for a worker: this process's CPU, the whole guest's CPU and the steal time
 * (CPU the hypervisor gave to someone else while this guest wanted it), the number that most
 * directly shows a noisy or overcommitted host.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { EcgFaasError } from '../../contracts/errors.js';

export interface CpuSample {
  /** End of the interval, ms since the epoch. */
  at: number;
  /** Measured length of the interval (timers fire late; the percentages use this). */
  intervalMs: number;
  /** This process, % of one core (user + system). */
  processCpuPct: number;
  /** The whole guest, % of one core summed over cores (a 2-core guest maxes at 200); null without /proc/stat. */
  hostCpuPct: number | null;
  /** Steal time, % of one core summed over cores; null without /proc/stat. */
  stealPct: number | null;
  /** Online cores in /proc/stat (os.cpus() without it). */
  hostCores: number;
}

export interface CpuDelta {
  cores: number;
  totalTicks: number;
  busyTicks: number;
  idleTicks: number;
  stealTicks: number;
  hostCpuPct: number;
  stealPct: number;
}

/**
 * Busy and steal shares between two /proc/stat readings, scaled to "% of one core" by the core
 * count. Works on tick ratios, so USER_HZ (which Node cannot read) cancels out.
 *
 * Columns of the aggregate `cpu` line: user nice system idle iowait irq softirq steal guest
 * guest_nice. guest and guest_nice are already counted in user and nice, so they are skipped;
 * iowait counts as idle; steal is its own share (neither busy nor idle for this guest).
 */
export function cpuDeltaFromProcStat(before: string, after: string): CpuDelta {
  const a = parseProcStat(before);
  const b = parseProcStat(after);
  // Counters only grow; a negative delta means a reset (or readings swapped), counted as zero.
  const d = (key: keyof ProcStatCpu) => Math.max(0, b.cpu[key] - a.cpu[key]);
  const busyTicks = d('user') + d('nice') + d('system') + d('irq') + d('softirq');
  const idleTicks = d('idle') + d('iowait');
  const stealTicks = d('steal');
  const totalTicks = busyTicks + idleTicks + stealTicks;
  const cores = b.cores;
  const pct = (ticks: number) => (totalTicks === 0 ? 0 : (ticks / totalTicks) * cores * 100);
  return { cores, totalTicks, busyTicks, idleTicks, stealTicks, hostCpuPct: pct(busyTicks), stealPct: pct(stealTicks) };
}

interface ProcStatCpu {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
}

function parseProcStat(text: string): { cpu: ProcStatCpu; cores: number } {
  const lines = text.split('\n');
  const aggregate = lines.find((line) => /^cpu\s/.test(line));
  if (aggregate === undefined) throw new EcgFaasError('PROC_STAT_PARSE', 'no aggregate "cpu" line in /proc/stat text');
  const n = aggregate.trim().split(/\s+/).slice(1).map(Number);
  if (n.length < 4 || n.some((v) => !Number.isFinite(v))) throw new EcgFaasError('PROC_STAT_PARSE', `cannot parse /proc/stat line: ${aggregate}`);
  // Old kernels have fewer columns; missing ones are zero.
  const at = (i: number) => n[i] ?? 0;
  const cores = lines.filter((line) => /^cpu\d+\s/.test(line)).length;
  return {
    cpu: { user: at(0), nice: at(1), system: at(2), idle: at(3), iowait: at(4), irq: at(5), softirq: at(6), steal: at(7) },
    cores: cores > 0 ? cores : 1,
  };
}

export interface CpuSamplerOptions {
  /** Sampling period (default 1000 ms). */
  intervalMs?: number;
  /** How many samples to keep (default 600: ten minutes at 1 s). */
  capacity?: number;
}

interface Reading {
  wallMs: number;
  monoMs: number;
  cpuUsage: NodeJS.CpuUsage;
  procStat: string | null;
}

export class CpuSampler {
  readonly #intervalMs: number;
  readonly #capacity: number;
  readonly #ring: CpuSample[] = [];
  #next = 0; // write position once the ring is full
  #timer: NodeJS.Timeout | null = null;
  #previous: Reading | null = null;
  #closed = false;

  constructor({ intervalMs = 1000, capacity = 600 }: CpuSamplerOptions = {}) {
    if (!(intervalMs > 0)) throw new EcgFaasError('CPU_SAMPLER_OPTIONS', `intervalMs must be > 0, got ${intervalMs}`);
    if (!(Number.isInteger(capacity) && capacity > 0)) throw new EcgFaasError('CPU_SAMPLER_OPTIONS', `capacity must be a positive integer, got ${capacity}`);
    this.#intervalMs = intervalMs;
    this.#capacity = capacity;
  }

  /** Takes the baseline reading and starts the timer. Idempotent while running. */
  start(): void {
    if (this.#closed) throw new EcgFaasError('CPU_SAMPLER_CLOSED', 'the CPU sampler is closed');
    if (this.#timer !== null) return;
    this.#previous = read();
    this.#timer = setInterval(() => this.#tick(), this.#intervalMs);
    // Sampling must never keep the process alive on its own.
    this.#timer.unref();
  }

  latest(): CpuSample | null {
    if (this.#ring.length === 0) return null;
    const index = this.#ring.length < this.#capacity ? this.#ring.length - 1 : (this.#next + this.#capacity - 1) % this.#capacity;
    return this.#ring[index] ?? null;
  }

  /** Oldest first. */
  samples(): CpuSample[] {
    if (this.#ring.length < this.#capacity) return [...this.#ring];
    return [...this.#ring.slice(this.#next), ...this.#ring.slice(0, this.#next)];
  }

  /** Stops the timer; the samples stay readable. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #tick(): void {
    if (this.#previous === null) return;
    const current = read();
    try {
      this.#push(sampleBetween(this.#previous, current));
    } catch {
      // Garbled /proc/stat: drop this interval; the next one starts from this reading.
    }
    this.#previous = current;
  }

  #push(sample: CpuSample): void {
    if (this.#ring.length < this.#capacity) {
      this.#ring.push(sample);
      return;
    }
    this.#ring[this.#next] = sample;
    this.#next = (this.#next + 1) % this.#capacity;
  }
}

/**
 * A synchronous read on purpose: /proc/stat is generated in memory and takes microseconds, and
 * reading it in the same instant as process.cpuUsage() and the clocks keeps the three aligned.
 * An async read takes several thread-pool round trips, which on a loaded guest skews the interval.
 */
function read(): Reading {
  let procStat: string | null = null;
  try {
    procStat = readFileSync('/proc/stat', 'utf8');
  } catch {
    // Not Linux: process figures only.
  }
  return { wallMs: Date.now(), monoMs: performance.now(), cpuUsage: process.cpuUsage(), procStat };
}

function sampleBetween(before: Reading, after: Reading): CpuSample {
  const intervalMs = after.monoMs - before.monoMs;
  // Two absolute snapshots, not process.cpuUsage(previous), which would measure up to now rather than to `after`.
  const processMicros = after.cpuUsage.user - before.cpuUsage.user + (after.cpuUsage.system - before.cpuUsage.system);
  const processCpuPct = intervalMs > 0 ? (processMicros / 1000 / intervalMs) * 100 : 0;
  const delta = before.procStat !== null && after.procStat !== null ? cpuDeltaFromProcStat(before.procStat, after.procStat) : null;
  return {
    at: after.wallMs,
    intervalMs,
    processCpuPct,
    hostCpuPct: delta?.hostCpuPct ?? null,
    stealPct: delta?.stealPct ?? null,
    hostCores: delta?.cores ?? os.cpus().length,
  };
}
