/**
 * `ecgfaas experiment run` for real, as a user runs it: the acceptance command on Table VII
 * (--quick --json), Table III's storage writes on two rows, and Ctrl-C in the middle of a run. Each
 * brings up the embedded stack, local VMs (cgroup-confined where the cgroup filesystem is writable)
 * or bare workers, replays real ECG and tears everything down. Isolated: it measures latency.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './support/data.js';
import { ecgfaas } from './support/processes.js';

const bin = path.join(repoRoot, 'bin', 'ecgfaas.js');
const KEY_PREFIX = 'ecgfaas-xp';
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-experiment-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

interface Stats { mean: number; min: number; max: number; sd: number; p50: number; p95: number; p99: number; meanCi95: [number, number]; p99Ci95: [number, number] }
interface Output {
  experiment: string; paperTable: string; metric: string; scale: number; runs: string[];
  rows: Array<{ row: string; approach: string; hypervisor: string; driver: string; vms: unknown; monitors: number; idleVms: string | null; repeats: number; n: number; metricMs: Stats; roundTripMs: Stats; failurePct: number; bimodal: boolean }>;
  comparisons: Array<{ a: string; b: string; test: string; p: number; pAdjusted: number; effect: number }>;
  skipped: Array<{ row: string; approach: string; reason: string }>;
}

/** Processes an experiment left behind: anything still running with its key prefix (gateway, workers) or its run's redis-server. */
async function leftoverProcesses(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ');
    if (cmdline.includes(KEY_PREFIX) || cmdline.includes('ecgfaas-run-')) found.push(`${pid}: ${cmdline}`);
  }
  return found;
}

/** Cgroups of the experiment's local VMs still present (v1 controllers or the v2 tree). */
async function leftoverCgroups(): Promise<string[]> {
  const parents = ['/sys/fs/cgroup/cpu/ecgfaas', '/sys/fs/cgroup/memory/ecgfaas', '/sys/fs/cgroup/freezer/ecgfaas', '/sys/fs/cgroup/ecgfaas'];
  const found: string[] = [];
  for (const parent of parents) {
    if (!existsSync(parent)) continue;
    for (const name of await readdir(parent)) if (name.startsWith(KEY_PREFIX)) found.push(path.join(parent, name));
  }
  return found;
}

function checkStats(stats: Stats): void {
  expect(stats.meanCi95[0]).toBeLessThan(stats.meanCi95[1]);
  expect(stats.mean).toBeGreaterThanOrEqual(stats.meanCi95[0]);
  expect(stats.mean).toBeLessThanOrEqual(stats.meanCi95[1]);
  expect(stats.p99Ci95[0]).toBeLessThanOrEqual(stats.p99Ci95[1]);
  expect(stats.min).toBeLessThanOrEqual(stats.p50);
  expect(stats.p50).toBeLessThanOrEqual(stats.p99);
  expect(stats.p99).toBeLessThanOrEqual(stats.max);
}

