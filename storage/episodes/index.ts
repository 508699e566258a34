export {
  EpisodeStore, INVALID_SAMPLE, storedEpisodeId,
  type ChunkWrite, type EpisodeContext, type EpisodeStoreOptions, type EpisodeWriteInput, type EpisodeWriteResult,
} from './episode-store.js';
export { episodeIdOf, parseEpisodeId, recordNameOf, type EpisodeRef } from './keys.js';
export { DEFAULT_RETRY, type RetryOptions } from './retry.js';
