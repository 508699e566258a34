/**
 * Offline extraction for feature sets that read two leads ('default-v2'): the primary lead (MLII
 * where present, `primaryLeadIndex`) and the record's other lead (V1 in most MIT-BIH records; V5 in
 * 114, V4 in 124), both in mV on the same sample clock. Single-lead sets go through dataset.ts.
 */
import { aamiClassOfCode, AAMI_CLASSES, type AamiClass } from '../aami/index.js';
import { primaryLeadIndex } from '../datasets.js';
import { ArraySignal } from '../signal/ring.js';
import { readAnnotations, readRecord } from '../wfdb/index.js';
import { recordBeats, type RecordBeats } from './dataset.js';
import { featureSetLeads, featuresOfSignal, secondaryLeadIndex } from './index.js';

export { secondaryLeadIndex };

/** Primary and secondary leads of a record in mV, and the sample rate. */
export async function loadLeads(dataDir: string, record: string): Promise<{ primary: Float32Array; secondary: Float32Array; sampleRate: number }> {
  const rec = await readRecord(dataDir, record);
  const names = rec.header.signals.map((s) => s.description);
  const mv = (lead: number): Float32Array => {
    const spec = rec.header.signals[lead];
    const adc = rec.signals[lead];
    if (!spec || !adc) throw new Error(`record ${record}: no lead ${lead}`);
    const out = new Float32Array(adc.length);
    for (let i = 0; i < adc.length; i++) out[i] = ((adc[i] as number) - spec.baseline) / spec.gain;
    return out;
  };
  return { primary: mv(primaryLeadIndex(names)), secondary: mv(secondaryLeadIndex(names)), sampleRate: rec.header.samplingFrequency };
}

/** Like `recordBeats`, for any feature set: two-lead sets get the second lead. */
export async function recordBeatsFor(dataDir: string, record: string, featureSet: string, jitter?: { max: number; random: () => number }): Promise<RecordBeats> {
  if (featureSetLeads(featureSet) === 1) return recordBeats(dataDir, record, featureSet, jitter);
  const { primary, secondary, sampleRate } = await loadLeads(dataDir, record);
  const annotations = await readAnnotations(dataDir, record);
  const samples: number[] = [];
  const classes: number[] = [];
  for (const a of annotations) {
    const cls: AamiClass | undefined = aamiClassOfCode(a.code);
    if (cls === undefined) continue;
    let at = a.sample;
    if (jitter && jitter.max > 0) at += Math.round((2 * jitter.random() - 1) * jitter.max);
    if (samples.length > 0 && at <= (samples[samples.length - 1] as number)) at = (samples[samples.length - 1] as number) + 1;
    samples.push(at);
    classes.push(AAMI_CLASSES.indexOf(cls));
  }
  const feats = featuresOfSignal(featureSet, new ArraySignal(primary), samples, sampleRate, new ArraySignal(secondary));
  if (feats.length !== samples.length) throw new Error(`record ${record}: ${feats.length} features for ${samples.length} beats`);
  return { record, samples: Int32Array.from(samples), classes: Uint8Array.from(classes), features: feats.map((f) => f.features) };
}
