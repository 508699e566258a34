/**
 * The ECG function: one stateful instance per monitor. Pure logic: it does no network or disk I/O
 * of its own and reads no clock; the worker around it stores episodes and times invocations.
 *
 * Per packet: check the sequence (duplicate, late, gap), append to the 10 s history, detect beats,
 * classify the beats whose features are ready (one model run per packet), and drive the episode
 * logic of Ericson & Pallickara: on an abnormal beat, write the 10 s before it, then every packet
 * until 10 s pass with no abnormal beat.
 *
 * Its whole state serialises to bytes (`toBytes`/`fromBytes`) so a warm worker can checkpoint it
 * and another resume it exactly: a resumed instance gives the same output as an uninterrupted one.
 */
import { Packr } from 'msgpackr';
import type { EcgPacket } from '../../contracts/packet.js';
import { AAMI_CLASSES, type AamiClass } from '../aami/index.js';
import { primaryLeadIndex } from '../datasets.js';
import { MAX_DELAY_MS, QrsDetector, type QrsDetectorState } from '../detect/index.js';
import {
  createFeatureStream, DETECTOR_MARGIN_SECONDS, LOOKAHEAD_SECONDS, restoreFeatureStream, type BeatFeatureStream, type BeatFeatures,
} from '../features/index.js';
import type { ModelInfo } from '../model/index.js';
import { LeadRing, type LeadRingState } from '../signal/lead-ring.js';
import type { SignalHistory } from '../signal/ring.js';
import { FunctionError } from './errors.js';
import type { BeatLabel, BeatResult, EpisodeEvent, EpisodeStatus, GapInfo, PacketResult } from './types.js';

/** What the function needs of a classifier: `BeatClassifier` from functions/model, or a test double. */
export interface BeatClassifierLike {
  readonly info: ModelInfo;
  classify(batch: readonly Float32Array[]): Promise<Float32Array[]>;
}

export interface EcgFunctionOptions {
  monitorId: string;
  classifier: BeatClassifierLike;
  /** Samples per second per lead (default 360). */
  sampleRate?: number;
  /** Seconds of signal written before the first abnormal beat of an episode (default 10). */
  historySeconds?: number;
  /** An episode ends after this many seconds with no abnormal beat (default 10). */
  quietSeconds?: number;
  /** Binary models: p(abnormal) at or above this is abnormal (default 0.5). */
  abnormalThreshold?: number;
}

/**
 * How long after its R peak a beat can still be reported and classified: the detector's confirmation
 * delay plus the feature stream's wait for the next beat. The ring keeps this much beyond the 10 s
 * history so the pre-trigger window is always whole, and episodes close only once every beat inside
 * the quiet period has been classified.
 */
const PIPELINE_LAG_SECONDS = MAX_DELAY_MS / 1000 + LOOKAHEAD_SECONDS + DETECTOR_MARGIN_SECONDS;
/** Sequence numbers remembered for telling duplicates from late packets. */
const REMEMBERED_SEQS = 64;
/** Earlier sessions remembered, so a retried packet of an old session is late, not a new session. */
const REMEMBERED_SESSIONS = 4;
/** Storage scale for packets given in mV: µV resolution in int16 (±32 mV). */
const MV_STORAGE_GAIN = 1000;
const STATE_VERSION = 3;
/**
 * Learning period: the first beats of a stream are classified without the patient's template (it
 * forms over the first 8 beats) and, for the very first, without a previous RR interval; the model
 * then calls nearly every stream's first beat V. Such beats keep their label (and are scored) but
 * do not open an episode, so connecting a monitor does not raise a false alarm.
 */
export const LEARNING_BEATS = 8;

interface EpisodeState {
  episodeId: string;
  triggerSample: number;
  lastAbnormalSample: number;
}

interface StreamConfig {
  leadNames: string[];
  primaryLead: number;
  gain: number;
  baseline: number;
}

