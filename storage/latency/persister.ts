/**
 * Moves latency records from the Redis stream to S3, one NDJSON segment per run and batch.
 *
 * One persister runs in every worker process, all in one consumer group, so records are persisted
 * as long as any worker lives. Entries are acknowledged and deleted only after their segment is
 * stored: a failed write leaves them pending (retried on the next flush), and entries pending with a
 * consumer that died are claimed by another after `claimIdleMs`. A claim can race a slow but live
 * consumer, so a record may end up in two segments; readers deduplicate by invocationId.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import pLimit from 'p-limit';
import type { LatencyRecord } from '../../contracts/invocation.js';
import { StorageError } from '../errors.js';
import { compareStreamIds, decodeLatencyEntry, invalidSegmentKey, isValidRunId, latencyStreamKey, parseEntries, segmentKey, streamEntriesOf, type StreamEntry } from './codec.js';
import { putText } from './objects.js';

export type LatencyLogger = Pick<Logger, 'debug' | 'warn' | 'error'>;

export interface LatencyPersisterOptions {
  redis: Redis;
  s3: S3Client;
  bucket: string;
  /** Redis key prefix (default `ecgfaas`). */
  prefix?: string;
  /** Consumer group (default `persist`). */
  group?: string;
  /** This consumer's name, unique per process (e.g. the worker id). */
  consumer: string;
  /** Entries per read (default 5000). */
  batchSize?: number;
  /** Time between background flushes (default 2000 ms). */
  intervalMs?: number;
  /** Entries idle this long in another consumer's pending list are taken over (default 30 s). */
  claimIdleMs?: number;
  /** Attempts per segment write before the flush gives up (default 5), first back-off (default 100 ms, doubling). */
  writeAttempts?: number;
  retryBaseMs?: number;
  logger?: LatencyLogger;
}

interface SegmentPlan {
  key: string;
  ids: string[];
  body: string;
  records: number;
}

export class LatencyPersister {
  readonly #redis: Redis;
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #stream: string;
  readonly #group: string;
  readonly #consumer: string;
  readonly #batchSize: number;
  readonly #intervalMs: number;
  readonly #claimIdleMs: number;
  readonly #writeAttempts: number;
  readonly #retryBaseMs: number;
  readonly #logger: LatencyLogger | undefined;

  #started: Promise<void> | null = null;
  #groupReady = false;
  #timer: NodeJS.Timeout | null = null;
  /** Flushes run one after another: the tail of that chain. */
  #chain: Promise<unknown> = Promise.resolve();
  #pendingFlushes = 0;
  #closing: Promise<void> | null = null;

