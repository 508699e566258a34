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

  /** The monitor's warm instance, restored from Redis when this worker does not hold it yet. */
  async get(monitorId: string, slot: string): Promise<WarmFunction> {
    const warm = this.#warm.get(monitorId);
    if (warm !== undefined) {
      warm.slot = slot;
      return warm;
    }
    const restored = await this.#restore(monitorId, slot);
    this.#warm.set(monitorId, restored);
    return restored;
  }

  async #restore(monitorId: string, slot: string): Promise<WarmFunction> {
    const [checkpoint, log] = await Promise.all([
      this.#redis.getBuffer(this.#keys.checkpoint(monitorId)),
      this.#redis.lrangeBuffer(this.#keys.replayLog(monitorId), 0, -1),
    ]);
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
