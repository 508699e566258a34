export { EcgFunction, type EcgFunctionOptions, type BeatClassifierLike } from './ecg-function.js';
export { FunctionError } from './errors.js';
export type {
  BeatLabel, BeatResult, EpisodeEvent, EpisodeStart, EpisodeContinue, EpisodeEnd, EpisodeStatus, GapInfo, PacketResult,
} from './types.js';
