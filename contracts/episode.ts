/**
 * The manifest of a stored episode (`manifest.json` beside its parts in S3). Defined once here:
 * the episode store writes it on every write to the episode, `ecgfaas episodes ls --json` prints
 * an array of them, and anything that reads episodes validates with this schema.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { MONITOR_ID_PATTERN } from './packet.js';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const EPISODE_MANIFEST_VERSION = 1;
/** A stream id: fixed for the life of a monitor's function state, so ids stay unique across restarts. */
export const STREAM_ID_PATTERN = '^[a-z0-9]{1,16}$';
/** `<monitorId>.<streamId>.<fromSample>`: monitor ids have no dots, so the id parses back. */
export const EPISODE_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}\\.[a-z0-9]{1,16}\\.(0|[1-9][0-9]{0,15})$';
/** WFDB record names as PhysioNet's tools take them: letters, digits and underscores, at most 50. */
export const EPISODE_RECORD_PATTERN = '^[A-Za-z0-9_]{1,50}$';
// A pattern rather than `format: date-time`: TypeBox checks formats only once one is registered.
const ISO_PATTERN = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$';
const ISO_TIME = Type.String({ pattern: ISO_PATTERN, description: 'ISO-8601 UTC time.' });
const Count = Type.Integer({ minimum: 0 });

export const EpisodeBeatCountsSchema = Type.Object(
  { N: Count, S: Count, V: Count, F: Count, Q: Count, abnormal: Count },
  { additionalProperties: false, description: 'Beats by label within the episode (abnormal: a binary model\'s positive answer).' },
);

export const EPISODE_END_REASONS = ['quiet', 'gap', 'session'] as const;

export const EpisodeManifestSchema = Type.Object(
  {
    version: Type.Literal(EPISODE_MANIFEST_VERSION),
    id: Type.String({ pattern: EPISODE_ID_PATTERN }),
    monitor: Type.String({ pattern: MONITOR_ID_PATTERN }),
    streamId: Type.String({ pattern: STREAM_ID_PATTERN }),
    start: ISO_TIME,
    end: Nullable(ISO_TIME),
    startSample: Type.Integer({ minimum: 0, description: 'First sample of the episode in the monitor stream (history before the trigger included).' }),
    endSample: Nullable(Type.Integer({ minimum: 0, description: 'One past the last sample; null while open.' })),
    samples: Type.Integer({ minimum: 0, description: 'Samples per lead so far (the record length once closed).' }),
    gapSamples: Type.Integer({ minimum: 0, description: 'Of those, samples inside gaps the function declared (stored as WFDB invalid samples, -32768).' }),
    sampleRate: Type.Number({ exclusiveMinimum: 0 }),
    leadNames: Type.Array(Type.String(), { minItems: 1 }),
    gain: Type.Number({ exclusiveMinimum: 0, description: 'ADC units per mV.' }),
    baseline: Type.Integer({ description: 'ADC value of 0 mV.' }),
    triggerSample: Type.Integer({ minimum: 0, description: 'The abnormal beat that opened the episode.' }),
    lastAbnormalSample: Nullable(Type.Integer({ minimum: 0 })),
    endReason: Nullable(Type.Union(EPISODE_END_REASONS.map((reason) => Type.Literal(reason)))),
    beats: EpisodeBeatCountsSchema,
    model: Type.Object({ name: Type.String(), sha256: Type.String() }, { additionalProperties: false }),
    record: Nullable(Type.String({ pattern: EPISODE_RECORD_PATTERN, description: 'WFDB record name of the closed episode (`<record>.hea/.dat/.atr`).' })),
    seqs: Type.Array(Type.Tuple([Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 0 })]), {
      description: 'Packets whose parts the episode holds (the start\'s included), as sorted inclusive [first, last] seq ranges.',
    }),
    lastSeq: Type.Integer({ minimum: 0, description: 'Sequence number of the last packet whose samples the episode holds.' }),
    updatedAt: Type.String({ pattern: ISO_PATTERN, description: 'Stream time of the last data written (from the monitor clock, so a retried write is byte-identical).' }),
  },
  { additionalProperties: false },
);

export type EpisodeManifest = Static<typeof EpisodeManifestSchema>;
export type EpisodeBeatCounts = Static<typeof EpisodeBeatCountsSchema>;
export type EpisodeEndReason = (typeof EPISODE_END_REASONS)[number];
