/**
 * Capacity of the whole platform on this machine: runs `ecgfaas bench` (the embedded stack — its
 * own redis-server, the embedded S3 store, a gateway, 2 workers — warmed up, then an open-loop
 * replay of N monitors at one packet per second each) for increasing N, and reports the largest N
 * that meets the service level: p99 round trip <= 100 ms, no deadline miss, no lost packet.
 *
 *   npx tsx bench/platform.bench.ts [--monitors 100,200,400,...] [--duration 20] [--data DIR] [--json]
 *
 * Each step is a fresh stack (a separate `ecgfaas bench` process), so one step's backlog cannot
 * spill into the next. Stops after the first step that fails the service level.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    monitors: { type: 'string', default: '50,100,200,400,800,1600,2500' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    data: { type: 'string' },
    'p99-ms': { type: 'string', default: '100' },
    json: { type: 'boolean', default: false },
  },
});

interface BenchSummary {
  monitors: number;
  sent: number;
  accepted: number;
  processed: number;
  lost: number;
  deadlineMisses: number;
  roundTripMs: { p50: number | null; p99: number | null; max: number | null };
  cpuPct: Record<string, number | null>;
  requestsPerSecond: number;
  whereTimeGoes: { queueWaitMs: { mean: number; p99: number }; computeMs: { mean: number; p99: number }; storageWriteMs: { mean: number; p99: number } };
}

function runStep(monitors: number): Promise<BenchSummary> {
  const args = [path.join(root, 'bin', 'ecgfaas.js'), 'bench', '--monitors', String(monitors), '--duration', values.duration as string,
    '--warmup', values.warmup as string, '--json', ...(values.data ? ['--data', values.data] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out) as BenchSummary);
      } catch {
        reject(new Error(`ecgfaas bench --monitors ${monitors} exited ${code} without a summary`));
      }
    });
  });
}

const p99Limit = Number(values['p99-ms']);
const steps: Array<BenchSummary & { ok: boolean }> = [];
for (const monitors of (values.monitors as string).split(',').map(Number)) {
  const summary = await runStep(monitors);
  const ok = summary.lost === 0 && summary.deadlineMisses === 0 && summary.roundTripMs.p99 !== null && summary.roundTripMs.p99 <= p99Limit;
  steps.push({ ...summary, ok });
  const f = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toFixed(1));
  process.stderr.write(`${monitors} monitors: p50 ${f(summary.roundTripMs.p50)} ms, p99 ${f(summary.roundTripMs.p99)} ms, misses ${summary.deadlineMisses}, lost ${summary.lost}, `
    + `cpu gateway ${f(summary.cpuPct.gateway)} % workers ${f(summary.cpuPct.workers)} % redis ${f(summary.cpuPct.redis)} % s3 ${f(summary.cpuPct.s3)} %, `
    + `queue wait ${f(summary.whereTimeGoes.queueWaitMs.mean)} compute ${f(summary.whereTimeGoes.computeMs.mean)} storage ${f(summary.whereTimeGoes.storageWriteMs.mean)} ms (mean) -> ${ok ? 'ok' : 'FAIL'}\n`);
  if (!ok) break;
}
const sustained = steps.filter((step) => step.ok).map((step) => step.monitors);
const result = { p99LimitMs: p99Limit, largestSustainedMonitors: sustained.length > 0 ? Math.max(...sustained) : 0, steps };
if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
else process.stdout.write(`largest sustained: ${result.largestSustainedMonitors} monitors (p99 <= ${p99Limit} ms, no miss, no loss)\n`);
