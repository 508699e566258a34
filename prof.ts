import { BeatClassifier } from '/work/main/functions/model/index.js';
import { runRecord } from '/work/main/functions/ecg-function/run-record.js';
import { readRecord } from '/work/main/functions/wfdb/index.js';
import { quantile } from 'simple-statistics';
const c = await BeatClassifier.load('/work/main/models/default.onnx');
const recs = await Promise.all(['101','119','208','209','223'].map(n => readRecord('/work/main/data/excerpt', n)));
for (let round = 0; round < 6; round++) { const all: number[] = [];
  for (const r of recs) { const run = await runRecord(r, c); all.push(...run.packetMs); }
  if (round % 2 == 1) console.log(round, 'packet p50', quantile(all, .5).toFixed(4));
}
