/**
 * The gateway's side of the queue: accepts validated packets, and in one flush per event-loop turn
 * (while the previous flush is in flight, packets gather for the next one, so batches grow with load
 * and cost nothing when idle) checks duplicates, routes each packet to its monitor's slot and adds
 * one BullMQ job per slot. A packet's promise resolves only after its job's add has resolved on
 * Redis, so a 2xx answer means the packet is in Redis (and in its append-only file).
 *
 * Duplicates: a bitmap per (monitor, session) records accepted seqs for 24 h. The bit is set after
 * the add, never before: a crash between the two can at worst enqueue a packet twice, which the
 * worker recognises by its seq and invocation id, whereas the other order could lose a packet.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { AdcPacket } from '../contracts/packet-binary.js';
import { encodePacket } from '../contracts/packet-binary.js';
import { encodeBatch, type PacketEnvelope } from './envelope.js';
import { QueueError } from './errors.js';
import { invocationIdOf } from './invocation-id.js';
import type { RedisKeys } from './keys.js';
import { withScripts } from './scripts.js';

export interface IngestorOptions {
  /** Commands connection (not shared with subscribers). */
  redis: Redis;
  keys: RedisKeys;
  gatewayId: string;
  /** Redis-clock now, and this process's clock offset. */
  now: () => number;
  clock: () => { offsetMs: number; uncertaintyMs: number };
  runId: () => string;
  /** A slot counts as live when its owner heartbeat within this window (ms). */
  liveWindowMs?: number;
  /** Seconds a (monitor, session, seq) is remembered (default 24 h + 1 h). */
  dedupSeconds?: number;
  /** Most packets in one flush (default 512); a full batch flushes at once. */
  maxBatch?: number;
  /**
   * At most one flush per this many ms (default 15): a packet arriving when the last flush is older
   * than that goes at the next event-loop turn; one arriving sooner waits for the window to end,
   * with every packet that joins it. Every flush costs Redis round trips and each job a fetch, a
   * commit and a publish whatever its size, so under load the window buys many fewer round trips
   * per packet, and at low rates it costs nothing. 0: a flush every turn.
   */
  flushWindowMs?: number;
  /** Keep this many failed jobs per slot queue, with their errors. */
  keepFailed?: number;
  /** Connection errors of the queues (Redis away): logged by the caller. */
  onError?: (error: Error) => void;
  /**
   * Places a monitor seen for the first time (the scheduler's LivePlacer under a policy): resolves
   * to its slot, or rejects with the reason it was refused. Without it, the least-loaded live slot.
   */
  place?: ((monitorId: string) => Promise<string>) | null;
}

export interface Accepted {
  invocationId: string;
  duplicate: boolean;
  slot: string;
}

interface Pending {
  monitorId: string;
  packet: AdcPacket;
  wait: boolean;
  receivedAt: number;
  resolve: (value: Accepted) => void;
  reject: (error: unknown) => void;
}

export interface IngestStats {
  flushes: number;
  jobs: number;
  packets: number;
  duplicates: number;
}

export class Ingestor {
  readonly #options: Required<IngestorOptions>;
  readonly #redis: ReturnType<typeof withScripts>;
  readonly #queues = new Map<string, Queue>();
  readonly #slotOf = new Map<string, string>();
  /** Bumped by invalidateRoutes: a route read before the bump is not cached after it. */
  #routeGeneration = 0;
  /** The batch being flushed now (for barrier()). */
  #current: Promise<void> | null = null;
  #pending: Pending[] = [];
  #flushing: Promise<void> | null = null;
  /** The next flush, when one is scheduled (a timer for the window, or the next turn). */
  #scheduled: { cancel(): void } | null = null;
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  #closed = false;
  readonly stats: IngestStats = { flushes: 0, jobs: 0, packets: 0, duplicates: 0 };

  constructor(options: IngestorOptions) {
    this.#options = { liveWindowMs: 15_000, dedupSeconds: 25 * 3600, maxBatch: 512, flushWindowMs: 15, keepFailed: 10_000, onError: () => {}, place: null, ...options };
    this.#redis = withScripts(options.redis);
  }

