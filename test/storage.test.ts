import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client, EmbeddedS3, s3SettingsFromEnv, type S3Settings } from '../storage/index.js';

let directory: string;
let store: EmbeddedS3;
let settings: S3Settings;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'ecgfaas-s3-'));
  store = new EmbeddedS3({ directory, bucket: 'test-bucket' });
  settings = await store.start();
});
afterAll(async () => {
  await store.close();
  await rm(directory, { recursive: true, force: true });
});

describe('embedded S3 store', () => {
  it('serves the AWS SDK over real HTTP on a loopback port', async () => {
    expect(settings.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const client = createS3Client(settings);
    await client.send(new PutObjectCommand({ Bucket: settings.bucket, Key: 'a/b.json', Body: '{"x":1}', ContentType: 'application/json' }));
    const got = await client.send(new GetObjectCommand({ Bucket: settings.bucket, Key: 'a/b.json' }));
    expect(await got.Body?.transformToString()).toBe('{"x":1}');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: settings.bucket, Prefix: 'a/' }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual(['a/b.json']);
    client.destroy();
  });

  it('keeps objects on disk after it stops, and close is idempotent', async () => {
    const again = new EmbeddedS3({ directory, bucket: 'test-bucket' });
    const other = await again.start();
    expect(other.endpoint).not.toBe(settings.endpoint);
    const client = createS3Client(other);
    const got = await client.send(new GetObjectCommand({ Bucket: other.bucket, Key: 'a/b.json' }));
    expect(await got.Body?.transformToString()).toBe('{"x":1}');
    client.destroy();
    await Promise.all([again.close(), again.close()]);
    await again.close();
  });
});

describe('S3 settings from the environment', () => {
  const env = { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' };

  it('defaults to path style when an endpoint (MinIO) is given', () => {
    expect(s3SettingsFromEnv({ ...env, ECGFAAS_S3_ENDPOINT: 'http://minio:9000' })).toMatchObject({ endpoint: 'http://minio:9000', forcePathStyle: true, bucket: 'ecgfaas', region: 'us-east-1' });
    expect(s3SettingsFromEnv({ ...env })).toMatchObject({ endpoint: undefined, forcePathStyle: false });
  });

  it.each([
    [{ ...env, ECGFAAS_S3_ENDPOINT: 'minio:9000' }, /endpoint/],
    [{ ...env, ECGFAAS_S3_BUCKET: 'No_Such' }, /bucket/],
    [{ AWS_ACCESS_KEY_ID: 'k' }, /credentials/],
  ])('refuses bad settings with S3_CONFIG', (bad, message) => {
    expect(() => s3SettingsFromEnv(bad)).toThrow(expect.objectContaining({ code: 'S3_CONFIG', message: expect.stringMatching(message) }));
  });
});
