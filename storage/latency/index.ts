export {
  assertRunId, compareStreamIds, decodeLatencyEntry, DEFAULT_LATENCY_PREFIX, encodeLatencyEntry, isLatencyRecord, isValidRunId,
  LATENCY_FIELD, latencyStreamKey, parseLatencyJson, roundTripsKey, runEventsKey, runManifestKey, segmentKey, segmentPrefix,
} from './codec.js';
export { LatencyPersister, type LatencyLogger, type LatencyPersisterOptions } from './persister.js';
export {
  listRuns, readRoundTrips, readRunEvents, readRunManifest, readRunRecords, writeRoundTrips, writeRunEvents, writeRunManifest,
  type ReadRunRecordsOptions, type StoredRunEvent, type RoundTrip, type RunManifest, type RunStore, type RunSummary,
} from './runs.js';