  /** Queues one packet; resolves once it is durably in Redis (or known as a duplicate). */
  submit(monitorId: string, packet: AdcPacket, wait: boolean, receivedAt: number): Promise<Accepted> {
    if (this.#closed) return Promise.reject(new QueueError('INGEST_CLOSED', 'the gateway is shutting down'));
    return new Promise<Accepted>((resolve, reject) => {
      this.#pending.push({ monitorId, packet, wait, receivedAt, resolve, reject });
      this.#schedule();
    });
  }

  /** Packets waiting for the next flush (for back-pressure). */
  get backlog(): number {
    return this.#pending.length;
  }

  #schedule(): void {
    if (this.#flushing !== null) return;
    const full = this.#pending.length >= this.#options.maxBatch;
    if (this.#scheduled !== null) {
      if (!full) return;
      this.#cancelScheduled();
    }
    const flush = () => {
      this.#scheduled = null;
      this.#lastFlushAt = performance.now();
      this.#flushing = this.#flushLoop().finally(() => {
        this.#flushing = null;
        if (this.#pending.length > 0) this.#schedule();
      });
    };
    const waitMs = this.#lastFlushAt + this.#options.flushWindowMs - performance.now();
    if (full || waitMs <= 0 || this.#closed) {
      const immediate = setImmediate(flush);
      this.#scheduled = { cancel: () => clearImmediate(immediate) };
    } else {
      const timer = setTimeout(flush, waitMs);
      this.#scheduled = { cancel: () => clearTimeout(timer) };
    }
  }

