/**
 * Benchmark of the function itself: time per 1-second packet (detection + classification of its
 * beats + episode logic, one `EcgFunction.process` call) and the cost of its checkpoint.
 *
 *   npx tsx bench/function.bench.ts [--data DIR] [--records LIST] [--rounds N] [--json]
 *
 * Defaults: the shipped excerpt (data/excerpt), every record in it, 3 rounds. Each round streams
 * every record through a fresh instance per model; the first round is a warm-up and is not counted.
 * Figures are medians over packets (the machine is noisy: read ratios within one run).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { quantile } from 'simple-statistics';
import { Bench } from 'tinybench';
import { EcgFunction } from '../functions/ecg-function/index.js';
import { recordPackets, runRecord } from '../functions/ecg-function/run-record.js';
import { BeatClassifier } from '../functions/model/index.js';
import { readRecord, type WfdbRecord } from '../functions/wfdb/index.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.join(root, 'data', 'excerpt') },
    records: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const dataDir = values.data as string;
const names = values.records?.split(',') ?? (await readdir(dataDir)).filter((f) => f.endsWith('.hea')).map((f) => f.slice(0, -4)).sort();
const rounds = Number(values.rounds);
const records: WfdbRecord[] = await Promise.all(names.map((name) => readRecord(dataDir, name)));

const us = (ms: number) => Math.round(ms * 1000 * 10) / 10;
const results: Record<string, unknown> = { data: dataDir, records: names, rounds, node: process.version };

for (const modelName of ['default', 'paper']) {
  const classifier = await BeatClassifier.load(path.join(root, 'models', `${modelName}.onnx`));
  const packetMs: number[] = [];
  const packetWithBeatsMs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const record of records) {
      const run = await runRecord(record, classifier);
      if (round === 0) continue;
      packetMs.push(...run.packetMs);
      run.results.forEach((result, i) => {
        if (result.beats.length > 0) packetWithBeatsMs.push(run.packetMs[i] as number);
      });
    }
  }
  // A checkpoint of a monitor in full flow: 60 packets in, with a 10 s history.
  const sample = records[0] as WfdbRecord;
  const fn = new EcgFunction({ monitorId: 'bench', classifier });
  for (const packet of recordPackets(sample, 'bench').slice(0, 60)) await fn.process(packet);
  const bytes = fn.toBytes();
  const bench = new Bench({ time: 500, warmup: true });
  bench.add('checkpoint toBytes', () => { fn.toBytes(); });
  bench.add('checkpoint fromBytes', () => { EcgFunction.fromBytes(bytes, classifier); });
  await bench.run();
  const median = (name: string) => {
    const task = bench.getTask(name);
    const latency = task?.result && 'latency' in task.result ? task.result.latency : undefined;
    return latency?.p50 ?? Number.NaN;
  };
  results[modelName] = {
    model: classifier.info.name,
    sha256: classifier.info.sha256,
    packets: packetMs.length,
    perPacketUs: { p50: us(quantile(packetMs, 0.5)), p90: us(quantile(packetMs, 0.9)), p99: us(quantile(packetMs, 0.99)) },
    perPacketWithBeatsUs: { p50: us(quantile(packetWithBeatsMs, 0.5)), p99: us(quantile(packetWithBeatsMs, 0.99)) },
    checkpoint: { bytes: bytes.length, toBytesUs: us(median('checkpoint toBytes')), fromBytesUs: us(median('checkpoint fromBytes')) },
  };
  await classifier.close();
}

if (values.json) {
  process.stdout.write(`${JSON.stringify(results)}\n`);
} else {
  for (const modelName of ['default', 'paper']) {
    const r = results[modelName] as { perPacketUs: Record<string, number>; perPacketWithBeatsUs: Record<string, number>; checkpoint: Record<string, number>; packets: number };
    process.stdout.write(`${modelName}: ${r.packets} packets, per packet p50 ${r.perPacketUs.p50} µs, p90 ${r.perPacketUs.p90} µs, p99 ${r.perPacketUs.p99} µs; `
      + `packets with beats p50 ${r.perPacketWithBeatsUs.p50} µs; checkpoint ${r.checkpoint.bytes} B, toBytes ${r.checkpoint.toBytesUs} µs, fromBytes ${r.checkpoint.fromBytesUs} µs\n`);
  }
}
