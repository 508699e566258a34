/**
 * The embedded S3-compatible store (s3rver, in this process) for the demo and the tests: a real HTTP
 * server on a free loopback port, keeping its objects in a local directory, so episodes written
 * during a demo can still be listed and downloaded after the stack stops.
 */
import { mkdir } from 'node:fs/promises';
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
