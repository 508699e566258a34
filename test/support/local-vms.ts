import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { LocalVmDriver, type VmSpec } from '../../deploy/index.js';
import { EmbeddedRedis } from '../../queue/index.js';
import { RedisKeys } from '../../queue/keys.js';
import { EmbeddedS3 } from '../../storage/index.js';

export interface LocalVms {
  redis: Redis;
  redisUrl: string;
  keys: RedisKeys;
  driver: LocalVmDriver;
  close(): Promise<void>;
}

/** A redis-server and an S3 store of the test's own, and the local driver's VMs started on them (workers on the paper model). */
export async function startLocalVms(prefix: string, vms: readonly VmSpec[]): Promise<LocalVms> {
  const dir = await mkdtemp(path.join(tmpdir(), `ecgfaas-${prefix}-`));
  const redisServer = new EmbeddedRedis({ directory: path.join(dir, 'redis') });
  const redisUrl = await redisServer.start();
  const s3Server = new EmbeddedS3({ directory: path.join(dir, 's3') });
  const s3 = await s3Server.start();
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const keys = new RedisKeys(prefix);
  const driver = new LocalVmDriver({
    // ECGFAAS_TEST_LOGS=DIR keeps the workers' logs, for a test that fails only on a loaded machine.
    ...(process.env.ECGFAAS_TEST_LOGS ? { logsDir: process.env.ECGFAAS_TEST_LOGS } : {}),
    redis, keys, workerArgs: ['--redis', redisUrl, '--prefix', prefix, '--model', 'paper'],
    env: { ECGFAAS_LOG_LEVEL: 'warn', ECGFAAS_S3_ENDPOINT: s3.endpoint, ECGFAAS_S3_BUCKET: s3.bucket, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
  });
  for (const vm of vms) {
    await driver.create(vm);
    await driver.start(vm.name);
  }
  return {
    redis, redisUrl, keys, driver,
    async close() {
      await driver.close();
      redis.disconnect();
      await redisServer.close();
      await s3Server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
