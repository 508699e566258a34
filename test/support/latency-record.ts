/** A schema-valid latency record for tests: every field set, times derived from `receivedAt`, then the overrides. */
import { Value } from '@sinclair/typebox/value';
import { expect } from 'vitest';
import { LatencyRecordSchema, type LatencyRecord } from '../../contracts/invocation.js';

export function latencyRecord(
  base: { runId: string; invocationId: string; seq: number; receivedAt: number; serviceTimeMs: number },
  overrides: Partial<LatencyRecord> = {},
): LatencyRecord {
  const { receivedAt, serviceTimeMs } = base;
  const r: LatencyRecord = {
    runId: base.runId,
    invocationId: base.invocationId,
    monitorId: 'm1',
    session: null,
    seq: base.seq,
    status: 'processed',
    workerId: 'w1',
    vm: 'vm1',
    host: null,
    hypervisor: 'kvm',
    driver: 'local',
    collocated: 1,
    extraComputeMs: 0,
    batchSize: 1,
    beats: 1,
    abnormalBeats: 0,
    episodeEvents: 0,
    sentAt: null,
    receivedAt,
    enqueuedAt: receivedAt,
    startedAt: receivedAt,
    computedAt: receivedAt,
    storedAt: receivedAt,
    finishedAt: receivedAt,
    publishedAt: receivedAt + serviceTimeMs,
    queueWaitMs: serviceTimeMs / 4,
    computeMs: serviceTimeMs / 2,
    storageWriteMs: 1,
    serviceTimeMs,
    gatewayClock: { offsetMs: 0, uncertaintyMs: 1 },
    workerClock: { offsetMs: 0, uncertaintyMs: 1 },
    cpu: null,
    ...overrides,
  };
  expect(Value.Check(LatencyRecordSchema, r)).toBe(true);
  return r;
}
