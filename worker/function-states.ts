/**
 * The warm function instances of one worker, one per monitor, and their durable form in Redis:
 * a checkpoint (the function's bytes) written every `checkpointEvery` packets, and a replay log of
 * the packets processed since. Restoring = checkpoint + replay of the log, which gives exactly the
 * state the last commit left, whichever worker made it. Checkpointing every packet would cost
 * ~58 KB of Redis writes per packet; a log entry is the packet itself (~1.5 KB).
 */
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { decodePacket, toEcgPacket } from '../contracts/packet-binary.js';
import { EcgFunction, type BeatClassifierLike } from '../functions/ecg-function/index.js';
import type { PacketEnvelope } from '../queue/envelope.js';
import type { RedisKeys } from '../queue/keys.js';

export interface WarmFunction {
  monitorId: string;
  /** Fixed for the life of this monitor's state: makes stored episode ids unique across restarts. */
  streamId: string;
  slot: string;
  fn: EcgFunction;
  /** Packets committed since the last checkpoint; null: no checkpoint exists yet. */
  sinceCheckpoint: number | null;
  restoredFrom: 'new' | 'checkpoint';
  replayed: number;
}

interface CheckpointValue {
  v: 1;
  streamId: string;
  state: Uint8Array;
}

const packr = new Packr({ useRecords: false, moreTypes: true });

/** A packet parked during its monitor's handover, with the timing of the queue job it came in. */
export interface ParkedPacket {
  envelope: PacketEnvelope;
  enqueuedAt: number;
  batchSize: number;
}

export type Acquired =
  | { kind: 'run'; warm: WarmFunction; parked: ParkedPacket[] }
  | { kind: 'park' }
  | { kind: 'forward'; slot: string };

export function encodeParked(parked: ParkedPacket): Buffer {
  return packr.pack(parked);
}

function decodeParked(entry: Buffer): ParkedPacket {
  const parked = packr.unpack(entry) as ParkedPacket;
  return { ...parked, envelope: { ...parked.envelope, packet: new Uint8Array(parked.envelope.packet) } };
}

export function encodeCheckpoint(streamId: string, fn: EcgFunction): Buffer {
  return packr.pack({ v: 1, streamId, state: fn.toBytes() } satisfies CheckpointValue);
}

export class FunctionStates {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  readonly #classifier: BeatClassifierLike;
  readonly #newStreamId: () => string;
  readonly #warm = new Map<string, WarmFunction>();

  constructor(options: { redis: Redis; keys: RedisKeys; classifier: BeatClassifierLike; newStreamId: () => string }) {
    this.#redis = options.redis;
    this.#keys = options.keys;
    this.#classifier = options.classifier;
    this.#newStreamId = options.newStreamId;
  }

  get size(): number {
    return this.#warm.size;
  }

  monitors(): string[] {
    return [...this.#warm.keys()];
  }

  /**
   * Whether this slot may run the monitor's packet now, and with which instance. A worker holds a
   * warm instance only of a monitor its slot owns, so a warm one is used at once. Otherwise the
   * monitor's records in Redis decide, read in one round trip with its state:
   * - a handover from another slot is in progress (scheduler/moves.ts): `park` the packet;
   * - the monitor is assigned to another slot (a packet routed before a move): `forward` it there;
   * - else restore the instance; packets parked during its handover come with it, to run first.
   */
  async acquire(monitorId: string, slot: string): Promise<Acquired> {
    const warm = this.#warm.get(monitorId);
    if (warm !== undefined) {
      warm.slot = slot;
      return { kind: 'run', warm, parked: [] };
    }
    const keys = this.#keys;
    const [checkpoint, log, assigned, move, parked] = await Promise.all([
      this.#redis.getBuffer(keys.checkpoint(monitorId)),
      this.#redis.lrangeBuffer(keys.replayLog(monitorId), 0, -1),
      this.#redis.hget(keys.assignments, monitorId),
      this.#redis.get(keys.move(monitorId)),
      this.#redis.lrangeBuffer(keys.park(monitorId), 0, -1),
    ]);
    if (move !== null && (JSON.parse(move) as { from: string }).from !== slot) return { kind: 'park' };
    if (assigned !== null && assigned !== slot) return { kind: 'forward', slot: assigned };
    const restored = await this.#restore(monitorId, slot, checkpoint, log);
    this.#warm.set(monitorId, restored);
    return { kind: 'run', warm: restored, parked: parked.map((entry) => decodeParked(entry)) };
  }

  async #restore(monitorId: string, slot: string, checkpoint: Buffer | null, log: Buffer[]): Promise<WarmFunction> {
    if (checkpoint === null) {
      const fn = new EcgFunction({ monitorId, classifier: this.#classifier });
      return { monitorId, streamId: this.#newStreamId(), slot, fn, sinceCheckpoint: null, restoredFrom: 'new', replayed: 0 };
    }
    const value = packr.unpack(checkpoint) as CheckpointValue;
    const fn = EcgFunction.fromBytes(value.state, this.#classifier);
    // Replaying re-creates state only: the effects of these packets were committed when they ran.
    for (const entry of log) await fn.process(toEcgPacket(monitorId, decodePacket(entry)));
    return { monitorId, streamId: value.streamId, slot, fn, sinceCheckpoint: log.length, restoredFrom: 'checkpoint', replayed: log.length };
  }

  /** Drops warm instances (a lost slot, a failed commit): the next packet restores from Redis. */
  drop(filter: (warm: WarmFunction) => boolean): number {
    let dropped = 0;
    for (const [monitorId, warm] of this.#warm) {
      if (filter(warm)) {
        this.#warm.delete(monitorId);
        dropped += 1;
      }
    }
    return dropped;
  }
}
