/**
 * What travels through a worker's queue: one BullMQ job per gateway flush and slot, carrying every
 * packet of that flush for that slot. Batching keeps Redis at a few Lua calls per flush instead of
 * one per packet (about 150 µs of Redis time per job, measured), while each packet keeps its own
 * invocation id and timing. Packets are in the binary layout; the batch is msgpack, base64 in the
 * job's data because BullMQ stores data as JSON.
 */
import { Packr } from 'msgpackr';

export interface PacketEnvelope {
  invocationId: string;
  monitorId: string;
  runId: string;
  /** Gateway that received it (results are routed back to it) and whether a client waits. */
  gatewayId: string;
  wait: boolean;
  /** Redis-clock ms. */
  receivedAt: number;
  gatewayClock: { offsetMs: number; uncertaintyMs: number };
  /** The packet, binary layout (contracts/packet-binary.ts). */
  packet: Uint8Array;
}

export interface PacketBatch {
  version: 1;
  /** Redis-clock ms when the batch was handed to the queue. */
  enqueuedAt: number;
  packets: PacketEnvelope[];
}

export interface BatchJobData {
  b: string;
}

/**
 * Control jobs of a monitor's handover (scheduler/moves.ts), queued among the packet batches:
 * `handover` on the slot a monitor leaves, behind every packet routed there before the move;
 * `resume` on its new slot, to run the packets parked there meanwhile.
 */
export const HANDOVER_JOB = 'handover';
export const RESUME_JOB = 'resume';

export interface HandoverJobData {
  /** The monitor. */
  m: string;
  /** The move's id (handover jobs). */
  id?: string;
}

const packr = new Packr({ useRecords: false });

export function encodeBatch(batch: PacketBatch): BatchJobData {
  return { b: packr.pack(batch).toString('base64') };
}

export function decodeBatch(data: BatchJobData): PacketBatch {
  const batch = packr.unpack(Buffer.from(data.b, 'base64')) as PacketBatch;
  if (batch?.version !== 1 || !Array.isArray(batch.packets)) throw new Error('queue job is not a version-1 packet batch');
  return batch;
}
