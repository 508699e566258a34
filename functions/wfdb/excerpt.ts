/** Cuts a time window out of a record: signals, header fields and annotations, times re-based to 0. */
import { readAnnotations, readRecord, writeAnnotations, writeRecord } from './record.js';
import { WfdbError } from './errors.js';

export interface ExcerptOptions {
  dataDir: string;
  record: string;
  startSeconds: number;
  seconds: number;
  outDir: string;
  annotator?: string;
}

export async function excerptRecord(options: ExcerptOptions): Promise<{ fromSample: number; toSample: number; annotations: number }> {
  const source = await readRecord(options.dataDir, options.record);
  const { header } = source;
  const length = source.signals[0]?.length ?? 0;
  const fromSample = Math.round(options.startSeconds * header.samplingFrequency);
  const toSample = Math.min(length, fromSample + Math.round(options.seconds * header.samplingFrequency));
  if (fromSample >= toSample) {
    throw new WfdbError('WFDB_RANGE', `record ${options.record}: excerpt starts at ${options.startSeconds} s, past its end`);
  }
  const annotator = options.annotator ?? 'atr';
  const format = header.signals.every((s) => s.format === 212) ? 212 : 16;
  await writeRecord(options.outDir, {
    name: header.name,
    samplingFrequency: header.samplingFrequency,
    format,
    comments: [
      `excerpt of ${header.name}, samples ${fromSample} to ${toSample} of the original record`,
      ...header.comments,
    ],
    signals: header.signals.map((spec, lead) => ({
      samples: (source.signals[lead] as Int16Array).slice(fromSample, toSample),
      gain: spec.gain,
      baseline: spec.baseline,
      units: spec.units,
      adcResolution: spec.adcResolution,
      adcZero: spec.adcZero,
      description: spec.description,
    })),
  });
  const annotations = (await readAnnotations(options.dataDir, options.record, annotator))
    .filter((a) => a.sample >= fromSample && a.sample < toSample)
    .map((a) => ({ ...a, sample: a.sample - fromSample }));
  await writeAnnotations(options.outDir, header.name, annotator, annotations);
  return { fromSample, toSample, annotations: annotations.length };
}
