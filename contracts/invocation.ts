/**
 * What one invocation (one packet through one warm function) produces: the result a device or a
 * bedside display receives, and the latency record every report is built from. Defined once here;
 * the worker writes them, the gateway serves them (and documents them in OpenAPI), the CLI reads them.
 */
import { Type, type Static } from '@sinclair/typebox';

const Nullable = <T extends ReturnType<typeof Type.Number>>(schema: T) => Type.Union([schema, Type.Null()]);

export const HYPERVISOR_KINDS = ['none', 'kvm', 'qemu', 'xen-pv', 'xen-hvm', 'other'] as const;
export type HypervisorKind = (typeof HYPERVISOR_KINDS)[number];
export const DEPLOY_DRIVERS = ['local', 'libvirt'] as const;
export type DeployDriver = (typeof DEPLOY_DRIVERS)[number];

export const BeatSchema = Type.Object({
  sample: Type.Integer({ description: 'Sample index in the monitor stream (0 = its first sample).' }),
  seq: Type.Union([Type.Integer(), Type.Null()], { description: 'Packet the beat lies in.' }),
  label: Type.String({ description: 'AAMI class N, S, V, F, Q (or "abnormal" for a binary model).' }),
  abnormal: Type.Boolean(),
  probability: Type.Number({ description: 'Probability of the label.' }),
  pAbnormal: Type.Number({ description: '1 - p(N).' }),
  learning: Type.Optional(Type.Boolean({ description: 'One of the stream\'s first 8 beats (learning period): labelled, but it opens no episode.' })),
});

export const EpisodeEventSchema = Type.Object({
  type: Type.Union([Type.Literal('start'), Type.Literal('continue'), Type.Literal('end')]),
  /** The stored episode's id (`ecgfaas episodes get ID`). */
  episodeId: Type.String(),
  fromSample: Type.Optional(Type.Integer()),
  toSample: Type.Optional(Type.Integer()),
  triggerSample: Type.Optional(Type.Integer()),
  endSample: Type.Optional(Type.Integer()),
  reason: Type.Optional(Type.String()),
});

export const LatencyRecordSchema = Type.Object({
  runId: Type.String(),
  invocationId: Type.String(),
  monitorId: Type.String(),
  session: Type.Union([Type.String(), Type.Null()]),
  seq: Type.Integer(),
  status: Type.String({ description: 'processed, duplicate (seen before), late (arrived after later packets).' }),
  workerId: Type.String(),
  vm: Type.String({ description: 'Host name of the machine or guest the worker runs in.' }),
  host: Type.Union([Type.String(), Type.Null()], { description: 'Physical host, when the deploy driver knows it.' }),
  hypervisor: Type.Union(HYPERVISOR_KINDS.map((kind) => Type.Literal(kind))),
  driver: Type.Union(DEPLOY_DRIVERS.map((driver) => Type.Literal(driver))),
  collocated: Type.Integer({ description: 'Function instances warm on this worker when the packet was processed.' }),
  extraComputeMs: Type.Number(),
  extraComputeIterations: Type.Optional(Type.Integer({ description: 'The extra CPU work as a loop count calibrated once on the host (experiments): the same work on every worker.' })),
  batchSize: Type.Integer({ description: 'Packets in the queue job this one travelled in.' }),
  beats: Type.Integer(),
  abnormalBeats: Type.Integer(),
  episodeEvents: Type.Integer(),
  // Timestamps: ms since the epoch on the Redis server's clock (each process corrects its own).
  sentAt: Nullable(Type.Number({ description: 'Device clock at send, as the device gave it (not corrected).' })),
  receivedAt: Type.Number(),
  enqueuedAt: Type.Number(),
  startedAt: Type.Number(),
  computedAt: Type.Number(),
  storedAt: Type.Number(),
  finishedAt: Type.Number(),
  publishedAt: Type.Number({ description: 'When the worker issued the commit that publishes the result.' }),
  queueWaitMs: Type.Number({ description: 'startedAt - enqueuedAt.' }),
  computeMs: Type.Number({ description: 'computedAt - startedAt: detection, classification, episode logic, extra compute.' }),
  storageWriteMs: Type.Number({ description: 'storedAt - computedAt: episode objects written to S3 (the outbox stores in rounds, so this includes the wait for the round).' }),
  writeMs: Type.Optional(Type.Number({ description: "This packet's own storage writes: the S3 requests that stored its part of an episode (its chunk's PUT, shared with the chunk's other packets, plus any object of its own), without the wait for the storer's round. Absent when the packet wrote nothing." })),
  serviceTimeMs: Type.Number({ description: 'publishedAt - receivedAt: gateway receipt to result published.' }),
  gatewayClock: Type.Object({ offsetMs: Type.Number(), uncertaintyMs: Type.Number() }),
  workerClock: Type.Object({ offsetMs: Type.Number(), uncertaintyMs: Type.Number() }),
  cpu: Type.Union([Type.Object({ processPct: Type.Number(), hostPct: Type.Union([Type.Number(), Type.Null()]), stealPct: Type.Union([Type.Number(), Type.Null()]) }), Type.Null()], {
    description: 'The worker\'s latest CPU sample (% of one core) when the packet was processed.',
  }),
});
export type LatencyRecord = Static<typeof LatencyRecordSchema>;

export const InvocationResultSchema = Type.Object({
  invocationId: Type.String(),
  monitorId: Type.String(),
  session: Type.Union([Type.String(), Type.Null()]),
  seq: Type.Integer(),
  status: Type.String({ description: 'processed, duplicate or late (see the latency record).' }),
  startSample: Type.Union([Type.Integer(), Type.Null()]),
  endSample: Type.Union([Type.Integer(), Type.Null()]),
  gap: Type.Union([
    Type.Object({ reason: Type.String(), missingPackets: Type.Union([Type.Integer(), Type.Null()]), fromSample: Type.Integer(), toSample: Type.Integer() }),
    Type.Null(),
  ]),
  beats: Type.Array(BeatSchema),
  events: Type.Array(EpisodeEventSchema),
  episode: Type.Object({
    open: Type.Boolean(),
    episodeId: Type.Union([Type.String(), Type.Null()]),
    triggerSample: Type.Union([Type.Integer(), Type.Null()]),
    lastAbnormalSample: Type.Union([Type.Integer(), Type.Null()]),
  }),
  model: Type.Object({ name: Type.String(), sha256: Type.String() }),
  latency: LatencyRecordSchema,
});
export type InvocationResult = Static<typeof InvocationResultSchema>;

export const AcceptedSchema = Type.Object({
  invocationId: Type.String(),
  duplicate: Type.Optional(Type.Boolean({ description: 'True when this (monitor, session, seq) was accepted before.' })),
});
export type Accepted = Static<typeof AcceptedSchema>;

export const ErrorBodySchema = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String({ description: 'Stable machine-readable code, listed in docs/API.md.' }),
  error: Type.String(),
  message: Type.String(),
});
