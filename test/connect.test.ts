/** Start-up against a Redis that is not there: a clear error with a stable code, promptly, and a clean close. */
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Gateway } from '../gateway/index.js';
import { freePort } from '../queue/index.js';
import { createS3Client, EpisodeStore } from '../storage/index.js';
import { WarmWorker } from '../worker/index.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const silent = pino({ level: 'silent' });

describe('an unreachable Redis at start-up', () => {
  it('fails the gateway with REDIS_UNREACHABLE naming the address', async () => {
    const port = await freePort(); // nothing listens there
    const gateway = new Gateway({ redisUrl: `redis://:secret@127.0.0.1:${port}`, logger: silent, port: 0 });
    const failure = await gateway.start().catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'REDIS_UNREACHABLE' });
    expect((failure as Error).message).toContain(`127.0.0.1:${port}`);
    expect((failure as Error).message).not.toContain('secret');
    await gateway.close();
  });

  it('fails the worker with REDIS_UNREACHABLE, and close() still returns', async () => {
    const port = await freePort();
    const client = createS3Client({ endpoint: 'http://127.0.0.1:1', region: 'us-east-1', bucket: 'ecgfaas', forcePathStyle: true, accessKeyId: 'a', secretAccessKey: 'b' });
    const worker = new WarmWorker({
      redisUrl: `redis://127.0.0.1:${port}`, modelPath: path.join(root, 'models', 'default.onnx'),
      storage: { kind: 'inline', episodes: new EpisodeStore({ client, bucket: 'ecgfaas' }) }, s3: { client, bucket: 'ecgfaas' }, logger: silent,
    });
    await expect(worker.start()).rejects.toMatchObject({ code: 'REDIS_UNREACHABLE' });
    await worker.close();
    client.destroy();
  });
});