  #cancelScheduled(): void {
    this.#scheduled?.cancel();
    this.#scheduled = null;
  }

  async #flushLoop(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, this.#options.maxBatch);
      const flushed = this.#flush(batch).catch((error: unknown) => {
        const failure = toQueueError(error);
        for (const item of batch) item.reject(failure);
      });
      this.#current = flushed;
      await flushed;
      this.#current = null;
    }
  }

  async #flush(batch: Pending[]): Promise<void> {
    const { keys } = this.#options;
    this.stats.flushes += 1;
    const ids = batch.map((item) => invocationIdOf(item.monitorId, item.packet.session, item.packet.seq));

    // Duplicates: against Redis (earlier flushes), and within this flush.
    const dedupArgs: Array<string | number> = [];
    for (const item of batch) {
      const { key, bit } = keys.dedup(item.monitorId, item.packet.session ?? '', item.packet.seq);
      dedupArgs.push(key, bit);
    }
    const seen = await this.#redis.dedupCheck(...dedupArgs);
    const fresh: number[] = [];
    const inFlush = new Set<string>();
    batch.forEach((_item, index) => {
      const id = ids[index] as string;
      if (seen[index] === 1 || inFlush.has(id)) return;
      inFlush.add(id);
      fresh.push(index);
    });

    // Route and add one job per slot.
    const bySlot = new Map<string, number[]>();
    // A monitor the scheduler refuses fails alone: the other packets of the flush go on.
    const refused = new Set<number>();
    for (const index of fresh) {
      const item = batch[index] as Pending;
      let slot: string;
      try {
        slot = await this.#route(item.monitorId);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code !== 'PLACEMENT_REFUSED' && code !== 'PLACEMENT_BUSY') throw error;
        refused.add(index);
        item.reject(error);
        continue;
      }
      let list = bySlot.get(slot);
      if (list === undefined) bySlot.set(slot, (list = []));
      list.push(index);
    }
    const enqueuedAt = this.#options.now();
    const runId = this.#options.runId();
    const gatewayClock = this.#options.clock();
    await Promise.all([...bySlot].map(async ([slot, indexes]) => {
      const packets: PacketEnvelope[] = indexes.map((index) => {
        const item = batch[index] as Pending;
        return {
          invocationId: ids[index] as string,
          monitorId: item.monitorId,
          runId,
          gatewayId: this.#options.gatewayId,
          wait: item.wait,
          receivedAt: item.receivedAt,
          gatewayClock,
          packet: encodePacket(item.packet),
        };
      });
      await this.#queue(slot).add('packets', encodeBatch({ version: 1, enqueuedAt, packets }));
      this.stats.jobs += 1;
    }));

    // Remember what was accepted; then answer.
    const enqueued = fresh.filter((index) => !refused.has(index));
    if (enqueued.length > 0) {
      const markArgs: Array<string | number> = [];
      for (const index of enqueued) markArgs.push(dedupArgs[2 * index] as string, dedupArgs[2 * index + 1] as number);
      await this.#redis.dedupMark(this.#options.dedupSeconds, ...markArgs);
    }
    const slotOfIndex = new Map<number, string>();
    for (const [slot, indexes] of bySlot) for (const index of indexes) slotOfIndex.set(index, slot);
    batch.forEach((item, index) => {
      if (refused.has(index)) return;
      const slot = slotOfIndex.get(index);
      if (slot === undefined) this.stats.duplicates += 1;
      else this.stats.packets += 1;
      item.resolve({ invocationId: ids[index] as string, duplicate: slot === undefined, slot: slot ?? this.#slotOf.get(item.monitorId) ?? '' });
    });
  }

  async #route(monitorId: string): Promise<string> {
    const cached = this.#slotOf.get(monitorId);
    if (cached !== undefined) return cached;
    const { keys, liveWindowMs, place } = this.#options;
    const generation = this.#routeGeneration;
    const slot = place !== null
      ? await place(monitorId)
      : await this.#redis.assign(keys.assignments, keys.slotLoad, keys.slots, monitorId, liveWindowMs);
    if (slot === null) throw new QueueError('NO_WORKERS', 'no live worker to take this monitor; start a worker (ecgfaas worker)');
    // A route read before an invalidation may be the old one: use it for this flush, do not keep it.
    if (generation === this.#routeGeneration) this.#slotOf.set(monitorId, slot);
    return slot;
  }

  /** Forget cached routes (the assignment table changed); all of them without ids. */
  invalidateRoutes(monitorIds?: readonly string[] | null): void {
    this.#routeGeneration += 1;
    if (monitorIds === undefined || monitorIds === null) this.#slotOf.clear();
    else for (const id of monitorIds) this.#slotOf.delete(id);
  }

  /**
   * Resolves once every flush begun before the call has ended: after `invalidateRoutes` and this,
   * no packet can still be added to a queue by a route read before the invalidation (a move's
   * handover mark, queued after every gateway's barrier, is behind all of them).
   */
  async barrier(): Promise<void> {
    await this.#current;
  }

  #queue(slot: string): Queue {
    let queue = this.#queues.get(slot);
    if (queue === undefined) {
      const { keys } = this.#options;
      queue = new Queue(keys.queueName(slot), {
        connection: this.#options.redis,
        prefix: keys.bullPrefix,
        defaultJobOptions: { removeOnComplete: true, removeOnFail: { count: this.#options.keepFailed } },
      });
      // BullMQ prints connection errors with console.error unless someone listens; the gateway logs them.
      queue.on('error', (error) => this.#options.onError(error));
      this.#queues.set(slot, queue);
    }
    return queue;
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Whatever waits for its window goes now.
    if (this.#scheduled !== null && this.#pending.length > 0) {
      this.#cancelScheduled();
      this.#schedule();
    }
    while (this.#flushing !== null || this.#scheduled !== null) {
      await (this.#flushing ?? new Promise((resolve) => setImmediate(resolve)));
    }
    await Promise.all([...this.#queues.values()].map((queue) => queue.close()));
    this.#queues.clear();
  }
}

function toQueueError(error: unknown): QueueError {
  if (error instanceof QueueError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new QueueError('REDIS_UNAVAILABLE', `the queue (Redis) did not accept the packet: ${message}`, { cause: error });
}
