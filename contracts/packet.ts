/**
 * The ECG packet: one second (at most) of one or two leads from one monitor. Defined once here as a
 * TypeBox schema; the gateway validates with it, the CLI and tests build packets with its type, and
 * the function consumes it.
 */
import { Type, type Static } from '@sinclair/typebox';

export const SAMPLE_RATE = 360;
export const MONITOR_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';

export const LeadSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 16, pattern: '^[A-Za-z0-9_+-]+$', description: 'Lead name, e.g. MLII or V1.' }),
    samples: Type.Array(Type.Number(), {
      minItems: 1,
      maxItems: SAMPLE_RATE,
      description: 'Samples in ADC units when `gain` is given (physical = (sample - baseline) / gain), else in mV.',
    }),
  },
  { additionalProperties: false },
);

export const PacketBodySchema = Type.Object(
  {
    session: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', description: 'Changes when the device restarts its sequence count.' })),
    seq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Packet sequence number within the session, one per packet.' }),
    sentAt: Type.Optional(Type.Number({ minimum: 0, description: 'Device clock at send, ms since the Unix epoch.' })),
    sampleRate: Type.Integer({ minimum: 1, maximum: 65535, description: 'Samples per second per lead; only 360 is supported for now (others: 422 UNSUPPORTED_SAMPLE_RATE).' }),
    gain: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'ADC units per mV; when present, samples are ADC units.' })),
    baseline: Type.Optional(Type.Integer({ minimum: -32768, maximum: 32767, description: 'ADC value of 0 mV (default 0).' })),
    leads: Type.Array(LeadSchema, { minItems: 1, maxItems: 2 }),
  },
  { additionalProperties: false },
);

export type PacketBody = Static<typeof PacketBodySchema>;

/** What the function consumes: the body plus the monitor it came from. Samples may be any numeric array. */
export interface EcgPacket {
  monitorId: string;
  session?: string | undefined;
  seq: number;
  sentAt?: number | undefined;
  sampleRate: number;
  gain?: number | undefined;
  baseline?: number | undefined;
  leads: ReadonlyArray<{ name: string; samples: ArrayLike<number> }>;
}
