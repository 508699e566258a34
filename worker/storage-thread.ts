/**
 * The worker's storage thread: runs the episode outboxes of the worker's slots (worker/episode-outbox.ts)
 * on an event loop of their own, with their own Redis connection, S3 client and episode store.
 *
 * Why a thread: a storer round sends a burst of S3 requests (a chunk per open episode, manifests,
 * WFDB records at closes) whose client-side work (the AWS SDK's middleware and signing) held up
 * the queue jobs sharing the worker's event loop: with rounds of 2 s the p99 round trip went from
 * tens to hundreds of ms (docs/BENCHMARKS.md). Here the OS schedules the two loops across cores.
 *
 * Protocol (messages from the parent; see StorageThread): open {slot}, poke {slot},
 * close {slot, drainMs, id} → closed {id}, shutdown {id} → done {id}.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RedisClock } from '../queue/clock.js';
import { RedisKeys } from '../queue/keys.js';
import { withScripts } from '../queue/scripts.js';
import { createS3Client, EpisodeStore, latencyStreamKey, S3Objects, type S3Settings } from '../storage/index.js';
import { EpisodeOutbox } from './episode-outbox.js';

export interface StorageThreadData {
  redisUrl: string;
  keyPrefix: string;
  owner: string;
  s3: S3Settings;
  logLevel: string;
  roundMs?: number;
}

export type StorageThreadRequest =
  | { type: 'open'; slot: string }
  | { type: 'poke'; slot: string }
  | { type: 'close'; slot: string; drainMs: number; id: number }
  | { type: 'shutdown'; id: number };

export type StorageThreadReply = { type: 'ready' } | { type: 'closed'; id: number } | { type: 'done'; id: number } | { type: 'failed'; message: string };

const port = parentPort;
if (port === null) throw new Error('storage-thread.ts runs in a worker thread (see StorageThread)');
const data = workerData as StorageThreadData;
const logger = pino({ name: 'worker-storage', level: data.logLevel, base: { pid: process.pid, thread: 'storage' } }, pino.destination({ fd: 2, sync: false }));
const keys = new RedisKeys(data.keyPrefix);
const redis = withScripts(new Redis(data.redisUrl, { maxRetriesPerRequest: null }));
redis.on('error', (error) => logger.warn({ err: error.message }, 'redis connection error'));
const clock = new RedisClock(redis, {});
const s3 = createS3Client(data.s3);
// PUTs and GETs through the lean client; the SDK's only for listing (at closes).
const objects = new S3Objects(data.s3);
const episodes = new EpisodeStore({ client: s3, bucket: data.s3.bucket, objects });
const outboxes = new Map<string, EpisodeOutbox>();

const reply = (message: StorageThreadReply) => port.postMessage(message);

async function closeSlot(slot: string, drainMs: number): Promise<void> {
  const outbox = outboxes.get(slot);
  outboxes.delete(slot);
  await outbox?.close(drainMs);
}

try {
  await clock.start();
  reply({ type: 'ready' });
} catch (error) {
  reply({ type: 'failed', message: (error as Error).message });
}

port.on('message', (message: StorageThreadRequest) => {
  switch (message.type) {
    case 'open': {
      if (outboxes.has(message.slot)) return;
      const outbox = new EpisodeOutbox({
        redis, keys, slot: message.slot, owner: data.owner, episodes, latencyStream: latencyStreamKey(data.keyPrefix),
        now: () => clock.now(), logger, ...(data.roundMs !== undefined ? { roundMs: data.roundMs } : {}),
      });
      outbox.start();
      outboxes.set(message.slot, outbox);
      return;
    }
    case 'poke':
      outboxes.get(message.slot)?.poke();
      return;
    case 'close':
      void closeSlot(message.slot, message.drainMs).finally(() => reply({ type: 'closed', id: message.id }));
      return;
    case 'shutdown':
      void (async () => {
        await Promise.all([...outboxes.keys()].map((slot) => closeSlot(slot, 0)));
        await clock.close();
        await redis.quit().catch(() => redis.disconnect());
        s3.destroy();
        await objects.close();
        logger.flush();
      })().finally(() => {
        reply({ type: 'done', id: message.id });
        port.close();
      });
  }
});
