/**
 * Experiment specs and the analysis of their runs, without running anything: the eight shipped
 * specs validate, `experiment ls --json` lists them, a bad spec is refused with each bad field's
 * path (also by the CLI, exit 2), the scaling rule's numbers, and the table built from samples.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { compareRows, loadSpec, resolveSpec, summariseRow, validateSpec, type RowRuns, type Sample } from '../experiment/index.js';
import { repoRoot } from './support/data.js';
import { ecgfaas } from './support/processes.js';

const specsDir = path.join(repoRoot, 'experiments', 'paper');
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-spec-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('the shipped specs', () => {
  it('all eight validate, one per paper table, each with at least two rows that run on any host (bare or local)', async () => {
    const files = (await readdir(specsDir)).filter((name) => name.endsWith('.yaml')).sort();
    expect(files).toEqual(['table-1.yaml', 'table-2.yaml', 'table-3.yaml', 'table-4.yaml', 'table-5.yaml', 'table-6.yaml', 'table-7.yaml', 'table-8.yaml']);
    const tables = [];
    for (const file of files) {
      const spec = await loadSpec(path.join(specsDir, file));
      tables.push(spec.paperTable);
      expect(spec.rows.filter((row) => row.approach === 'bare' || row.approach === 'local').length).toBeGreaterThanOrEqual(2);
      // Every paper row with numbers has its row to reproduce it (skipped here or not).
      for (const paperRow of spec.paper.rows) expect(spec.rows.some((row) => row.paperRow === paperRow.row)).toBe(true);
      // A local VM is never presented as the paper's KVM.
      for (const row of spec.rows.filter((each) => each.approach === 'local' || each.approach === 'qemu')) expect(row.paperRow).toBeUndefined();
    }
    expect(tables).toEqual(['I', 'II', 'III', 'IV', 'V', 'VI', 'VII', 'VIII']);
    expect((await loadSpec(path.join(specsDir, 'table-1.yaml'))).metric).toBe('compute');
    expect((await loadSpec(path.join(specsDir, 'table-3.yaml'))).metric).toBe('write');
  });

  it('each full table gathers at least 1,000 round trips per row and repeat', async () => {
    for (let table = 1; table <= 8; table++) {
      const resolved = resolveSpec(await loadSpec(path.join(specsDir, `table-${table}.yaml`)));
      const perMonitor = resolved.durationS * resolved.timeCompression;
      for (const row of resolved.rows) expect(row.monitors * perMonitor, `table ${table} row ${row.id}`).toBeGreaterThanOrEqual(1000);
    }
  });

  it('ecgfaas experiment ls --json lists the eight tables with Roman numerals', async () => {
    const run = await ecgfaas(['experiment', 'ls', '--json']);
    expect(run.code).toBe(0);
    const listed = JSON.parse(run.stdout) as Array<{ file: string; experiment: string; paperTable: string }>;
    expect(listed.map((entry) => entry.paperTable)).toEqual(['I', 'II', 'III', 'IV', 'V', 'VI', 'VII', 'VIII']);
    expect(listed.map((entry) => entry.experiment)).toEqual(Array.from({ length: 8 }, (_, index) => `table-${index + 1}`));
    expect(listed[6]?.file).toBe(path.join('experiments', 'paper', 'table-7.yaml'));
  });
});

describe('a bad spec', () => {
  const good = async () => (await import('yaml')).parse(await (await import('node:fs/promises')).readFile(path.join(specsDir, 'table-7.yaml'), 'utf8')) as Record<string, unknown>;

  it('is refused with one line per bad field and its path', async () => {
    const spec = await good();
    const rows = spec.rows as Array<Record<string, unknown>>;
    const bad = {
      ...spec, metric: 'latency', scaling: { ...(spec.scaling as object), scale: 0 }, repeats: 0,
      rows: [{ ...rows[0], approach: 'vmware' }, ...rows.slice(1)],
    };
    let message = '';
    try {
      validateSpec(bad, 'bad.yaml');
    } catch (error) {
      expect((error as { code: string }).code).toBe('EXPERIMENT_INVALID');
      message = (error as Error).message;
    }
    expect(message).toContain('bad.yaml is not a valid experiment spec');
    expect(message).toContain('/metric');
    expect(message).toContain('/scaling/scale');
    expect(message).toContain('/repeats');
    expect(message).toContain('/rows/0/approach');
  });

  it('is refused for what the schema cannot see: keys an approach needs, duplicate ids, unknown paper rows, monitors that do not fit', async () => {
    const spec = await good();
    const rows = spec.rows as Array<Record<string, unknown>>;
    const bad = {
      ...spec,
      rows: [
        { ...rows[0], vms: undefined },
        { ...rows[1], id: rows[0]?.id, paperRow: 'Xen 5' },
        { ...rows[3], monitors: 9 },
        { ...rows[4], workers: undefined, monitorsPerVm: 2 },
      ],
    };
    expect(() => validateSpec(JSON.parse(JSON.stringify(bad)), 'bad.yaml')).toThrowError(
      /\/rows\/0\/vms: required for approach kvm[\s\S]*\/rows\/1\/id: "kvm" is used by an earlier row[\s\S]*\/rows\/1\/paperRow: "Xen 5"[\s\S]*\/rows\/2\/monitors: 9 do not fit on 4 VMs of 2 monitors[\s\S]*\/rows\/3\/workers: required for approach bare[\s\S]*\/rows\/3\/monitorsPerVm: not for approach bare/,
    );
  });

  it('makes `experiment run` exit 2 with the paths, before anything starts; so does an unknown row', async () => {
    const spec = await good();
    const file = path.join(scratch, 'bad.yaml');
    await writeFile(file, stringify({ ...spec, blockS: -1, load: { ...(spec.load as object), durationS: 'long' } }));
    const run = await ecgfaas(['experiment', 'run', file, '--json', '--store', path.join(scratch, 'store')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('[EXPERIMENT_INVALID]');
    expect(run.stderr).toContain('/blockS');
    expect(run.stderr).toContain('/load/durationS');
    expect(run.stdout).toBe('');
    const rows = await ecgfaas(['experiment', 'run', path.join(specsDir, 'table-7.yaml'), '--rows', 'local,vmware', '--store', path.join(scratch, 'store')]);
    expect(rows.code).toBe(2);
    expect(rows.stderr).toContain('--rows: vmware not in table-7');
    const missing = await ecgfaas(['experiment', 'run', path.join(scratch, 'nothing.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('[EXPERIMENT_UNREADABLE]');
  });
});

describe('the scaling rule', () => {
  it('scales vCPUs, bare workers and CPU per packet by the scale, and divides cost and deadline by the time compression', async () => {
    const table5 = resolveSpec(await loadSpec(path.join(specsDir, 'table-5.yaml')));
    expect(table5.timeCompression).toBe(5);
    expect(table5.packetPeriodMs).toBe(200);
    expect(table5.deadlineMs).toBe(200);
    expect(table5.costMs).toBeCloseTo((305 * 0.25) / 5, 9);
    const local = table5.rows.find((row) => row.id === 'local-paused');
    expect(local).toMatchObject({ vms: { count: 4, vcpus: 0.5, memoryMb: 2048 }, activeVms: 1, idleVms: 'paused', monitorsPerVm: 3, workersPerVm: 2 });
    // Each VM's utilisation is the paper's: monitors × cost × packets per second / vCPUs.
    expect((3 * table5.costMs * table5.timeCompression) / 1000 / 0.5).toBeCloseTo((3 * 305) / 1000 / 2, 9);
    expect(table5.rule).toContain('Here: scale 0.25, time compression 5');

    const paperSizes = resolveSpec(await loadSpec(path.join(specsDir, 'table-4.yaml')), { scale: 1, quick: true, repeats: 3, rows: ['pm-8'] });
    expect(paperSizes.rows).toHaveLength(1);
    expect(paperSizes.rows[0]?.workers).toBe(8);
    expect(paperSizes.costMs).toBeCloseTo(305 / 2, 9);
    expect(paperSizes.repeats).toBe(3);
    expect(paperSizes.durationS).toBe(10);
  });
});

describe('the table from samples', () => {
  // Two rows, three runs each, blocks of 10 values; b is 20 ms slower, with a few unanswered.
  const row = (id: string, base: number, unanswered: number): RowRuns => ({
    row: id, label: id, approach: 'local', paperRow: null, vms: null, workers: 2, monitors: 2, idleVms: null,
    runs: Array.from({ length: 3 }, (_, run) => ({
      runId: `${id}-${run}`, hypervisors: ['kvm'], drivers: ['local'],
      samples: Array.from({ length: 60 }, (_, index): Sample => {
        const value = index < unanswered ? null : base + ((index * 7 + run * 3) % 13) + (index % 10 === 9 ? 30 : 0);
        return { block: Math.floor(index / 10), roundTripMs: value, metricMs: value };
      }),
    })),
  });

  it('gives each row its interval, % failure and shape, and each pair a Holm-adjusted test', () => {
    const rows = [row('a', 100, 0), row('b', 120, 2), row('c', 100, 0)];
    const options = { metric: 'roundTrip' as const, deadlineMs: 140, seed: 1, bootstrapIterations: 500 };
    const a = summariseRow(rows[0] as RowRuns, options);
    expect(a.n).toBe(180);
    expect(a.repeats).toBe(3);
    expect(a.hypervisor).toBe('kvm');
    const [low, high] = a.metricMs.meanCi95 as [number, number];
    expect(low).toBeLessThan(a.metricMs.mean as number);
    expect(high).toBeGreaterThan(a.metricMs.mean as number);
    const b = summariseRow(rows[1] as RowRuns, options);
    expect(b.n).toBe(174);
    // Unanswered (6) and over 140 ms (those base + 12 + 30 > 140, counted from the samples).
    const over = (rows[1] as RowRuns).runs.flatMap((run) => run.samples).filter((sample) => sample.roundTripMs === null || sample.roundTripMs > 140).length;
    expect(b.failurePct).toBeCloseTo((100 * over) / 180, 9);
    const comparisons = compareRows(rows, options);
    expect(comparisons.map((comparison) => `${comparison.a}-${comparison.b}`)).toEqual(['a-b', 'a-c', 'b-c']);
    const ab = comparisons[0];
    expect(ab?.p).toBeLessThan(0.001);
    expect(ab?.pAdjusted).toBeGreaterThanOrEqual(ab?.p as number);
    expect(ab?.effect).toBe(-1);
    expect(ab?.meanDiffMs).toBeLessThan(-15);
    expect(comparisons[1]?.p).toBeGreaterThan(0.05);
    for (const comparison of comparisons) {
      expect(comparison.p).toBeGreaterThanOrEqual(0);
      expect(comparison.pAdjusted).toBeLessThanOrEqual(1);
    }
  });
});
