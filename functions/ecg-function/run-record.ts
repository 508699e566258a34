/**
 * Streams a whole WFDB record through an `EcgFunction` in 1-second packets, exactly as the
 * platform would deliver them (ADC samples with the header's gain and baseline, every lead, seq
 * 0, 1, 2, ...; the last packet as short as the record leaves it). Used by `ecgfaas eval`,
 * `ecgfaas annotate`, the benchmark and the tests, so all of them measure the same path.
 */
import type { EcgPacket } from '../../contracts/packet.js';
import type { WfdbRecord } from '../wfdb/record.js';
import { EcgFunction, type BeatClassifierLike } from './ecg-function.js';
import type { BeatResult, EpisodeEvent, PacketResult } from './types.js';

export function recordPackets(record: WfdbRecord, monitorId: string, packetSamples?: number): EcgPacket[] {
  const { header, signals } = record;
  const rate = header.samplingFrequency;
  const size = packetSamples ?? rate;
  const length = signals[0]?.length ?? 0;
  const first = header.signals[0];
  if (first === undefined) return [];
  // One gain/baseline per packet: the leads of MIT-BIH share them; other records are converted to mV.
  const shared = header.signals.every((s) => s.gain === first.gain && s.baseline === first.baseline);
  const packets: EcgPacket[] = [];
  for (let start = 0, seq = 0; start < length; start += size, seq++) {
    const end = Math.min(length, start + size);
    packets.push({
      monitorId,
      seq,
      sampleRate: rate,
      ...(shared ? { gain: first.gain, baseline: first.baseline } : {}),
      leads: header.signals.map((spec, lead) => {
        const slice = (signals[lead] as Int16Array).subarray(start, end);
        return {
          name: spec.description || `sig${lead}`,
          samples: shared ? slice : Float64Array.from(slice, (adc) => (adc - spec.baseline) / spec.gain),
        };
      }),
    });
  }
  return packets;
}

export interface RecordRun {
  beats: BeatResult[];
  events: EpisodeEvent[];
  /** Wall time of each `process` call, ms. */
  packetMs: number[];
  results: PacketResult[];
}

export interface RunRecordOptions {
  monitorId?: string;
  packetSamples?: number;
  /** Called after every packet; lets a test checkpoint and resume mid-record. */
  afterPacket?: (fn: EcgFunction, index: number) => EcgFunction | Promise<EcgFunction>;
}

export async function runRecord(record: WfdbRecord, classifier: BeatClassifierLike, options: RunRecordOptions = {}): Promise<RecordRun> {
  const monitorId = options.monitorId ?? `rec-${record.header.name}`;
  let fn = new EcgFunction({ monitorId, classifier, sampleRate: record.header.samplingFrequency });
  const run: RecordRun = { beats: [], events: [], packetMs: [], results: [] };
  const packets = recordPackets(record, monitorId, options.packetSamples);
  for (const [index, packet] of packets.entries()) {
    const started = performance.now();
    const result = await fn.process(packet);
    run.packetMs.push(performance.now() - started);
    run.results.push(result);
    run.beats.push(...result.beats);
    run.events.push(...result.events);
    if (options.afterPacket) fn = await options.afterPacket(fn, index);
  }
  const tail = await fn.flush();
  run.beats.push(...tail.beats);
  run.events.push(...tail.events);
  return run;
}
