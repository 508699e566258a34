import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerReportCommand } from '../cli/commands/report.js';
import type { HypervisorKind, LatencyRecord } from '../contracts/invocation.js';
import { buildReport, formatReport, writeReportFiles, type LatencyStats } from '../report/index.js';
import { latencyRecord } from './support/latency-record.js';
import { createS3Client, EmbeddedS3, segmentKey, writeRoundTrips, writeRunManifest } from '../storage/index.js';

const T0 = 1_760_000_000_000;
let counter = 0;

function record(serviceTimeMs: number, overrides: Partial<LatencyRecord> = {}): LatencyRecord {
  const i = counter++;
  return latencyRecord(
    { runId: 'run-1', invocationId: `inv-${i}`, seq: i, receivedAt: T0 + i * 10, serviceTimeMs },
    { host: 'host1', driver: 'libvirt', ...overrides },
  );
}

// Reference statistics computed here, independently of the report code.
function quantile(sorted: number[], p: number): number {
  // Linear interpolation between closest ranks (R type 7, numpy's default).
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const a = sorted[lo] as number;
  const b = sorted[Math.min(lo + 1, sorted.length - 1)] as number;
  return a + (h - lo) * (b - a);
}

function expected(values: number[], deadlineMs: number, nulls = 0): Partial<LatencyStats> {
  const sorted = [...values].sort((a, b) => a - b);
  const n = values.length;
  const avg = values.reduce((s, v) => s + v, 0) / n;
  const sd = Math.sqrt(values.reduce((s, v) => s + (v - avg) ** 2, 0) / (n - 1));
  const misses = values.filter((v) => v > deadlineMs).length + nulls;
  return {
    n: n + nulls, answered: n, mean: avg, min: sorted[0], max: sorted[n - 1], sd,
    p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), p99: quantile(sorted, 0.99),
    misses, failurePct: (misses / (n + nulls)) * 100,
  };
}

