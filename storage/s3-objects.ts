/**
 * A lean client for the storage thread's hot S3 calls, PUT and GET of one object: SigV4 by the AWS
 * SDK's own signer (@smithy/signature-v4), HTTP/1.1 keep-alive by undici.
 *
 * Why not the SDK's S3Client for these: at a few hundred monitors its per-request middleware stack
 * (serialisation, endpoint rules, retries, checksums, user agent) and signing took about 60 % of the
 * storage thread's CPU, several times what the request itself costs (docs/BENCHMARKS.md). Listing,
 * bucket creation and everything else stay on the SDK.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { XMLParser } from 'fast-xml-parser';
import { Agent, request } from 'undici';
import type { S3Settings } from './s3.js';

type SourceData = string | ArrayBuffer | ArrayBufferView;

function bytesOf(data: SourceData): string | Buffer {
  if (typeof data === 'string') return data;
  return ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
}

/** SHA-256 of no bytes, the payload hash of a GET. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** The Checksum the signer wants, from node:crypto: a plain SHA-256, or an HMAC-SHA256 when given a secret (the signer derives its keys so). */
class Sha256 {
  readonly #hash: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytesOf(secret));
  }

  update(data: SourceData): void {
    this.#hash.update(bytesOf(data));
  }

  async digest(): Promise<Uint8Array> {
    return this.#hash.digest();
  }

  reset(): void {
    throw new Error('not used by the signer');
  }
}

/** An S3 error answer, shaped like the SDK's (name, $metadata.httpStatusCode) for describeS3Error and the not-found checks. */
export class S3HttpError extends Error {
  readonly $metadata: { httpStatusCode: number };

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
  }
}

/** Each path segment percent-encoded as S3 expects (RFC 3986 unreserved characters kept), `/` kept. */
function encodeKey(key: string): string {
  return key.split('/').map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');
}

export class S3Objects {
  readonly #bucket: string;
  readonly #origin: URL;
  readonly #pathPrefix: string;
  readonly #signer: SignatureV4;
  readonly #agent = new Agent({ keepAliveTimeout: 30_000, connections: 32 });

  constructor(settings: S3Settings) {
    this.#bucket = settings.bucket;
    const endpoint = new URL(settings.endpoint ?? `https://s3.${settings.region}.amazonaws.com`);
    if (settings.forcePathStyle) {
      this.#origin = endpoint;
      this.#pathPrefix = `/${settings.bucket}/`;
    } else {
      this.#origin = new URL(`${endpoint.protocol}//${settings.bucket}.${endpoint.host}`);
      this.#pathPrefix = '/';
    }
    this.#signer = new SignatureV4({
      service: 's3', region: settings.region, sha256: Sha256, uriEscapePath: false, applyChecksum: true,
      credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
    });
  }

  get bucket(): string {
    return this.#bucket;
  }

  /** The request's path and headers, signed (SigV4, payload hash in x-amz-content-sha256 as S3 requires). */
  async signed(method: string, key: string, payloadSha256: string, extraHeaders: Record<string, string> = {}, signingDate?: Date): Promise<{ path: string; headers: Record<string, string> }> {
    const path = `${this.#pathPrefix}${encodeKey(key)}`;
    const headers = { host: this.#origin.host, 'x-amz-content-sha256': payloadSha256, ...extraHeaders };
    const signed = await this.#signer.sign({
      method, protocol: this.#origin.protocol, hostname: this.#origin.hostname, path, query: {}, headers,
      ...(this.#origin.port !== '' ? { port: Number(this.#origin.port) } : {}),
    }, signingDate !== undefined ? { signingDate } : {});
    return { path, headers: signed.headers };
  }

  async #send(method: 'PUT' | 'GET', key: string, body: Uint8Array | undefined, contentType: string | undefined, signal: AbortSignal) {
    const extra: Record<string, string> = {};
    if (body !== undefined) {
      extra['content-length'] = String(body.byteLength);
      if (contentType !== undefined) extra['content-type'] = contentType;
    }
    const payloadSha256 = body === undefined ? EMPTY_SHA256 : createHash('sha256').update(body).digest('hex');
    const { path, headers } = await this.signed(method, key, payloadSha256, extra);
    return request(new URL(path, this.#origin), {
      method, headers, body: body === undefined ? null : Buffer.from(body.buffer, body.byteOffset, body.byteLength), signal, dispatcher: this.#agent,
    });
  }

  async put(key: string, body: Uint8Array, contentType: string, signal: AbortSignal): Promise<void> {
    const response = await this.#send('PUT', key, body, contentType, signal);
    const text = await response.body.text();
    if (response.statusCode !== 200) throw errorOf(response.statusCode, text, `PUT ${key}`);
  }

  /** The object's bytes, or null when there is no such key. */
  async get(key: string, signal: AbortSignal): Promise<Uint8Array | null> {
    const response = await this.#send('GET', key, undefined, undefined, signal);
    if (response.statusCode === 200) return new Uint8Array(await response.body.arrayBuffer());
    const text = await response.body.text();
    const error = errorOf(response.statusCode, text, `GET ${key}`);
    if (response.statusCode === 404 && error.name === 'NoSuchKey') return null;
    throw error;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

const xml = new XMLParser();

/** The S3 error answer's Code and Message (an XML <Error> body), or the HTTP status when the body is not one. */
function errorOf(status: number, body: string, what: string): S3HttpError {
  let parsed: { Error?: { Code?: unknown; Message?: unknown } } = {};
  try {
    parsed = xml.parse(body) as typeof parsed;
  } catch {
    // not XML: the status says enough
  }
  const code = typeof parsed.Error?.Code === 'string' ? parsed.Error.Code : `Http${status}`;
  const message = typeof parsed.Error?.Message === 'string' ? parsed.Error.Message : `${what} answered HTTP ${status}`;
  return new S3HttpError(status, code, message);
}
