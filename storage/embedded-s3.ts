/**
 * The embedded S3-compatible store (s3rver, in this process) for the demo and the tests: a real HTTP
 * server on a free loopback port, keeping its objects in a local directory, so episodes written
 * during a demo can still be listed and downloaded after the stack stops.
 */
import { createHash, randomBytes } from 'node:crypto';
import { fstat as fstatCallback, type ReadStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import S3rver from 's3rver';
import { StorageError } from './errors.js';
import type { S3Settings } from './s3.js';

export interface EmbeddedS3Options {
  /** Where objects live (created if missing). */
  directory: string;
  bucket?: string;
  /** 0 (default): a free port. */
  port?: number;
}

const fstat = promisify(fstatCallback);

/** The parts of s3rver's filesystem store that atomicObjects replaces and uses. */
interface FilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  getObject(bucket: string, key: string, options?: { start?: number; end?: number }): Promise<{ content: ReadStream | null; metadata: Record<string, unknown> } | null>;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  putObject(object: { bucket: string; key: string; metadata: unknown; content: Buffer | Readable }): Promise<{ size: number; md5: string }>;
}

/**
 * s3rver writes an object's file in place, and for a buffered body answers the PUT before the write
 * has finished; its GET takes the size from one stat and the bytes from a later open. So a GET
 * racing a PUT could answer 200 with part of an object (seen: a manifest that was not JSON). S3 and
 * MinIO never show a partial object, so here a PUT writes a temporary file and renames it over the
 * old one (atomic on one filesystem; listings only see names ending in s3rver's object suffix), and
 * a GET whose opened file is not the size it announced opens it again.
 */
function atomicObjects(store: FilesystemStore): void {
  const getObject = store.getObject.bind(store);
  store.getObject = async (bucket, key, options) => {
    for (let attempt = 1; ; attempt++) {
      const object = await getObject(bucket, key, options);
      const stream = object?.content;
      if (object === null || stream === null || stream === undefined || options?.start !== undefined || options?.end !== undefined) return object;
      const opened = await fstat((stream as unknown as { fd: number }).fd);
      if (opened.size === Number(object.metadata['content-length']) || attempt >= 5) return object;
      stream.destroy();
    }
  };
  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(path.dirname(objectPath), { recursive: true });
    const content = Buffer.isBuffer(object.content) ? object.content : await buffer(object.content);
    const md5 = createHash('md5').update(content).digest('hex');
    const temporary = `${objectPath}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temporary, content);
    await rename(temporary, objectPath);
    await store.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { size: content.length, md5 };
  };
}

/** Fixed credentials of the embedded store: it listens on loopback only and holds nothing secret. */
export const EMBEDDED_S3_KEY = 'S3RVER';

export class EmbeddedS3 {
  readonly #options: Required<EmbeddedS3Options>;
  #server: S3rver | null = null;
  #closing: Promise<void> | null = null;
  #settings: S3Settings | null = null;

  constructor(options: EmbeddedS3Options) {
    this.#options = { bucket: 'ecgfaas', port: 0, ...options };
  }

  /** Starts the server; resolves to the settings a client needs to reach it. */
  async start(): Promise<S3Settings> {
    if (this.#settings !== null) return this.#settings;
    await mkdir(this.#options.directory, { recursive: true });
    const server = new S3rver({
      address: '127.0.0.1',
      port: this.#options.port,
      silent: true,
      directory: this.#options.directory,
      configureBuckets: [{ name: this.#options.bucket }],
    });
    atomicObjects((server as unknown as { store: FilesystemStore }).store);
    let address;
    try {
      address = await server.run();
    } catch (error) {
      throw new StorageError('S3_START', `embedded S3 store did not start: ${(error as Error).message}`, { cause: error });
    }
    this.#server = server;
    this.#settings = {
      endpoint: `http://127.0.0.1:${address.port}`,
      region: 'us-east-1',
      bucket: this.#options.bucket,
      forcePathStyle: true,
      accessKeyId: EMBEDDED_S3_KEY,
      secretAccessKey: EMBEDDED_S3_KEY,
    };
    return this.#settings;
  }

  get settings(): S3Settings | null {
    return this.#settings;
  }

  /** Stops the server; idempotent, and safe to call concurrently. */
  close(): Promise<void> {
    if (this.#server === null) return Promise.resolve();
    this.#closing ??= this.#server.close().finally(() => {
      this.#server = null;
      this.#settings = null;
      this.#closing = null;
    });
    return this.#closing;
  }
}
