/**
 * Episode writes leave the invocation's critical path: a job's commit appends each packet's episode
 * write (events, beats, context, and its latency record) to its slot's outbox in Redis, in the same
 * fenced Lua call that publishes the result; this storer then writes the outbox to S3 in order
 * (monitors in parallel, each monitor's writes in sequence: its manifest is read-modify-write) and,
 * once the objects are stored, drops the entries and adds their latency records in one fenced step.
 *
 * Why: S3 latency (tens of ms per request on the embedded store, more under load) would otherwise
 * hold up every later packet of the slot's queue; a bedside alarm must not wait for archival.
 * Nothing is lost: an entry leaves the outbox only after its objects are stored; a worker that
 * adopts a dead worker's slot drains its outbox too; writes are idempotent (deterministic keys and
 * bytes), so an entry stored twice after a crash is harmless; the latency record of such an
 * invocation is added exactly once, with its storage time.
 */
import type { Logger } from 'pino';
import { Packr } from 'msgpackr';
import type { LatencyRecord } from '../contracts/invocation.js';
import type { BeatResult, EpisodeEvent, GapInfo } from '../functions/ecg-function/index.js';
import type { RedisKeys } from '../queue/keys.js';
import type { withScripts } from '../queue/scripts.js';
import type { EpisodeContext, EpisodeStore } from '../storage/index.js';

export interface OutboxEntry {
  monitorId: string;
  seq: number;
  ctx: EpisodeContext;
  input: { events: EpisodeEvent[]; beats: BeatResult[]; gap: GapInfo | null };
  /** The invocation's latency record, completed with storedAt once stored. */
  record: LatencyRecord;
}

const packr = new Packr({ useRecords: false, moreTypes: true });

export function encodeOutboxEntry(entry: OutboxEntry): Buffer {
  return packr.pack(entry);
}

/**
 * Back-pressure on a slot's jobs: resolves at once while the outbox's length, read at most once a
 * second (an LLEN per job cost a round trip per job), was under `limit`; else waits, poking the
 * storer, until it is.
 */
