/**
 * Writes the detector's beats as WFDB annotation files `<out>/<record>.qrs` (all labelled N), with
 * a copy of each header and reference `.atr`, so that PhysioNet's own bxb can cross-check
 * functions/eval:
 *
 *   ECGFAAS_MITDB=/work/shared/data/mitdb npx tsx experiments/detector/write-qrs-annotations.ts /tmp/qrs-out
 *   cd /tmp/qrs-out && WFDB=. bxb -r 203 -a atr qrs -f 0
 *
 * Prints, per record, our bxb-style TP/FP/FN for comparison with bxb's QRS Se/+P lines.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { annotation, CODE_OF_MNEMONIC, readAnnotations, readRecord, writeAnnotations } from '../../functions/wfdb/index.js';
import { DS1_RECORDS, PACED_RECORDS, primaryLeadIndex } from '../../functions/datasets.js';
import { QrsDetector } from '../../functions/detect/index.js';
import { qrsStats, scoreAgainstAnnotations } from '../../functions/eval/index.js';

const dir = process.env.ECGFAAS_MITDB;
const out = process.argv[2];
if (!dir || !out) {
  console.error('usage: ECGFAAS_MITDB=<mitdb dir> npx tsx experiments/detector/write-qrs-annotations.ts <out dir> [records...]');
  process.exit(2);
}
const records = process.argv.length > 3 ? process.argv.slice(3) : [...DS1_RECORDS, ...PACED_RECORDS];
await mkdir(out, { recursive: true });
for (const record of records) {
  const rec = await readRecord(dir, record);
  const lead = primaryLeadIndex(rec.header.signals.map((s) => s.description));
  const spec = rec.header.signals[lead]!;
  const adc = rec.signals[lead]!;
  const mv = new Float32Array(adc.length);
  for (let i = 0; i < adc.length; i++) mv[i] = ((adc[i] as number) - spec.baseline) / spec.gain;
  const det = new QrsDetector({ sampleRate: rec.header.samplingFrequency });
  const beats: number[] = [];
  for (let at = 0; at < mv.length; at += 360) beats.push(...det.push(mv.subarray(at, at + 360)));
  beats.push(...det.flush());
  await writeAnnotations(out, record, 'qrs', beats.map((b) => annotation(b, CODE_OF_MNEMONIC.N as number)));
  await copyFile(path.join(dir, `${record}.hea`), path.join(out, `${record}.hea`));
  await copyFile(path.join(dir, `${record}.atr`), path.join(out, `${record}.atr`));
  const s = qrsStats([scoreAgainstAnnotations(await readAnnotations(dir, record), beats, rec.header.samplingFrequency)]);
  console.log(`${record} TP ${s.tp} FP ${s.fp} FN ${s.fn}`);
}
