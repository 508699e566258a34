/** Offline feature extraction from MIT-BIH records at the reference beat positions, for training and CV. */
import { aamiClassOfCode, AAMI_CLASSES, type AamiClass } from '../aami/index.js';
import { primaryLeadIndex } from '../datasets.js';
import { ArraySignal } from '../signal/ring.js';
import { readAnnotations, readRecord } from '../wfdb/index.js';
import { featuresOfSignal } from './index.js';

export interface RecordBeats {
  record: string;
  samples: Int32Array;
  classes: Uint8Array; // index into AAMI_CLASSES
  features: Float32Array[];
}

/** The primary lead of a record in mV, and its sample rate. */
export async function loadLead(dataDir: string, record: string): Promise<{ signal: Float32Array; sampleRate: number }> {
  const rec = await readRecord(dataDir, record);
  const lead = primaryLeadIndex(rec.header.signals.map((s) => s.description));
  const spec = rec.header.signals[lead];
  const adc = rec.signals[lead];
  if (!spec || !adc) throw new Error(`record ${record}: no lead ${lead}`);
  const signal = new Float32Array(adc.length);
  for (let i = 0; i < adc.length; i++) signal[i] = ((adc[i] as number) - spec.baseline) / spec.gain;
  return { signal, sampleRate: rec.header.samplingFrequency };
}

/**
 * Features of every AAMI-classed reference beat of a record. `jitter` (samples, with a seeded
 * generator) displaces the positions given to the feature stream, to simulate a detector.
 */
export async function recordBeats(dataDir: string, record: string, featureSet: string, jitter?: { max: number; random: () => number }): Promise<RecordBeats> {
  const { signal, sampleRate } = await loadLead(dataDir, record);
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
  const feats = featuresOfSignal(featureSet, new ArraySignal(signal), samples, sampleRate);
  if (feats.length !== samples.length) throw new Error(`record ${record}: ${feats.length} features for ${samples.length} beats`);
  return { record, samples: Int32Array.from(samples), classes: Uint8Array.from(classes), features: feats.map((f) => f.features) };
}
