/**
 * Streams each DS1 record (and the paced records) through QrsDetector in 360-sample packets and
 * scores the beats with bxb's rules (functions/eval).
 *
 *   ECGFAAS_MITDB=/work/shared/data/mitdb npx tsx experiments/detector/score-ds1.ts [dir] [--records 101,203] [--verbose]
 *
 * Prints per-record TP/FP/FN/Se/+P, the gross DS1 line, the paced records, the median and
 * 99th-percentile time per push, the maximum detection delay and the timing error of matched beats.
 */
import { readRecord, readAnnotations } from '../../functions/wfdb/index.js';
import { DS1_RECORDS, PACED_RECORDS, primaryLeadIndex } from '../../functions/datasets.js';
import { QrsDetector } from '../../functions/detect/index.js';
import { qrsStats, referenceBeatSamples, excludedIntervals, matchBeats, windowSamplesFor, type MatchResult } from '../../functions/eval/index.js';

const args = process.argv.slice(2);
const verbose = args.includes('--verbose');
const fast = args.includes('--fast'); // skip the one-sample-push pass that measures the delay
const recIdx = args.indexOf('--records');
const only = recIdx >= 0 ? (args[recIdx + 1] ?? '').split(',') : undefined;
const dir = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--records') ?? process.env.ECGFAAS_MITDB;
if (!dir) {
  console.error('usage: ECGFAAS_MITDB=<mitdb dir> npx tsx experiments/detector/score-ds1.ts [dir] [--records a,b] [--verbose]');
  process.exit(2);
}

const PACKET = 360;
const pushTimesUs: number[] = [];
let maxDelay = 0;
let maxAlgoDelay = 0;
let nearPairs = 0; // FN with an FP within 110 samples: a beat found but placed outside the window
let maxAlgoAt = '';
const offsets: number[] = [];

interface Row { record: string; result: MatchResult }

async function runRecord(record: string): Promise<Row> {
  const rec = await readRecord(dir as string, record);
  const lead = primaryLeadIndex(rec.header.signals.map((s) => s.description ?? ''));
  const spec = rec.header.signals[lead]!;
  const adc = rec.signals[lead]!;
  const fs = rec.header.samplingFrequency ?? 360;
  const mv = new Float32Array(adc.length);
  for (let i = 0; i < adc.length; i++) mv[i] = ((adc[i] as number) - spec.baseline) / spec.gain;
  const det = new QrsDetector({ sampleRate: fs });
  const beats: number[] = [];
  for (let at = 0; at < mv.length; at += PACKET) {
    const chunk = mv.subarray(at, Math.min(at + PACKET, mv.length));
    const t0 = process.hrtime.bigint();
    const got = det.push(chunk);
    const t1 = process.hrtime.bigint();
    if (chunk.length === PACKET) pushTimesUs.push(Number(t1 - t0) / 1000);
    for (const b of got) {
      maxDelay = Math.max(maxDelay, det.end - b);
      beats.push(b);
    }
  }
  for (const b of det.flush()) beats.push(b);
  // Algorithmic delay: the same stream pushed one sample at a time (output is chunking-invariant).
  const one = new QrsDetector({ sampleRate: fs });
  for (let at = 0; at < (fast ? 0 : mv.length); at++) {
    const got = one.push(mv.subarray(at, at + 1));
    for (const b of got) {
      const delay = one.end - 1 - b;
      if (delay > maxAlgoDelay) { maxAlgoDelay = delay; maxAlgoAt = `${record}@${b}`; }
    }
  }
  const anns = await readAnnotations(dir as string, record);
  const ref = referenceBeatSamples(anns);
  const result = matchBeats(ref, beats, { windowSamples: windowSamplesFor(fs), excluded: excludedIntervals(anns) });
  for (const p of result.pairs) offsets.push((beats[p.test] as number) - (ref[p.ref] as number));
  {
    const fps = result.unmatchedTest.map((i) => beats[i] as number);
    for (const i of result.unmatchedRef) if (fps.some((b) => Math.abs(b - (ref[i] as number)) < 110)) nearPairs++;
  }
  if (verbose) {
    const fmt = (s: number): string => `${s}(${(s / fs).toFixed(1)}s)`;
    console.log(`  ${record} FN: ${result.unmatchedRef.map((i) => fmt(ref[i] as number)).join(' ')}`);
    console.log(`  ${record} FP: ${result.unmatchedTest.map((i) => fmt(beats[i] as number)).join(' ')}`);
  }
  return { record, result };
}

const pct = (x: number | null): string => (x === null ? '     -' : (100 * x).toFixed(2).padStart(6));
function line(label: string, results: MatchResult[]): string {
  const st = qrsStats(results);
  return `${label.padEnd(8)} ${String(st.tp + st.fn).padStart(6)} ${String(st.tp).padStart(6)} ${String(st.fp).padStart(5)} ${String(st.fn).padStart(5)}  ${pct(st.se)}  ${pct(st.ppv)}`;
}
const header = `${'record'.padEnd(8)} ${'beats'.padStart(6)} ${'TP'.padStart(6)} ${'FP'.padStart(5)} ${'FN'.padStart(5)}  ${'Se%'.padStart(6)}  ${'+P%'.padStart(6)}`;

async function group(name: string, records: readonly string[]): Promise<void> {
  const list = only ? records.filter((r) => only.includes(r)) : records;
  if (list.length === 0) return;
  console.log(`\n${name}\n${header}`);
  const rows: Row[] = [];
  for (const r of list) {
    const row = await runRecord(r);
    rows.push(row);
    console.log(line(r, [row.result]));
  }
  console.log(line('gross', rows.map((r) => r.result)));
}

await group('DS1 (22 records)', DS1_RECORDS);
await group('Paced (not part of DS1)', PACED_RECORDS);

pushTimesUs.sort((a, b) => a - b);
const q = (p: number): number => pushTimesUs[Math.min(pushTimesUs.length - 1, Math.floor(p * pushTimesUs.length))] ?? NaN;
offsets.sort((a, b) => a - b);
const oq = (p: number): number => offsets[Math.min(offsets.length - 1, Math.floor(p * offsets.length))] ?? NaN;
console.log(`\nper 360-sample push: median ${q(0.5).toFixed(1)} us, p99 ${q(0.99).toFixed(1)} us, max ${q(1).toFixed(1)} us (${pushTimesUs.length} pushes)`);
console.log(`max detection delay: ${maxAlgoDelay} samples after the beat sample (${maxAlgoAt}); with 360-sample packets ${maxDelay} samples from the beat to the end of the packet returning it`);
console.log(`FN with an FP within 110 samples (mislocated beats): ${nearPairs}`);
console.log(`matched beat offset test-ref (samples): p1 ${oq(0.01)} p5 ${oq(0.05)} median ${oq(0.5)} p95 ${oq(0.95)} p99 ${oq(0.99)}`);