interface FunctionState {
  version: number;
  monitorId: string;
  modelSha256: string;
  featureSet: string;
  sampleRate: number;
  historySamples: number;
  quietSamples: number;
  abnormalThreshold: number;
  config: StreamConfig | null;
  session: string | null;
  pastSessions: string[];
  lastSeq: number;
  seenSeqs: number[];
  packetStarts: Array<[number, number]>;
  lastPacketLength: number;
  ring: LeadRingState | null;
  detector: QrsDetectorState;
  features: unknown;
  pendingBeats: number[];
  episode: EpisodeState | null;
  packetsProcessed: number;
  recentBeats: BeatResult[];
  beatsClassified: number;
}

const packr = new Packr({ moreTypes: true, useRecords: false });

export class EcgFunction {
  readonly monitorId: string;
  readonly #classifier: BeatClassifierLike;
  readonly #sampleRate: number;
  readonly #historySamples: number;
  readonly #quietSamples: number;
  readonly #lagSamples: number;
  readonly #abnormalThreshold: number;
  readonly #classes: readonly string[];
  #config: StreamConfig | null = null;
  #session: string | null = null;
  #pastSessions: string[] = [];
  #lastSeq = -1;
  #seenSeqs: number[] = [];
  /** [seq, first absolute sample] of recent packets, for labelling beats with their packet. */
  #packetStarts: Array<[number, number]> = [];
  #lastPacketLength: number;
  #ring: LeadRing | null = null;
  #detector: QrsDetector;
  #features: BeatFeatureStream;
  /** Beats detected but not yet classified, ascending. */
  #pendingBeats: number[] = [];
  #episode: EpisodeState | null = null;
  #packetsProcessed = 0;
  /** Beats classified by earlier calls that still lie in the ring: an episode's start carries those of its window. */
  #recentBeats: BeatResult[] = [];
  #beatsClassified = 0;

  constructor(options: EcgFunctionOptions) {
    this.monitorId = options.monitorId;
    this.#classifier = options.classifier;
    this.#sampleRate = options.sampleRate ?? 360;
    this.#historySamples = Math.round((options.historySeconds ?? 10) * this.#sampleRate);
    this.#quietSamples = Math.round((options.quietSeconds ?? 10) * this.#sampleRate);
    this.#lagSamples = Math.ceil(PIPELINE_LAG_SECONDS * this.#sampleRate);
    this.#abnormalThreshold = options.abnormalThreshold ?? 0.5;
    this.#lastPacketLength = this.#sampleRate;
    const { info } = this.#classifier;
    this.#classes = info.classes;
    this.#detector = new QrsDetector({ sampleRate: this.#sampleRate });
    this.#features = createFeatureStream(info.featureSet, this.#sampleRate);
  }

  get model(): ModelInfo {
    return this.#classifier.info;
  }

  get episode(): EpisodeStatus {
    const episode = this.#episode;
    return {
      open: episode !== null,
      episodeId: episode?.episodeId ?? null,
      triggerSample: episode?.triggerSample ?? null,
      lastAbnormalSample: episode?.lastAbnormalSample ?? null,
    };
  }

  get packetsProcessed(): number {
    return this.#packetsProcessed;
  }