export function backPressureGate(length: () => Promise<number>, poke: () => void, running: () => boolean): (limit: number) => Promise<void> {
  let checkedAt = -Infinity;
  let over = false;
  return async (limit) => {
    if (!over && performance.now() - checkedAt < 1000) return;
    for (;;) {
      over = (await length()) > limit;
      checkedAt = performance.now();
      if (!over || !running()) return;
      poke();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
}

export interface EpisodeOutboxOptions {
  redis: ReturnType<typeof withScripts>;
  keys: RedisKeys;
  slot: string;
  owner: string;
  episodes: EpisodeStore;
  latencyStream: string;
  now: () => number;
  logger: Logger;
  /** Entries taken per round (default 2048). */
  batch?: number;
  /** Monitors written in parallel (default 16). */
  parallel?: number;
  /**
   * A round starts at most this often (ms; default 2000). Each round writes one chunk per open
   * episode (its packets since the last round) and the manifests due, so longer rounds mean fewer
   * S3 requests per packet; the entries wait in Redis (durable) meanwhile.
   */
  roundMs?: number;
}

export class EpisodeOutbox {
  readonly #o: Required<EpisodeOutboxOptions>;
  #running = false;
  #loop: Promise<void> | null = null;
  /** Ends the current sleep early (close always may; a poke only when pokeWakes). */
  #wake: (() => void) | null = null;
  #pokeWakes = false;
  /** Closing with a drain: rounds run back to back. */
  #hurry = false;
  stored = 0;

  constructor(options: EpisodeOutboxOptions) {
    this.#o = { batch: 2048, parallel: 16, roundMs: 2000, ...options };
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** A commit just added entries. */
  poke(): void {
    if (this.#pokeWakes) this.#wake?.();
  }

  async #run(): Promise<void> {
    const { redis, keys, slot } = this.#o;
    const outboxKey = keys.outbox(slot);
    let roundStarted = -Infinity;
    while (this.#running) {
      // Paced rounds: a poke (new entries) does not start one early.
      const wait = roundStarted + this.#o.roundMs - performance.now();
      if (wait > 0 && !this.#hurry) {
        await this.#sleep(wait, false);
        continue;
      }
      let raw: Buffer[];
      try {
        raw = await redis.lrangeBuffer(outboxKey, 0, this.#o.batch - 1);
      } catch (error) {
        this.#o.logger.warn({ slot, err: (error as Error).message }, 'outbox read failed');
        await this.#sleep(500);
        continue;
      }
      if (raw.length === 0) {
        // Idle: the manifests left behind by the interval catch up (the slot's monitors went quiet).
        if (this.#o.episodes.pending > 0) await this.#o.episodes.flush({ all: true }).catch(() => undefined);
        await this.#sleep(200);
        continue;
      }
      roundStarted = performance.now();
      try {
        const entries = raw.map((bytes) => packr.unpack(bytes) as OutboxEntry);
        const records = await this.#store(entries);
        const ok = await redis.outboxDone(keys.slotLease(slot), outboxKey, this.#o.latencyStream, this.#o.owner, raw.length, ...records);
        if (ok !== 1) {
          this.#o.logger.warn({ slot }, 'lost the slot while storing its outbox; its new owner continues');
          this.#running = false;
          return;
        }
        this.stored += raw.length;
      } catch (error) {
        // The store retried for its whole deadline: keep the entries and try again (never drop them).
        this.#o.logger.error({ slot, code: (error as { code?: string }).code, err: (error as Error).message }, 'episode storage failed; will retry');
        await this.#sleep(1000);
      }
    }
  }

  /** Writes the entries (per monitor in order, monitors in parallel); returns their completed latency records. */
  async #store(entries: OutboxEntry[]): Promise<string[]> {
    const byMonitor = new Map<string, OutboxEntry[]>();
    for (const entry of entries) {
      let list = byMonitor.get(entry.monitorId);
      if (list === undefined) byMonitor.set(entry.monitorId, (list = []));
      list.push(entry);
    }
    const monitors = [...byMonitor.values()];
    // Each packet's own write time: its unbuffered objects (write's ms) plus its chunk's PUT.
    const writeMs = new Map<OutboxEntry, number>();
    let next = 0;
    const worker = async () => {
      while (next < monitors.length) {
        const list = monitors[next++] as OutboxEntry[];
        for (const entry of list) {
          try {
            const written = await this.#o.episodes.write(entry.ctx, entry.seq, entry.input, { bufferParts: true });
            if (written.objects > 0 || written.episodes.length > 0) writeMs.set(entry, written.objects > 0 ? written.ms : 0);
          } catch (error) {
            const code = (error as { code?: string }).code ?? 'UNKNOWN';
            // Storage unavailable: the round is retried. Anything else would fail the same way
            // forever (a bad event): record it on the invocation and go on, rather than block the slot.
            if (code.startsWith('S3_')) throw error;
            this.#o.logger.error({ slot: this.#o.slot, monitor: entry.monitorId, seq: entry.seq, code }, 'episode write refused; recorded on its latency record');
            (entry.record as LatencyRecord & { storageError?: string }).storageError = code;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.parallel, monitors.length) }, worker));
    // One chunk per open episode per round, not an object per packet: before the entries leave the outbox.
    const chunkMs = new Map<string, number>();
    await this.#o.episodes.flush({ onChunk: (chunk) => { for (const seq of chunk.seqs) chunkMs.set(`${chunk.monitorId}\n${seq}`, chunk.ms); } });
    const storedAt = this.#o.now();
    for (const entry of entries) {
      entry.record.storedAt = storedAt;
      entry.record.finishedAt = storedAt;
      entry.record.storageWriteMs = storedAt - entry.record.computedAt;
      const own = writeMs.get(entry);
      const chunk = chunkMs.get(`${entry.monitorId}\n${entry.seq}`);
      if (own !== undefined || chunk !== undefined) entry.record.writeMs = (own ?? 0) + (chunk ?? 0);
    }
    return entries.map((entry) => JSON.stringify(entry.record));
  }

  /** Sleeps; close ends it early, and so does a poke (new entries) when `pokeWakes`. */
  #sleep(ms: number, pokeWakes = true): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
      this.#pokeWakes = pokeWakes;
    });
  }

  /** Waits while the outbox holds more than `limit` entries (S3 far behind): the queue slows rather than Redis filling up. */
  readonly backPressure = backPressureGate(() => this.length(), () => this.poke(), () => this.#running);

  /** Entries waiting (for back-pressure and drain checks). */
  async length(): Promise<number> {
    return this.#o.redis.llen(this.#o.keys.outbox(this.#o.slot));
  }

  /** Stops after the current round; with `drainMs`, first keeps storing until the outbox is empty or the time is up. */
  async close(drainMs = 0): Promise<void> {
    const deadline = Date.now() + drainMs;
    if (drainMs > 0) {
      this.#hurry = true;
      this.#wake?.();
    }
    while (this.#running && drainMs > 0 && Date.now() < deadline) {
      const waiting = await this.length().catch(() => 0);
      if (waiting === 0) break;
      this.poke();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    // Open episodes' manifests as they stand (the chunks were written by the rounds).
    await this.#o.episodes.flush({ all: true }).catch((error: Error) => this.#o.logger.warn({ slot: this.#o.slot, err: error.message }, 'manifest flush failed'));
  }
}
