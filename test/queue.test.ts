import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedRedis } from '../queue/index.js';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'ecgfaas-redis-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('embedded redis-server', () => {
  it('starts on a free port, keeps writes in its AOF across a kill, and closes idempotently', async () => {
    const redis = new EmbeddedRedis({ directory, appendfsync: 'always' });
    const url = await redis.start();
    expect(url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client.connect();
    await client.set('packet:1', 'accepted');
    client.disconnect();
    await redis.kill(); // no clean shutdown: only the AOF (fsync always) can bring the key back

    const again = new EmbeddedRedis({ directory });
    const url2 = await again.start();
    const client2 = new Redis(url2, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client2.connect();
    expect(await client2.get('packet:1')).toBe('accepted');
    client2.disconnect();
    await Promise.all([again.close(), again.close()]);
    await again.close();
    expect(again.url).toBeNull();
  });

  it('says clearly when redis-server cannot run', async () => {
    const missing = new EmbeddedRedis({ directory, binary: path.join(directory, 'no-such-redis') });
    await expect(missing.start()).rejects.toMatchObject({ code: 'REDIS_NOT_INSTALLED' });
  });
});
