import type { Redis } from 'ioredis';
import { QueueError } from './errors.js';

/**
 * Connects a lazily created ioredis client, giving up after `timeoutMs` with QUEUE code
 * REDIS_UNREACHABLE (naming host and port, never a password): at start-up an unreachable Redis is a
 * configuration mistake to report, not something to retry forever in silence.
 */
export async function connectRedis(redis: Redis, url: string, timeoutMs = 10_000): Promise<void> {
  let lastError: Error | null = null;
  const onError = (error: Error) => {
    lastError = error;
  };
  redis.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (error) {
    redis.disconnect();
    const host = URL.canParse(url) ? new URL(url).host : 'the given URL';
    const reason = (lastError as Error | null)?.message ?? (error as Error).message;
    throw new QueueError('REDIS_UNREACHABLE', `cannot reach Redis at ${host}: ${reason}`, { cause: error });
  } finally {
    clearTimeout(timer);
    redis.off('error', onError);
  }
}