  async process(packet: EcgPacket): Promise<PacketResult> {
    if (packet.monitorId !== this.monitorId) {
      throw new FunctionError('FN_WRONG_MONITOR', `packet of monitor ${packet.monitorId} sent to the function of ${this.monitorId}`);
    }
    const session = packet.session ?? null;
    const base = { monitorId: this.monitorId, session, seq: packet.seq };
    const events: EpisodeEvent[] = [];
    const beats: BeatResult[] = [];
    let gap: GapInfo | null = null;

    if (session !== this.#session && this.#pastSessions.includes(session ?? '\u0000none')) {
      return this.#skipped(base, 'late');
    }
    if (session === this.#session || this.#packetsProcessed === 0) {
      if (this.#seenSeqs.includes(packet.seq)) return this.#skipped(base, 'duplicate');
      if (packet.seq <= this.#lastSeq) return this.#skipped(base, 'late');
    }
    const converted = this.#convert(packet);

    const ring = this.#ring as LeadRing;
    if (this.#packetsProcessed > 0) {
      let missingPackets: number | null = null;
      let reason: GapInfo['reason'] | null = null;
      if (session !== this.#session) {
        reason = 'new-session';
        // A device restart: how long it was off is unknown; leave one nominal packet of silence.
        missingPackets = null;
      } else if (packet.seq > this.#lastSeq + 1) {
        reason = 'seq-gap';
        missingPackets = packet.seq - this.#lastSeq - 1;
      }
      if (reason !== null) {
        const fromSample = ring.end;
        const toSample = fromSample + (missingPackets ?? 1) * this.#lastPacketLength;
        gap = { reason, missingPackets, fromSample, toSample };
        await this.#finishBeforeGap(beats, events);
        this.#restartAt(toSample);
        if (this.#episode !== null && (reason === 'new-session' || toSample - this.#episode.lastAbnormalSample >= this.#quietSamples)) {
          events.push(this.#endEpisode(fromSample, reason === 'new-session' ? 'session' : 'gap'));
        }
      }
    }
    if (session !== this.#session) {
      if (this.#session !== null || this.#packetsProcessed > 0) {
        this.#pastSessions = [...this.#pastSessions, this.#session ?? '\u0000none'].slice(-REMEMBERED_SESSIONS);
      }
      this.#session = session;
      this.#seenSeqs = [];
    }

    const startSample = ring.end;
    ring.append(converted.adc);
    const endSample = ring.end;
    this.#lastSeq = packet.seq;
    // Bounded FIFOs, updated in place: this runs for every packet.
    this.#seenSeqs.push(packet.seq);
    if (this.#seenSeqs.length > REMEMBERED_SEQS) this.#seenSeqs.shift();
    this.#packetStarts.push([packet.seq, startSample]);
    if (this.#packetStarts.length > REMEMBERED_SEQS) this.#packetStarts.shift();
    this.#lastPacketLength = endSample - startSample;
    this.#packetsProcessed += 1;

    if (this.#episode !== null) {
      events.push({
        type: 'continue',
        episodeId: this.#episode.episodeId,
        seq: packet.seq,
        fromSample: startSample,
        toSample: endSample,
        leads: converted.adc,
      });
    }
    for (const beat of this.#detector.push(converted.primaryMv)) this.#addBeat(beat);
    await this.#classify(this.#features.drain(this.#history()), beats, events);

    this.#rememberBeats(beats);
    const episode = this.#episode as EpisodeState | null;
    if (episode !== null && this.#classifiedThrough() >= episode.lastAbnormalSample + this.#quietSamples) {
      events.push(this.#endEpisode(Math.min(endSample, episode.lastAbnormalSample + this.#quietSamples), 'quiet'));
    }
    return { ...base, status: 'processed', startSample, endSample, gap, beats, events, episode: this.episode };
  }

  /**
   * End of a recording (offline evaluation): confirm pending beats and classify them, and close an
   * open episode. A live monitor never ends; the platform does not call this.
   */
  async flush(): Promise<{ beats: BeatResult[]; events: EpisodeEvent[] }> {
    const beats: BeatResult[] = [];
    const events: EpisodeEvent[] = [];
    if (this.#ring === null) return { beats, events };
    await this.#finishBeforeGap(beats, events);
    if (this.#episode !== null) events.push(this.#endEpisode(this.#ring.end, 'gap'));
    return { beats, events };
  }

  #rememberBeats(beats: readonly BeatResult[]): void {
    const ring = this.#ring as LeadRing;
    const oldest = ring.end - ring.capacity;
    let drop = 0;
    while (drop < this.#recentBeats.length && (this.#recentBeats[drop] as BeatResult).sample < oldest) drop += 1;
    if (drop > 0) this.#recentBeats.splice(0, drop);
    for (const beat of beats) this.#recentBeats.push(beat);
  }

  #skipped(base: Pick<PacketResult, 'monitorId' | 'session' | 'seq'>, status: 'duplicate' | 'late'): PacketResult {
    return { ...base, status, startSample: null, endSample: null, gap: null, beats: [], events: [], episode: this.episode };
  }

  /** Checks a packet against the stream's configuration and converts it to storage ADC and primary-lead mV. */
  #convert(packet: EcgPacket): { adc: Int16Array[]; primaryMv: Float32Array } {
    if (packet.sampleRate !== this.#sampleRate) {
      throw new FunctionError('FN_SAMPLE_RATE', `sample rate ${packet.sampleRate} Hz is not supported by this function (${this.#sampleRate} Hz)`);
    }
    const names = packet.leads.map((lead) => lead.name);
    const length = packet.leads[0]?.samples.length ?? 0;
    if (length === 0 || length > this.#sampleRate) {
      throw new FunctionError('FN_PACKET_LENGTH', `a packet holds 1 to ${this.#sampleRate} samples per lead, not ${length}`);
    }
    if (packet.leads.some((lead) => lead.samples.length !== length)) {
      throw new FunctionError('FN_PACKET_LENGTH', 'all leads of a packet must have the same number of samples');
    }
    const isAdc = packet.gain !== undefined;
    const inGain = packet.gain ?? 1;
    const inBaseline = isAdc ? packet.baseline ?? 0 : 0;
    if (!(inGain > 0) || !Number.isFinite(inGain)) throw new FunctionError('FN_BAD_GAIN', 'gain must be a positive number');
    if (this.#config === null) {
      this.#config = {
        leadNames: names,
        primaryLead: primaryLeadIndex(names),
        gain: isAdc ? inGain : MV_STORAGE_GAIN,
        baseline: isAdc ? inBaseline : 0,
      };
      const capacity = this.#historySamples + this.#lagSamples + this.#sampleRate;
      this.#ring = new LeadRing(names.length, capacity);
    } else if (names.length !== this.#config.leadNames.length || names.some((name, i) => name !== this.#config?.leadNames[i])) {
      throw new FunctionError('FN_LEADS_CHANGED', `monitor ${this.monitorId} sends leads ${this.#config.leadNames.join(',')}; this packet has ${names.join(',')}`);
    }
    const { gain, baseline, primaryLead } = this.#config;
    const sameScale = isAdc && inGain === gain && inBaseline === baseline;
    const adc = packet.leads.map((lead, leadIndex) => {
      const out = new Int16Array(length);
      const { samples } = lead;
      for (let i = 0; i < length; i++) {
        const value = samples[i] as number;
        if (!Number.isFinite(value)) {
          throw new FunctionError('FN_BAD_SAMPLE', `lead ${leadIndex} sample ${i} is not a finite number`);
        }
        const stored = sameScale ? value : Math.round(((value - inBaseline) / inGain) * gain + baseline);
        if (stored < -32768 || stored > 32767 || !Number.isInteger(stored)) {
          throw new FunctionError('FN_BAD_SAMPLE', `lead ${leadIndex} sample ${i} (${value}) is out of range or not an integer ADC value`);
        }
        out[i] = stored;
      }
      return out;
    });
    const primary = adc[primaryLead] as Int16Array;
    const primaryMv = new Float32Array(length);
    for (let i = 0; i < length; i++) primaryMv[i] = ((primary[i] as number) - baseline) / gain;
    return { adc, primaryMv };
  }

  #history(): SignalHistory {
    const config = this.#config as StreamConfig;
    return (this.#ring as LeadRing).mvView(config.primaryLead, config.gain, config.baseline);
  }

  #addBeat(sample: number): void {
    this.#pendingBeats.push(sample);
    this.#features.addBeat(sample);
  }

  /** Every beat before this sample has been detected and classified. */
  #classifiedThrough(): number {
    const detectorHorizon = this.#detector.end - this.#detectorLag();
    const oldestPending = this.#pendingBeats[0];
    return oldestPending === undefined ? detectorHorizon : Math.min(detectorHorizon, oldestPending);
  }

  #detectorLag(): number {
    return Math.ceil((MAX_DELAY_MS / 1000) * this.#sampleRate);
  }

  /** Before a gap: confirm what the detector holds and classify every pending beat, so no beat is lost. */
  async #finishBeforeGap(beats: BeatResult[], events: EpisodeEvent[]): Promise<void> {
    for (const beat of this.#detector.flush()) this.#addBeat(beat);
    await this.#classify(this.#features.flush(this.#history()), beats, events);
    this.#pendingBeats = [];
  }

  #restartAt(sample: number): void {
    (this.#ring as LeadRing).restartAt(sample);
    this.#detector.restart(sample);
    this.#features.restart(sample);
  }

  async #classify(ready: BeatFeatures[], beats: BeatResult[], events: EpisodeEvent[]): Promise<void> {
    if (ready.length === 0) return;
    const probabilities = await this.#classifier.classify(ready.map((beat) => beat.features));
    ready.forEach((beat, index) => {
      const result = this.#label(beat.sample, probabilities[index] as Float32Array);
      const learning = this.#beatsClassified < LEARNING_BEATS;
      this.#beatsClassified += 1;
      if (learning) result.learning = true;
      beats.push(result);
      const pendingAt = this.#pendingBeats.indexOf(beat.sample);
      if (pendingAt >= 0) this.#pendingBeats.splice(0, pendingAt + 1);
      if (result.abnormal && !learning) this.#onAbnormal(result.sample, events);
    });
  }

  #label(sample: number, probabilities: Float32Array): BeatResult {
    const seq = this.#seqOf(sample);
    if (this.#classifier.info.kind === 'binary') {
      const pAbnormal = probabilities[1] as number;
      const abnormal = pAbnormal >= this.#abnormalThreshold;
      return { sample, seq, label: abnormal ? 'abnormal' : 'N', abnormal, probability: abnormal ? pAbnormal : 1 - pAbnormal, pAbnormal };
    }
    let best = 0;
    for (let i = 1; i < probabilities.length; i++) if ((probabilities[i] as number) > (probabilities[best] as number)) best = i;
    const label = (this.#classes[best] ?? 'Q') as BeatLabel;
    const normalIndex = this.#classes.indexOf('N');
    const pAbnormal = normalIndex >= 0 ? 1 - (probabilities[normalIndex] as number) : 1;
    const aamiLabel: AamiClass = (AAMI_CLASSES as readonly string[]).includes(label) ? (label as AamiClass) : 'Q';
    return { sample, seq, label: aamiLabel, abnormal: aamiLabel !== 'N', probability: probabilities[best] as number, pAbnormal };
  }

  #seqOf(sample: number): number | null {
    for (let i = this.#packetStarts.length - 1; i >= 0; i--) {
      const [seq, start] = this.#packetStarts[i] as [number, number];
      if (sample >= start) return seq;
    }
    return null;
  }

  #onAbnormal(sample: number, events: EpisodeEvent[]): void {
    if (this.#episode !== null) {
      this.#episode.lastAbnormalSample = Math.max(this.#episode.lastAbnormalSample, sample);
      return;
    }
    const ring = this.#ring as LeadRing;
    const config = this.#config as StreamConfig;
    const fromSample = Math.max(ring.start, sample - this.#historySamples);
    const toSample = ring.end;
    const episodeId = `${this.monitorId}_${fromSample}`;
    this.#episode = { episodeId, triggerSample: sample, lastAbnormalSample: sample };
    events.push({
      type: 'start',
      episodeId,
      triggerSample: sample,
      fromSample,
      toSample,
      leadNames: [...config.leadNames],
      gain: config.gain,
      baseline: config.baseline,
      leads: config.leadNames.map((_, lead) => ring.slice(lead, fromSample, toSample)),
      beats: this.#recentBeats.filter((beat) => beat.sample >= fromSample && beat.sample < toSample),
    });
  }

  #endEpisode(endSample: number, reason: 'quiet' | 'gap' | 'session'): EpisodeEvent {
    const episode = this.#episode as EpisodeState;
    this.#episode = null;
    return { type: 'end', episodeId: episode.episodeId, endSample, lastAbnormalSample: episode.lastAbnormalSample, reason };
  }

  toBytes(): Uint8Array {
    const state: FunctionState = {
      version: STATE_VERSION,
      monitorId: this.monitorId,
      modelSha256: this.#classifier.info.sha256,
      featureSet: this.#features.name,
      sampleRate: this.#sampleRate,
      historySamples: this.#historySamples,
      quietSamples: this.#quietSamples,
      abnormalThreshold: this.#abnormalThreshold,
      config: this.#config,
      session: this.#session,
      pastSessions: this.#pastSessions,
      lastSeq: this.#lastSeq,
      seenSeqs: this.#seenSeqs,
      packetStarts: this.#packetStarts,
      lastPacketLength: this.#lastPacketLength,
      ring: this.#ring?.toState() ?? null,
      detector: this.#detector.toState(),
      features: this.#features.toState(),
      pendingBeats: this.#pendingBeats,
      episode: this.#episode,
      packetsProcessed: this.#packetsProcessed,
      recentBeats: this.#recentBeats,
      beatsClassified: this.#beatsClassified,
    };
    return packr.pack(state);
  }

  /** Resumes a checkpoint. The classifier must be the model the checkpoint was made with. */
  static fromBytes(bytes: Uint8Array, classifier: BeatClassifierLike): EcgFunction {
    let state: FunctionState;
    try {
      state = packr.unpack(bytes) as FunctionState;
    } catch (error) {
      throw new FunctionError('FN_BAD_CHECKPOINT', 'checkpoint does not decode', { cause: error });
    }
    if (state?.version === 2) state = { ...state, version: STATE_VERSION, beatsClassified: Number.MAX_SAFE_INTEGER };
    if (state?.version !== STATE_VERSION) {
      throw new FunctionError('FN_BAD_CHECKPOINT', `checkpoint version ${String(state?.version)} is not ${STATE_VERSION}`);
    }
    if (state.modelSha256 !== classifier.info.sha256) {
      throw new FunctionError('FN_MODEL_MISMATCH', `checkpoint of monitor ${state.monitorId} was made with model ${state.modelSha256.slice(0, 12)}, not ${classifier.info.sha256.slice(0, 12)}`);
    }
    const fn = new EcgFunction({
      monitorId: state.monitorId,
      classifier,
      sampleRate: state.sampleRate,
      historySeconds: state.historySamples / state.sampleRate,
      quietSeconds: state.quietSamples / state.sampleRate,
      abnormalThreshold: state.abnormalThreshold,
    });
    fn.#config = state.config;
    fn.#session = state.session;
    fn.#pastSessions = state.pastSessions;
    fn.#lastSeq = state.lastSeq;
    fn.#seenSeqs = state.seenSeqs;
    fn.#packetStarts = state.packetStarts;
    fn.#lastPacketLength = state.lastPacketLength;
    fn.#ring = state.ring === null ? null : LeadRing.fromState(state.ring);
    fn.#detector = QrsDetector.fromState(state.detector);
    fn.#features = restoreFeatureStream(state.featureSet, state.features);
    fn.#pendingBeats = state.pendingBeats;
    fn.#episode = state.episode;
    fn.#packetsProcessed = state.packetsProcessed;
    fn.#recentBeats = state.recentBeats;
    fn.#beatsClassified = state.beatsClassified;
    return fn;
  }
}
