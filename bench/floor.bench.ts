/**
 * The floor under the platform's capacity on this machine: what the parts every design needs cost
 * per packet, measured with the platform's own code, so a capacity target can be checked against
 * the hardware before the platform is blamed.
 *
 *   npx tsx bench/floor.bench.ts [--monitors 1000,2500] [--duration 20] [--data DIR] [--json]
 *
 * For each N: the load generator of `ecgfaas replay` (this process: open loop, N monitors, one real
 * binary packet per second each, `?wait=1`) against bench/floor/http-sink.ts (fastify, the gateway's
 * binary parser and packet decoding, an immediate answer: no Redis, no queue, no function, no
 * storage), and the CPU of both from /proc. The function's own cost per packet is
 * bench/function.bench.ts's (180 µs median with the default model); the floor adds it as N × that.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { runReplay } from '../replay/index.js';
import { CpuMeter } from '../stack/proc-cpu.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    monitors: { type: 'string', default: '500,1000,1500,2500' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    data: { type: 'string', default: path.join(root, 'data', 'excerpt') },
    'function-us': { type: 'string', default: '180' },
    json: { type: 'boolean', default: false },
  },
});

async function startSink(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'floor', 'http-sink.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`http sink exited ${code}`)));
  });
  const { url } = JSON.parse(line) as { url: string };
  return {
    url, pid: child.pid as number,
    stop: () => new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

const functionUs = Number(values['function-us']);
const rows = [];
for (const monitors of (values.monitors as string).split(',').map(Number)) {
  const sink = await startSink();
  try {
    const replay = (durationS: number, seed: number) => runReplay({ gateway: sink.url, monitors, durationS, dataDir: values.data as string, seed });
    await replay(Number(values.warmup), 2);
    const sinkCpu = new CpuMeter([sink.pid]);
    const loadCpu = new CpuMeter([process.pid]);
    sinkCpu.begin();
    loadCpu.begin();
    const summary = await replay(Number(values.duration), 1);
    const gatewayPct = sinkCpu.percent() ?? 0;
    const loadGeneratorPct = loadCpu.percent() ?? 0;
    const functionPct = (monitors * functionUs) / 10_000;
    rows.push({
      monitors, sent: summary.packets.sent, failed: summary.packets.failed,
      roundTripMs: { p50: summary.roundTripMs.p50, p99: summary.roundTripMs.p99, max: summary.roundTripMs.max },
      cpuPct: { httpSink: round(gatewayPct), loadGenerator: round(loadGeneratorPct), functionAlone: round(functionPct) },
      floorPctOf200: round(gatewayPct + loadGeneratorPct + functionPct),
    });
  } finally {
    await sink.stop();
  }
  const row = rows.at(-1);
  if (!values.json) process.stderr.write(`${JSON.stringify(row)}\n`);
}
if (values.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
else {
  process.stdout.write('| monitors | p50 | p99 | HTTP sink CPU | load generator CPU | function alone (N × µs) | floor, % of the 200 |\n|--:|--:|--:|--:|--:|--:|--:|\n');
  for (const row of rows) {
    process.stdout.write(`| ${row.monitors} | ${row.roundTripMs.p50} ms | ${row.roundTripMs.p99} ms | ${row.cpuPct.httpSink} % | ${row.cpuPct.loadGenerator} % | ${row.cpuPct.functionAlone} % | **${row.floorPctOf200} %** |\n`);
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