describe('ecgfaas experiment run', () => {
  it('Table VII --quick --json: bare and local rows filled with intervals, a tested comparison, KVM and Xen skipped with reasons, report --run on every run, nothing left', async () => {
    const store = path.join(scratch, 'store7');
    const out = path.join(scratch, 'out7');
    const run = await ecgfaas(['experiment', 'run', 'experiments/paper/table-7.yaml', '--quick', '--json', '--store', store, '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as Output;
    expect(result).toMatchObject({ experiment: 'table-7', paperTable: 'VII', metric: 'roundTrip', scale: 0.25 });
    const filled = result.rows.filter((row) => row.n > 0);
    expect(filled.length).toBeGreaterThanOrEqual(2);
    // The paper's table order: kvm, xen-pv, xen-fv, local, bare (those this host cannot run are skipped).
    const order = ['kvm', 'xen-pv', 'xen-fv', 'local', 'bare'];
    expect(result.rows.map((row) => order.indexOf(row.row))).toEqual([...result.rows.map((row) => order.indexOf(row.row))].sort((a, b) => a - b));
    expect(result.rows.length + result.skipped.length).toBe(5);
    for (const row of filled) {
      expect(row.repeats).toBe(2);
      expect(row.monitors).toBe(8);
      checkStats(row.metricMs);
      // The metric is the round trip here.
      expect(row.roundTripMs.mean).toBe(row.metricMs.mean);
      expect(row.failurePct).toBeGreaterThanOrEqual(0);
      expect(row.failurePct).toBeLessThanOrEqual(100);
    }
    const local = result.rows.find((row) => row.row === 'local');
    expect(local).toMatchObject({ approach: 'local', driver: 'local', idleVms: 'running', vms: { count: 4, vcpus: 0.5, workersPerVm: 2, active: 4 } });
    // What the workers detected, not the paper's column: this host is itself a KVM guest.
    expect(local?.hypervisor).not.toBe('');
    expect(result.comparisons.length).toBeGreaterThanOrEqual(1);
    for (const comparison of result.comparisons) {
      expect(comparison.p).toBeGreaterThanOrEqual(0);
      expect(comparison.p).toBeLessThanOrEqual(1);
      expect(comparison.pAdjusted).toBeGreaterThanOrEqual(comparison.p);
      expect(Math.abs(comparison.effect)).toBeLessThanOrEqual(1);
    }
    for (const skip of result.skipped) {
      expect(['kvm', 'xen-pv', 'xen-hvm']).toContain(skip.approach);
      expect(skip.reason.length).toBeGreaterThan(10);
    }
    expect(result.runs).toHaveLength(filled.length * 2);
    for (const runId of result.runs) {
      const report = await ecgfaas(['report', '--run', runId, '--store', store, '--json']);
      expect(report.code, report.stderr).toBe(0);
      const parsed = JSON.parse(report.stdout) as { runId: string; records: { processed: number } };
      expect(parsed.runId).toBe(runId);
      expect(parsed.records.processed).toBeGreaterThan(0);
    }
    const markdown = await readFile(path.join(out, 'table-7.md'), 'utf8');
    expect(markdown).toContain('| KVM | 754.29 | 322.45 | 1584.89 | 127.954 | 3.64 |');
    expect(markdown).toContain('| Local VM | local |');
    for (const figure of ['table-7-density.svg', 'table-7-cdf.svg']) {
      const svg = await readFile(path.join(out, figure), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      // One line per row with values.
      expect(svg.match(/<path[^>]*aria-roledescription="line mark"|class="mark-line/g)?.length ?? 0).toBeGreaterThanOrEqual(1);
    }
    expect(JSON.parse(await readFile(path.join(out, 'table-7.json'), 'utf8'))).toMatchObject({ experiment: 'table-7', runs: result.runs });
    expect(await leftoverProcesses()).toEqual([]);
    expect(await leftoverCgroups()).toEqual([]);
  }, 420_000);

  it('Table III (storage writes) on the base and local rows: each abnormal packet\'s own write time', async () => {
    const store = path.join(scratch, 'store3');
    const run = await ecgfaas(['experiment', 'run', 'experiments/paper/table-3.yaml', '--quick', '--rows', 'base,local', '--repeats', '1', '--json', '--store', store]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as Output;
    expect(result.metric).toBe('write');
    expect(result.rows.map((row) => row.row)).toEqual(['base', 'local']);
    expect(result.skipped).toEqual([]);
    for (const row of result.rows) {
      expect(row.n).toBeGreaterThan(0);
      checkStats(row.metricMs);
      // A write is much shorter than the round trip it is part of, and is timed apart from it.
      expect(row.metricMs.p50).toBeLessThan(row.roundTripMs.max);
    }
    expect(result.comparisons).toHaveLength(1);
    expect(await leftoverProcesses()).toEqual([]);
    expect(await leftoverCgroups()).toEqual([]);
  }, 300_000);

  it('Ctrl-C during a run stops it, tears down the stack and the local VMs, and exits with EXPERIMENT_ABORTED', async () => {
    const child = spawn(process.execPath, [bin, 'experiment', 'run', 'experiments/paper/table-7.yaml', '--quick', '--rows', 'local', '--store', path.join(scratch, 'store-int')], {
      cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Wait until the first run's replay is under way (its run id is printed once the VMs are up).
    for (let waited = 0; !/run 1: local repeat 1/.test(stderr) && waited < 120_000; waited += 250) await new Promise((resolve) => setTimeout(resolve, 250));
    expect(stderr).toMatch(/run 1: local repeat 1/);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const stoppedAt = Date.now();
    child.kill('SIGINT');
    const code = await exited;
    expect(code).toBe(1);
    expect(stderr).toContain('[EXPERIMENT_ABORTED]');
    expect(Date.now() - stoppedAt).toBeLessThan(60_000);
    expect(await leftoverProcesses()).toEqual([]);
    expect(await leftoverCgroups()).toEqual([]);
  }, 240_000);
});
