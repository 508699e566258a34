export {
  assertRunId, compareStreamIds, decodeLatencyEntry, DEFAULT_LATENCY_PREFIX, encodeLatencyEntry, isLatencyRecord, isValidRunId,
  LATENCY_FIELD, latencyStreamKey, parseLatencyJson, roundTripsKey, runManifestKey, segmentKey, segmentPrefix,
} from './codec.js';
export { LatencyPersister, type LatencyLogger, type LatencyPersisterOptions } from './persister.js';
export {
  listRuns, readRoundTrips, readRunManifest, readRunRecords, writeRoundTrips, writeRunManifest,
  type ReadRunRecordsOptions, type RoundTrip, type RunManifest, type RunStore, type RunSummary,
} from './runs.js';
