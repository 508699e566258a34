import type { AamiClass } from '../aami/index.js';

/** AAMI class for a multiclass model; 'abnormal' for a binary model's positive answer. */
export type BeatLabel = AamiClass | 'abnormal';

export interface BeatResult {
  /** Absolute sample index of the beat in this monitor's stream (sample 0 = its first sample). */
  sample: number;
  /** Sequence number of the packet the beat lies in (null when that packet is no longer remembered). */
  seq: number | null;
  label: BeatLabel;
  abnormal: boolean;
  /** Probability the model gives its label. */
  probability: number;
  /** Probability of any class but N (1 - p(N)). */
  pAbnormal: number;
  /** Set on the stream's first beats (the learning period): labelled, but they open no episode. */
  learning?: boolean;
}

export interface EpisodeStart {
  type: 'start';
  episodeId: string;
  /** The first abnormal beat, which opened the episode. */
  triggerSample: number;
  /** The window written at the start: up to `historySeconds` before the trigger, through this packet. */
  fromSample: number;
  toSample: number;
  leadNames: string[];
  gain: number;
  baseline: number;
  /** Samples of every lead over [fromSample, toSample), int16 ADC at gain/baseline. */
  leads: Int16Array[];
  /** Beats in the window classified by earlier calls (this call's beats are in the result's `beats`). */
  beats: BeatResult[];
}

export interface EpisodeContinue {
  type: 'continue';
  episodeId: string;
  seq: number;
  fromSample: number;
  toSample: number;
  leads: Int16Array[];
}

export interface EpisodeEnd {
  type: 'end';
  episodeId: string;
  /** One past the last sample that belongs to the episode. */
  endSample: number;
  lastAbnormalSample: number;
  /** quiet: `quietSeconds` passed with no abnormal beat; gap: data stopped long enough; session: the device restarted. */
  reason: 'quiet' | 'gap' | 'session';
}

export type EpisodeEvent = EpisodeStart | EpisodeContinue | EpisodeEnd;

export interface EpisodeStatus {
  open: boolean;
  episodeId: string | null;
  triggerSample: number | null;
  lastAbnormalSample: number | null;
}

export interface GapInfo {
  reason: 'seq-gap' | 'new-session';
  missingPackets: number | null;
  /** Absolute sample range with no data. */
  fromSample: number;
  toSample: number;
}

export interface PacketResult {
  monitorId: string;
  session: string | null;
  seq: number;
  /** processed; duplicate: this seq was processed before (ignored); late: it arrived after later packets (not processed). */
  status: 'processed' | 'duplicate' | 'late';
  /** Absolute sample range the packet occupies (null unless processed). */
  startSample: number | null;
  endSample: number | null;
  gap: GapInfo | null;
  /** Beats classified during this call (they may lie in earlier packets: classification waits for the next beat). */
  beats: BeatResult[];
  events: EpisodeEvent[];
  episode: EpisodeStatus;
}