  constructor(options: LatencyPersisterOptions) {
    this.#redis = options.redis;
    this.#s3 = options.s3;
    this.#bucket = options.bucket;
    this.#stream = latencyStreamKey(options.prefix);
    this.#group = options.group ?? 'persist';
    this.#consumer = options.consumer;
    this.#batchSize = options.batchSize ?? 5000;
    this.#intervalMs = options.intervalMs ?? 2000;
    this.#claimIdleMs = options.claimIdleMs ?? 30_000;
    this.#writeAttempts = options.writeAttempts ?? 5;
    this.#retryBaseMs = options.retryBaseMs ?? 100;
    this.#logger = options.logger;
    if (!Number.isInteger(this.#batchSize) || this.#batchSize < 1) throw new StorageError('LATENCY_CONFIG', 'batchSize must be a positive integer');
    if (this.#consumer === '') throw new StorageError('LATENCY_CONFIG', 'consumer must be named');
  }

  get streamKey(): string {
    return this.#stream;
  }

  /** Creates the consumer group (if missing) and starts the background flushes. */
  start(): Promise<void> {
    if (this.#closing !== null) return Promise.reject(new StorageError('LATENCY_CLOSED', 'latency persister is closed'));
    this.#started ??= this.#ensureGroup().then(() => this.#schedule());
    return this.#started;
  }

  /** Persists everything pending now (own retries, stale claims, new entries); resolves to records written. */
  flush(): Promise<number> {
    if (this.#closing !== null) return Promise.reject(new StorageError('LATENCY_CLOSED', 'latency persister is closed'));
    return this.#enqueueFlush();
  }

  /**
   * Stops the background flushes and runs a final one. Rejects if that flush fails; the entries then
   * stay pending in Redis (nothing is lost) and another persister claims them. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      if (this.#started === null) return;
      await this.#started.catch(() => undefined);
      await this.#enqueueFlush();
    })();
    return this.#closing;
  }

  #enqueueFlush(): Promise<number> {
    this.#pendingFlushes++;
    const run = this.#chain.then(() => this.#drain()).finally(() => { this.#pendingFlushes--; });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #schedule(): void {
    if (this.#closing !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#tick();
    }, this.#intervalMs);
    // The owner's close() ends the persister; an idle timer alone should not keep a process alive.
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      // A flush already queued (by a caller) covers this interval.
      if (this.#pendingFlushes === 0 && this.#closing === null) await this.#enqueueFlush();
    } catch (error) {
      this.#logger?.error({ err: error, stream: this.#stream }, 'latency persist failed; entries stay pending and are retried');
    } finally {
      this.#schedule();
    }
  }

  async #ensureGroup(): Promise<void> {
    if (this.#groupReady) return;
    try {
      // From 0, not $: records written before the first persister started are persisted too.
      await this.#redis.call('XGROUP', 'CREATE', this.#stream, this.#group, '0', 'MKSTREAM');
    } catch (error) {
      if (!String((error as Error).message).startsWith('BUSYGROUP')) throw error;
    }
    this.#groupReady = true;
  }

  async #drain(): Promise<number> {
    try {
      await this.#ensureGroup();
      let written = 0;
      written += await this.#drainOwnPending();
      written += await this.#drainStale();
      written += await this.#drainNew();
      return written;
    } catch (error) {
      // The stream (and its group) was deleted under us: recreate the group next time.
      if (String((error as Error | undefined)?.message).startsWith('NOGROUP')) this.#groupReady = false;
      throw error;
    }
  }

  /** Entries this consumer read earlier but could not store (a failed write). */
  async #drainOwnPending(): Promise<number> {
    let written = 0;
    for (;;) {
      const entries = await this.#readGroup('0');
      if (entries.length === 0) return written;
      written += await this.#persist(entries);
    }
  }

  /** Entries idle in other consumers' pending lists (a dead worker's reads). */
  async #drainStale(): Promise<number> {
    let written = 0;
    let cursor = '0-0';
    do {
      const reply = (await this.#redis.call('XAUTOCLAIM', this.#stream, this.#group, this.#consumer, this.#claimIdleMs, cursor, 'COUNT', this.#batchSize)) as [string, unknown, unknown?];
      cursor = reply[0];
      const entries = parseEntries(reply[1]);
      if (entries.length > 0) {
        this.#logger?.warn({ stream: this.#stream, claimed: entries.length }, 'claimed latency entries from an idle consumer');
        written += await this.#persist(entries);
      }
    } while (cursor !== '0-0');
    return written;
  }

  /** New entries up to the stream's last entry when the flush began (writers keep adding). */
  async #drainNew(): Promise<number> {
    const last = parseEntries(await this.#redis.call('XREVRANGE', this.#stream, '+', '-', 'COUNT', 1))[0];
    if (last === undefined) return 0;
    const stopAt = last[0];
    let written = 0;
    for (;;) {
      const entries = await this.#readGroup('>');
      if (entries.length === 0) return written;
      written += await this.#persist(entries);
      const lastRead = entries[entries.length - 1] as StreamEntry;
      if (entries.length < this.#batchSize || compareStreamIds(lastRead[0], stopAt) >= 0) return written;
    }
  }

  async #readGroup(from: '0' | '>'): Promise<StreamEntry[]> {
    // No BLOCK: the connection may be shared with the worker's own commands.
    const reply = await this.#redis.call('XREADGROUP', 'GROUP', this.#group, this.#consumer, 'COUNT', this.#batchSize, 'STREAMS', this.#stream, from);
    return streamEntriesOf(reply, this.#stream);
  }

  /** Stores a batch as one segment per run, then acknowledges and deletes what was stored. */
  async #persist(entries: StreamEntry[]): Promise<number> {
    const plans = planSegments(entries);
    const done: string[] = entries.filter(([, fields]) => fields === null).map(([id]) => id);
    let failure: unknown = null;
    await pLimit(4).map(plans, async (plan) => {
      try {
        await this.#writeWithRetry(plan);
        done.push(...plan.ids);
      } catch (error) {
        failure ??= error;
      }
    });
    if (done.length > 0) {
      // One transaction: a crash between the two leaves either both or neither.
      const results = await this.#redis.multi().xack(this.#stream, this.#group, ...done).xdel(this.#stream, ...done).exec();
      for (const [error] of results ?? []) if (error) throw error;
    }
    if (failure !== null) {
      throw new StorageError('LATENCY_PERSIST', `latency segment write failed; entries stay pending: ${(failure as Error).message}`, { cause: failure });
    }
    return plans.reduce((sum, plan) => sum + plan.records, 0);
  }

  async #writeWithRetry(plan: SegmentPlan): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await putText(this.#s3, this.#bucket, plan.key, plan.body, 'application/x-ndjson');
        return;
      } catch (error) {
        if (attempt >= this.#writeAttempts) throw error;
        const delay = this.#retryBaseMs * 2 ** (attempt - 1);
        this.#logger?.warn({ err: error, key: plan.key, attempt, delayMs: delay }, 'latency segment write failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}

/** Groups a batch by run (stream order kept); entries that are not records go to one invalid segment. */
function planSegments(entries: StreamEntry[]): SegmentPlan[] {
  const runs = new Map<string, { ids: string[]; lines: string[] }>();
  const invalid: { ids: string[]; lines: string[] } = { ids: [], lines: [] };
  for (const [id, fields] of entries) {
    if (fields === null) continue; // deleted after it was read: already stored
    let record: LatencyRecord;
    try {
      record = decodeLatencyEntry(fields);
      if (!isValidRunId(record.runId)) throw new StorageError('RUN_ID_INVALID', `run id "${record.runId}" cannot be an S3 key segment`);
    } catch (error) {
      // Kept rather than dropped, so a malformed writer can be diagnosed; never blocks the stream.
      invalid.ids.push(id);
      invalid.lines.push(JSON.stringify({ id, fields, error: (error as Error).message }));
      continue;
    }
    let run = runs.get(record.runId);
    if (run === undefined) runs.set(record.runId, (run = { ids: [], lines: [] }));
    run.ids.push(id);
    run.lines.push(JSON.stringify(record));
  }
  const plans: SegmentPlan[] = [];
  for (const [runId, run] of runs) {
    plans.push({ key: segmentKey(runId, run.ids[0] as string, run.ids[run.ids.length - 1] as string), ids: run.ids, body: `${run.lines.join('\n')}\n`, records: run.ids.length });
  }
  if (invalid.ids.length > 0) {
    plans.push({ key: invalidSegmentKey(invalid.ids[0] as string, invalid.ids[invalid.ids.length - 1] as string), ids: invalid.ids, body: `${invalid.lines.join('\n')}\n`, records: 0 });
  }
  return plans;
}
