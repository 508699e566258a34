/**
 * The worker's side of its storage: one `SlotStorer` per queue slot, which stores the episode
 * writes its jobs commit to the slot's outbox. Two kinds: in this thread (`EpisodeOutbox` itself,
 * for tests and embedding), or on the worker's storage thread (worker/storage-thread.ts), which is
 * what `ecgfaas worker` runs.
 */
import { Worker } from 'node:worker_threads';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisKeys } from '../queue/keys.js';
import { backPressureGate } from './episode-outbox.js';
import type { StorageThreadData, StorageThreadReply, StorageThreadRequest } from './storage-thread.js';

export interface SlotStorer {
  /** A commit just added entries. */
  poke(): void;
  /** Waits while the outbox holds more than `limit` entries. */
  backPressure(limit: number): Promise<void>;
  /** Stops; with `drainMs`, first keeps storing until the outbox is empty or the time is up. */
  close(drainMs?: number): Promise<void>;
}

/** The storage thread of one worker process, and its slots' storers. start() / close(). */
export class StorageThread {
  readonly #data: StorageThreadData;
  readonly #logger: Logger;
  #thread: Worker | null = null;
  #nextId = 1;
  readonly #waiting = new Map<number, () => void>();
  #exited: Promise<void> | null = null;

  constructor(data: StorageThreadData, logger: Logger) {
    this.#data = data;
    this.#logger = logger;
  }

  async start(): Promise<void> {
    const thread = new Worker(new URL('./storage-thread-entry.mjs', import.meta.url), { workerData: this.#data });
    this.#thread = thread;
    this.#exited = new Promise((resolve) => thread.once('exit', () => resolve()));
    thread.on('error', (error) => this.#logger.error({ err: error.message }, 'storage thread failed'));
    thread.on('exit', (code) => {
      // Whoever waits for an answer gets none now: let them go on.
      for (const resolve of this.#waiting.values()) resolve();
      this.#waiting.clear();
      if (code !== 0) this.#logger.error({ code }, 'storage thread exited');
    });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: StorageThreadReply) => {
        if (message.type === 'ready') resolve();
        else if (message.type === 'failed') reject(new Error(`storage thread: ${message.message}`));
        else return;
        thread.off('message', onMessage);
      };
      thread.on('message', onMessage);
      thread.once('exit', (code) => reject(new Error(`storage thread exited with ${code} before it was ready`)));
    });
    thread.on('message', (message: StorageThreadReply) => {
      if (message.type === 'closed' || message.type === 'done') {
        this.#waiting.get(message.id)?.();
        this.#waiting.delete(message.id);
      }
    });
  }

  #send(message: StorageThreadRequest): void {
    this.#thread?.postMessage(message);
  }

  #request(make: (id: number) => StorageThreadRequest): Promise<void> {
    if (this.#thread === null) return Promise.resolve();
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#send(make(id));
    });
  }

  /** Starts storing a slot's outbox on the thread. */
  open(slot: string, redis: Redis, keys: RedisKeys): SlotStorer {
    this.#send({ type: 'open', slot });
    let closed = false;
    const poke = () => this.#send({ type: 'poke', slot });
    return {
      poke,
      backPressure: backPressureGate(() => redis.llen(keys.outbox(slot)), poke, () => !closed),
      close: (drainMs = 0) => {
        closed = true;
        return this.#request((id) => ({ type: 'close', slot, drainMs, id }));
      },
    };
  }

  /** Closes every slot's storer (after their current round), then the thread's connections. */
  async close(): Promise<void> {
    if (this.#thread === null) return;
    await this.#request((id) => ({ type: 'shutdown', id }));
    await this.#exited;
    this.#thread = null;
  }
}
