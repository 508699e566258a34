/**
 * Per-beat cost of the default feature sets, streamed as the function does (360-sample packets
 * into 10 s rings; 'default-v2' with the second lead too), on one MIT-BIH record.
 *
 *   npx tsx experiments/models/bench-features.ts <mitdb dir> [record=208]
 */
import { aamiClassOfCode } from '../../functions/aami/index.js';
import { loadLeads } from '../../functions/features/dataset2.js';
import { createFeatureStream, featureSetLeads } from '../../functions/features/index.js';
import { SignalRing } from '../../functions/signal/ring.js';
import { readAnnotations } from '../../functions/wfdb/index.js';

const [dataDir = process.env.ECGFAAS_MITDB, record = '208'] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: bench-features.ts <mitdb dir> [record]');
const { primary, secondary } = await loadLeads(dataDir, record);
const beats = (await readAnnotations(dataDir, record)).filter((a) => aamiClassOfCode(a.code) !== undefined).map((a) => a.sample);
for (const name of ['default-v1', 'default-v2', 'default-v1', 'default-v2']) {
  const two = featureSetLeads(name) === 2;
  const r1 = new SignalRing(3600);
  const r2 = new SignalRing(3600);
  const stream = createFeatureStream(name, 360);
  let next = 0;
  let n = 0;
  const t0 = process.hrtime.bigint();
  for (let from = 0; from < primary.length; from += 360) {
    r1.append(primary.subarray(from, from + 360));
    if (two) r2.append(secondary.subarray(from, from + 360));
    while (next < beats.length && (beats[next] as number) < r1.end) stream.addBeat(beats[next++] as number);
    n += (two ? stream.drain(r1, r2) : stream.drain(r1)).length;
  }
  const us = Number(process.hrtime.bigint() - t0) / 1e3;
  console.log(`${name} record ${record}: ${n} beats, ${(us / n).toFixed(1)} µs/beat (streaming, incl. ring appends)`);
}
