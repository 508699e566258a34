/**
 * Results come back to gateways on one Redis pub/sub channel, a message per worker commit. The hub
 * hands each result to the request waiting for it (`?wait=1`) and to the monitor's SSE listeners.
 * Pub/sub can drop messages while a gateway is disconnected; a waiting request then answers 202 at
 * its deadline and the result stays readable at GET /v1/invocations/:id.
 */
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';

type Waiter = (json: string | null) => void;
type Listener = (json: string) => void;

const packr = new Packr({ useRecords: false });

export class ResultHub {
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #waiters = new Map<string, Waiter>();
  readonly #listeners = new Map<string, Set<Listener>>();
  #started = false;
  received = 0;

  constructor(subscriber: Redis, channel: string) {
    this.#subscriber = subscriber;
    this.#channel = channel;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() !== this.#channel) return;
      this.#dispatch(message);
    });
    await this.#subscriber.subscribe(this.#channel);
  }

  #dispatch(message: Buffer): void {
    let results: Array<[string, string, string, string]>;
    try {
      results = packr.unpack(message) as Array<[string, string, string, string]>;
    } catch {
      return;
    }
    for (const [, invocationId, monitorId, json] of results) {
      this.received += 1;
      const waiter = this.#waiters.get(invocationId);
      if (waiter !== undefined) {
        this.#waiters.delete(invocationId);
        waiter(json);
      }
      const listeners = this.#listeners.get(monitorId);
      if (listeners !== undefined) for (const listener of listeners) listener(json);
    }
  }

  /** Resolves with the result JSON, or null when `timeoutMs` passes first. Register before enqueueing. */
  wait(invocationId: string, timeoutMs: number): { promise: Promise<string | null>; cancel: () => void } {
    let finish: Waiter = () => {};
    const promise = new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => finish(null), timeoutMs);
      finish = (json) => {
        clearTimeout(timer);
        if (this.#waiters.get(invocationId) === finish) this.#waiters.delete(invocationId);
        resolve(json);
      };
      this.#waiters.set(invocationId, finish);
    });
    return { promise, cancel: () => finish(null) };
  }

  listen(monitorId: string, listener: Listener): () => void {
    let set = this.#listeners.get(monitorId);
    if (set === undefined) this.#listeners.set(monitorId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(monitorId);
    };
  }

  get waiting(): number {
    return this.#waiters.size;
  }

  get listeners(): number {
    let n = 0;
    for (const set of this.#listeners.values()) n += set.size;
    return n;
  }

  close(): void {
    for (const waiter of [...this.#waiters.values()]) waiter(null);
    this.#listeners.clear();
  }
}