function expectStats(actual: LatencyStats | undefined, want: Partial<LatencyStats>): void {
  expect(actual).toBeDefined();
  for (const [key, value] of Object.entries(want)) {
    expect((actual as unknown as Record<string, number>)[key], key).toBeCloseTo(value as number, 9);
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// kvm with 1 and 2 instances per worker; xen-pv with 3, some of it past the 1 s deadline.
const kvm1 = range(1, 50);
const kvm2 = range(51, 100);
const xen3 = [200, 400, 1000, 1000.5, 1500, 2000];
function dataset(): LatencyRecord[] {
  return [
    ...kvm1.map((v) => record(v, { collocated: 1, workerId: 'w1' })),
    ...kvm2.map((v) => record(v, { collocated: 2, workerId: 'w2', vm: 'vm2' })),
    ...xen3.map((v) => record(v, { hypervisor: 'xen-pv' as HypervisorKind, collocated: 3, workerId: 'w3', vm: 'vm3' })),
    // Not timed: counted separately.
    record(9000, { status: 'duplicate' }),
    record(9000, { status: 'duplicate' }),
    record(9000, { status: 'late' }),
  ];
}

describe('buildReport on service times', () => {
  const report = buildReport(dataset());

  it('says which metric it used and counts statuses', () => {
    expect(report.metric).toBe('serviceTime');
    expect(report.runId).toBe('run-1');
    expect(report.deadlineMs).toBe(1000);
    expect(report.records).toEqual({ total: 109, processed: 106, duplicate: 2, late: 1, other: 0 });
    expect(report.roundTrips).toBeNull();
  });

  it('gives the exact statistics of 1..100 ms', () => {
    const kvm = report.byHypervisor.find((g) => g.hypervisor === 'kvm');
    expectStats(kvm, { n: 100, mean: 50.5, min: 1, max: 100, sd: Math.sqrt((100 * 101) / 12), p50: 50.5, p95: 95.05, p99: 99.01, misses: 0, failurePct: 0 });
    expectStats(kvm, expected(range(1, 100), 1000));
    expect(kvm?.queueWaitMs.mean).toBeCloseTo(50.5 / 4, 9);
    expect(kvm?.computeMs.p99).toBeCloseTo(99.01 / 2, 9);
    expect(kvm?.storageWriteMs).toEqual({ mean: 1, p99: 1 });
  });

  it('counts answers past the deadline as failures, overall and per group', () => {
    const xen = report.byHypervisor.find((g) => g.hypervisor === 'xen-pv');
    expectStats(xen, expected(xen3, 1000));
    expect(xen?.misses).toBe(3); // 1000 is on time, 1000.5 is not
    expect(xen?.failurePct).toBeCloseTo(50, 9);
    expectStats(report.overall, expected([...kvm1, ...kvm2, ...xen3], 1000));
    expect(report.overall.failurePct).toBeCloseTo((3 / 106) * 100, 9);
    expect(buildReport(dataset(), { deadlineMs: 1500 }).overall.misses).toBe(1);
  });

  it('groups by hypervisor × collocation and by worker', () => {
    expect(report.byHypervisor.map((g) => g.key)).toEqual(['kvm', 'xen-pv']);
    expect(report.byHypervisorCollocated.map((g) => [g.key, g.hypervisor, g.collocated, g.n])).toEqual([
      ['kvm/1', 'kvm', 1, 50], ['kvm/2', 'kvm', 2, 50], ['xen-pv/3', 'xen-pv', 3, 6],
    ]);
    expectStats(report.byHypervisorCollocated[0], expected(kvm1, 1000));
    expectStats(report.byHypervisorCollocated[1], expected(kvm2, 1000));
    expect(report.byWorker.map((g) => [g.workerId, g.vm, g.hypervisor, g.n])).toEqual([['w1', 'vm1', 'kvm', 50], ['w2', 'vm2', 'kvm', 50], ['w3', 'vm3', 'xen-pv', 6]]);
  });

  it('handles a run with nothing timed', () => {
    const empty = buildReport([]);
    expect(empty.overall).toMatchObject({ n: 0, mean: null, sd: null, p99: null, failurePct: null });
    expect(empty.window).toBeNull();
    expect(buildReport([record(5)]).overall).toMatchObject({ n: 1, mean: 5, sd: null, p50: 5 });
  });
});

describe('buildReport on client round trips', () => {
  it('uses the round trips, counts a null as a miss, and keeps duplicates out', () => {
    counter = 0;
    const records = dataset();
    const processed = records.filter((r) => r.status === 'processed');
    const roundTrips = new Map<string, number | null>();
    const values: number[] = [];
    processed.forEach((r, i) => {
      if (i === 0) return; // the client lost track of this one
      if (i % 10 === 0) roundTrips.set(r.invocationId, null);
      else {
        roundTrips.set(r.invocationId, r.serviceTimeMs + 20);
        values.push(r.serviceTimeMs + 20);
      }
    });
    roundTrips.set('never-processed', null);
    roundTrips.set((records.find((r) => r.status === 'duplicate') as LatencyRecord).invocationId, 30);
    const nulls = [...roundTrips.values()].filter((v) => v === null).length;

    const report = buildReport(records, { clientRoundTrips: roundTrips });
    expect(report.metric).toBe('roundTrip');
    expect(report.roundTrips).toEqual({ given: 107, matched: 105, processedWithoutRoundTrip: 1, unattributed: 1, ofUncounted: 1 });
    expectStats(report.overall, expected(values, 1000, nulls));
    expect(report.overall.n).toBe(106);
    // Per hypervisor only what ran there: the unattributed miss is in the overall figures only.
    const kvm = report.byHypervisor.find((g) => g.hypervisor === 'kvm');
    const kvmNulls = processed.filter((r, i) => r.hypervisor === 'kvm' && i > 0 && i % 10 === 0).length;
    const kvmValues = processed.filter((r, i) => r.hypervisor === 'kvm' && i > 0 && i % 10 !== 0).map((r) => r.serviceTimeMs + 20);
    expectStats(kvm, expected(kvmValues, 1000, kvmNulls));
    expect(kvm?.misses).toBe(kvmNulls);
  });
});

describe('formatReport and files', () => {
  it('prints the paper\'s columns per hypervisor and collocation', async () => {
    const report = buildReport(dataset());
    const text = formatReport(report);
    for (const column of ['Approach', 'Collocated', 'Mean', 'Min', 'Max', 'SD', '% failure', 'p50', 'p95', 'p99', 'n']) expect(text).toContain(column);
    expect(text).toContain('KVM');
    expect(text).toContain('Xen PV');
    expect(text).toContain('service time');
    expect(text).toMatch(/Xen PV\s*│\s*3\s*│\s*1016\.75\s*│\s*200\.00\s*│\s*2000\.00/);

    const dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-report-'));
    try {
      const files = await writeReportFiles(report, path.join(dir, 'reports', 'run-1'));
      expect(JSON.parse(await readFile(files.json, 'utf8'))).toEqual(JSON.parse(JSON.stringify(report)));
      expect(await readFile(files.text, 'utf8')).toBe(text);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ecgfaas report', () => {
  let store: string;
  const savedEndpoint = process.env.ECGFAAS_S3_ENDPOINT;
  const savedRedis = process.env.REDIS_URL;

  beforeAll(async () => {
    delete process.env.ECGFAAS_S3_ENDPOINT;
    delete process.env.REDIS_URL;
    store = await mkdtemp(path.join(tmpdir(), 'ecgfaas-report-cli-'));
    // Lay the run down in the store's embedded S3 the way the persister and the demo do, then stop it.
    const s3Server = new EmbeddedS3({ directory: path.join(store, 's3'), bucket: 'ecgfaas' });
    const settings = await s3Server.start();
    const s3 = createS3Client(settings);
    counter = 0;
    const records = dataset();
    await s3.send(new PutObjectCommand({ Bucket: 'ecgfaas', Key: segmentKey('run-1', '1-0', '1-108'), Body: `${records.map((r) => JSON.stringify(r)).join('\n')}\n` }));
    await writeRunManifest({ s3, bucket: 'ecgfaas', manifest: { runId: 'run-1', startedAt: '2025-10-09T12:00:00.000Z', config: { monitors: 3 } } });
    await writeRunManifest({ s3, bucket: 'ecgfaas', manifest: { runId: 'run-2', startedAt: 0, config: {} } });
    await writeRoundTrips({ s3, bucket: 'ecgfaas', runId: 'run-2', roundTrips: [{ invocationId: 'x', roundTripMs: null }] });
    s3.destroy();
    await s3Server.close();
  });

  afterAll(async () => {
    if (savedEndpoint !== undefined) process.env.ECGFAAS_S3_ENDPOINT = savedEndpoint;
    if (savedRedis !== undefined) process.env.REDIS_URL = savedRedis;
    await rm(store, { recursive: true, force: true });
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  async function run(...args: string[]): Promise<string> {
    const program = new Command().exitOverride();
    registerReportCommand(program);
    let out = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    try {
      await program.parseAsync(args, { from: 'user' });
    } finally {
      vi.restoreAllMocks();
    }
    return out;
  }

  it('prints the report as JSON that parses', async () => {
    const out = await run('report', '--run', 'run-1', '--json', '--store', store);
    const report = JSON.parse(out);
    expect(report).toMatchObject({ runId: 'run-1', metric: 'serviceTime', deadlineMs: 1000, records: { processed: 106 } });
    expect(report.overall.n).toBe(106);
    expect(report.byHypervisorCollocated).toHaveLength(3);
  });

  it('uses the client round trips when the run has them, and the deadline given', async () => {
    const report = JSON.parse(await run('report', '--run', 'run-2', '--json', '--store', store, '--deadline-ms', '500'));
    expect(report).toMatchObject({ metric: 'roundTrip', deadlineMs: 500, overall: { n: 1, misses: 1, failurePct: 100 } });
  });

  it('prints tables without --json, and lists runs', async () => {
    const text = await run('report', '--run', 'run-1', '--store', store);
    expect(text).toContain('% failure');
    expect(text).toContain('started 2025-10-09T12:00:00.000Z');
    const runs = JSON.parse(await run('report', '--list', '--json', '--store', store));
    expect(runs).toEqual([
      { runId: 'run-1', segments: 1, hasManifest: true, hasRoundTrips: false },
      { runId: 'run-2', segments: 0, hasManifest: true, hasRoundTrips: true },
    ]);
  });

  it('fails with CLI_RUN_NOT_FOUND (exit 1) for an unknown run or store', async () => {
    await expect(run('report', '--run', 'nope', '--store', store)).rejects.toMatchObject({ code: 'CLI_RUN_NOT_FOUND', exitCode: 1 });
    await expect(run('report', '--run', 'nope', '--store', path.join(store, 'missing'))).rejects.toMatchObject({ code: 'CLI_RUN_NOT_FOUND', exitCode: 1 });
    await expect(run('report', '--store', store)).rejects.toMatchObject({ code: 'CLI_USAGE', exitCode: 2 });
  });
});
