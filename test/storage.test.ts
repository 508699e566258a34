import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client, EmbeddedS3, S3Objects, s3SettingsFromEnv, type S3Settings } from '../storage/index.js';
import { EMPTY_SHA256 } from '../storage/s3-objects.js';

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

  it('never answers a GET with half an object: GETs racing PUTs of the same key read one whole version or the other', async () => {
    const objects = new S3Objects(settings);
    const versions = [Buffer.alloc(1_500_000, 0x61), Buffer.alloc(1_200_000, 0x62)];
    const signal = () => AbortSignal.timeout(10_000);
    try {
      await objects.put('race/object', versions[0] as Buffer, 'application/octet-stream', signal());
      let writing = true;
      const writer = (async () => {
        for (let round = 1; round <= 40; round++) await objects.put('race/object', versions[round % 2] as Buffer, 'application/octet-stream', signal());
        writing = false;
      })();
      const seen: number[] = [];
      while (writing) {
        // s3rver may drop the connection of a GET whose object was replaced under it (the store's
        // client retries that); what it must never do is answer 200 with bytes of no version.
        const got = await objects.get('race/object', signal()).catch(() => null);
        if (got !== null) seen.push(versions.findIndex((version) => version.equals(Buffer.from(got))));
      }
      await writer;
      expect(seen.length).toBeGreaterThan(3);
      expect(seen.filter((index) => index < 0)).toEqual([]);
    } finally {
      await objects.close();
    }
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

describe('lean object client (SigV4 by the SDK signer, HTTP by undici)', () => {
  const signal = () => AbortSignal.timeout(5000);

  it('writes objects the SDK reads back byte for byte, and reads what the SDK wrote; keys with spaces, + and UTF-8 too', async () => {
    const objects = new S3Objects(settings);
    const client = createS3Client(settings);
    try {
      const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256);
      for (const key of ['lean/a/b.bin', 'lean/with space+plus/ü ñ.bin']) {
        await objects.put(key, bytes, 'application/octet-stream', signal());
        const got = await client.send(new GetObjectCommand({ Bucket: settings.bucket, Key: key }));
        expect(got.ContentType).toBe('application/octet-stream');
        expect(Buffer.from(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()).equals(Buffer.from(bytes))).toBe(true);
      }
      await client.send(new PutObjectCommand({ Bucket: settings.bucket, Key: 'lean/sdk.json', Body: '{"y":2}' }));
      expect(Buffer.from(await objects.get('lean/sdk.json', signal()) as Uint8Array).toString()).toBe('{"y":2}');
      expect(await objects.get('lean/missing.json', signal())).toBeNull();
    } finally {
      client.destroy();
      await objects.close();
    }
  });

  it('signs as AWS documents it: the GET Object example of the SigV4 reference gives its published signature', async () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "Example: GET Object".
    // (s3rver checks the access key but not the signature, so the signature is checked here.)
    const objects = new S3Objects({
      endpoint: 'https://s3.amazonaws.com', forcePathStyle: false, bucket: 'examplebucket', region: 'us-east-1',
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    });
    const { path: requestPath, headers } = await objects.signed('GET', 'test.txt', EMPTY_SHA256, { range: 'bytes=0-9' }, new Date('2013-05-24T00:00:00Z'));
    await objects.close();
    expect(requestPath).toBe('/test.txt');
    expect(headers.host).toBe('examplebucket.s3.amazonaws.com');
    expect(headers.authorization).toBe('AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, '
      + 'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41');
  });

  it('refuses with the S3 error code when the access key is unknown, and when the bucket does not exist', async () => {
    const wrongKey = new S3Objects({ ...settings, accessKeyId: 'nobody' });
    const noBucket = new S3Objects({ ...settings, bucket: 'no-such-bucket' });
    try {
      await expect(wrongKey.put('lean/x', new Uint8Array(1), 'text/plain', signal())).rejects.toMatchObject({ name: 'InvalidAccessKeyId', $metadata: { httpStatusCode: 403 } });
      await expect(noBucket.get('lean/x', signal())).rejects.toMatchObject({ name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } });
    } finally {
      await wrongKey.close();
      await noBucket.close();
    }
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
