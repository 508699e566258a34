/**
 * The gateway's fastify app, built by a function so tests can `inject` into it or listen on a port.
 * Routes: POST /v1/monitors/:monitorId/packets, GET /v1/invocations/:id,
 * GET /v1/monitors/:monitorId/events (SSE), /healthz, /readyz, /metrics, OpenAPI at /docs.
 */
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyError } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AcceptedSchema, ErrorBodySchema, InvocationResultSchema } from '../contracts/invocation.js';
import { BINARY_CONTENT_TYPE, type AdcPacket } from '../contracts/packet-binary.js';
import { MONITOR_ID_PATTERN, PacketBodySchema, type PacketBody } from '../contracts/packet.js';
import { isEcgFaasError } from '../contracts/errors.js';
import type { Ingestor } from '../queue/ingest.js';
import type { RedisKeys } from '../queue/keys.js';
import { GATEWAY_ERRORS, GatewayError, type GatewayErrorCode } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import { packetFromBinary, packetFromJson } from './packets.js';
import type { ResultHub } from './result-hub.js';

export interface GatewayAppOptions {
  redis: Redis;
  keys: RedisKeys;
  ingestor: Ingestor;
  hub: ResultHub;
  metrics: GatewayMetrics;
  /** Redis-clock now (ms). */
  now: () => number;
  logger: Logger;
  /** Longest ?wait=1 waits for its result before answering 202 (default 1000 ms). */
  waitTimeoutMs?: number;
  /** Per-monitor token bucket: sustained packets/s and burst (defaults 5/s, 30). */
  monitorRate?: { perSecond: number; burst: number };
  /** 429 QUEUE_FULL beyond this many packets waiting in the gateway (default 20,000). */
  maxBacklog?: number;
  /** Is the worker side alive (for /readyz)? */
  workersAlive?: () => Promise<number>;
}

/** Largest valid body: the binary layout with two leads of 360 samples and all names at full length, or JSON of the same. */
export const BODY_LIMIT_BYTES = 64 * 1024;

const MonitorParams = Type.Object({ monitorId: Type.String({ pattern: MONITOR_ID_PATTERN }) });
const WaitQuery = Type.Object(
  { wait: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0'), Type.Literal('true'), Type.Literal('false')])) },
  { additionalProperties: false },
);

export async function buildGatewayApp(options: GatewayAppOptions) {
  const waitTimeoutMs = options.waitTimeoutMs ?? 1000;
  const rate = options.monitorRate ?? { perSecond: 5, burst: 30 };
  const maxBacklog = options.maxBacklog ?? 20_000;
  const { ingestor, hub, metrics, keys, redis } = options;
  const buckets = new Map<string, { tokens: number; at: number }>();
  let closing = false;

  const app = Fastify({
    loggerInstance: options.logger,
    disableRequestLogging: true,
    bodyLimit: BODY_LIMIT_BYTES,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Our handler answers requests that arrive while closing (503 SHUTTING_DOWN with a code and
    // Retry-After); fastify's own 503 would carry neither.
    return503OnClosing: false,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(BINARY_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES }, (_request, body, done) => done(null, body));

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'ecg-faas gateway',
        version: '1',
        description: 'Heart monitors POST one-second ECG packets; warm functions classify them. Binary layout: contracts/packet-binary.ts and docs/API.md.',
      },
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = mapError(error);
    metrics.errors.inc({ code: mapped.code });
    if (mapped.statusCode >= 500) request.log.error({ err: error.message, code: mapped.code }, 'request failed');
    if (mapped.retryAfterSeconds !== undefined) void reply.header('retry-after', String(mapped.retryAfterSeconds));
    return reply.code(mapped.statusCode).send({
      statusCode: mapped.statusCode,
      code: mapped.code,
      error: httpReason(mapped.statusCode),
      message: mapped.message,
    });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` }));
  // Open SSE streams, each with the function that ends it. Fix: the events route used to call
  // app.addHook('onClose') per request, which fastify refuses once the app listens (the handler threw
  // FST_ERR_INSTANCE_ALREADY_LISTENING after the stream had started), so no stream was ever ended on
  // close and Gateway.close() waited for every display to disconnect on its own. They are ended here,
  // in preClose: fastify's onClose closes the server first and waits for open connections.
  const sseStreams = new Set<() => void>();
  app.addHook('preClose', async () => {
    closing = true;
    for (const endStream of [...sseStreams]) endStream();
  });

  const errorResponses = Object.fromEntries(
    [...new Set(Object.values(GATEWAY_ERRORS).map((entry) => entry.status))].map((status) => [status, ErrorBodySchema]),
  );

  app.post('/v1/monitors/:monitorId/packets', {
    schema: {
      summary: 'Submit one packet (at most one second of one or two leads at 360 Hz).',
      description: '202 {invocationId} once the packet is durably queued. With ?wait=1: 200 with the result when it is ready within the wait deadline, else 202. The same (monitor, session, seq) again: 200 {invocationId, duplicate: true}, not queued again.',
      params: MonitorParams,
      querystring: WaitQuery,
      body: {
        content: {
          'application/json': { schema: PacketBodySchema },
          // No JSON schema can check bytes: decodePacket validates the layout (BAD_BINARY_PACKET).
          [BINARY_CONTENT_TYPE]: { schema: Type.Unsafe<Buffer>({ description: 'The binary packet layout of docs/API.md (int16 little-endian samples).' }) },
        },
      } as never,
      response: { 200: Type.Union([InvocationResultSchema, AcceptedSchema]), 202: AcceptedSchema, ...errorResponses },
    },
    attachValidation: false,
  }, async (request, reply) => {
    const receivedAt = options.now();
    if (closing) throw new GatewayError('SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterSeconds: 1 });
    const { monitorId } = request.params;
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    let packet: AdcPacket;
    let format: 'binary' | 'json';
    if (contentType === BINARY_CONTENT_TYPE) {
      packet = packetFromBinary(request.body as unknown as Buffer);
      format = 'binary';
    } else if (contentType === 'application/json') {
      packet = packetFromJson(request.body as PacketBody);
      format = 'json';
    } else {
      throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', `content type ${contentType || '(none)'} is not application/json or ${BINARY_CONTENT_TYPE}`);
    }
    takeToken(monitorId, receivedAt);
    if (ingestor.backlog >= maxBacklog) throw new GatewayError('QUEUE_FULL', `the gateway holds ${ingestor.backlog} packets not yet queued`, { retryAfterSeconds: 1 });
    if (redis.status !== 'ready') throw new GatewayError('REDIS_UNAVAILABLE', 'the queue (Redis) is not connected; the packet was not accepted', { retryAfterSeconds: 1 });

    const wait = request.query.wait === '1' || request.query.wait === 'true';
    const accepted = await ingestor.submit(monitorId, packet, wait, receivedAt).catch((error: unknown) => {
      throw toSubmitError(error);
    });
    metrics.acceptMs.observe(options.now() - receivedAt);
    if (accepted.duplicate) {
      metrics.packets.inc({ outcome: 'duplicate', format });
      return reply.code(200).send({ invocationId: accepted.invocationId, duplicate: true });
    }
    metrics.packets.inc({ outcome: 'accepted', format });
    if (!wait) return reply.code(202).send({ invocationId: accepted.invocationId });

    // The result may already have been published while we waited for the enqueue: look in Redis after subscribing.
    const waiter = hub.wait(accepted.invocationId, Math.max(0, waitTimeoutMs - (options.now() - receivedAt)));
    const stored = await redis.get(keys.result(accepted.invocationId)).catch(() => null);
    const json = stored ?? (await waiter.promise);
    if (stored !== null) waiter.cancel();
    if (json === null) {
      metrics.waits.inc({ outcome: 'deadline' });
      return reply.code(202).send({ invocationId: accepted.invocationId });
    }
    metrics.waits.inc({ outcome: 'result' });
    return reply.code(200).type('application/json; charset=utf-8').send(json as never);
  });

  app.get('/v1/invocations/:id', {
    schema: {
      summary: 'An invocation\'s result and latency record (kept for the result TTL, 300 s by default).',
      params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }),
      response: { 200: InvocationResultSchema, 404: ErrorBodySchema, 503: ErrorBodySchema },
    },
    // Fix: a malformed id failed params validation, which the error handler maps to 400
    // INVALID_MONITOR_ID ("monitor id must be ..."), wrong for this route. No invocation has such an
    // id, so it is unknown: 404 NOT_FOUND, as for any other unknown id.
    attachValidation: true,
  }, async (request, reply) => {
    if (request.validationError) throw new GatewayError('NOT_FOUND', `invocation ${request.params.id} is unknown: invocation ids are 1-64 of [A-Za-z0-9_-]`);
    const json = await redis.get(keys.result(request.params.id)).catch((error: Error) => {
      throw new GatewayError('REDIS_UNAVAILABLE', `Redis is unreachable: ${error.message}`, { retryAfterSeconds: 1 });
    });
    if (json === null) throw new GatewayError('NOT_FOUND', `invocation ${request.params.id} is unknown, not finished yet, or its result expired`);
    return reply.code(200).type('application/json; charset=utf-8').send(json as never);
  });

  app.get('/v1/monitors/:monitorId/events', {
    schema: {
      summary: 'Server-Sent Events for a bedside display: `result` (each invocation result) and `episode` (start/end).',
      params: MonitorParams,
      produces: ['text/event-stream'],
    },
  }, (request, reply) => {
    const { monitorId } = request.params;
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    raw.write(`retry: 2000\n: monitor ${monitorId}\n\n`);
    const stop = hub.listen(monitorId, (json) => {
      raw.write(`event: result\ndata: ${json}\n\n`);
      if (json.includes('"type":"start"') || json.includes('"type":"end"')) {
        const result = JSON.parse(json) as { events: Array<{ type: string }> };
        for (const event of result.events) {
          if (event.type !== 'continue') raw.write(`event: episode\ndata: ${JSON.stringify({ monitorId, ...event })}\n\n`);
        }
      }
    });
    const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), 15_000);
    keepAlive.unref();
    let ended = false;
    const end = () => {
      // Once: endStream() ends the response, whose socket then closes and calls end() again.
      if (ended) return;
      ended = true;
      clearInterval(keepAlive);
      stop();
      sseStreams.delete(endStream);
    };
    const endStream = () => {
      end();
      raw.end();
    };
    sseStreams.add(endStream);
    request.raw.on('close', end);
  });

  app.get('/healthz', { schema: { summary: 'The process is up.', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', {
    schema: {
      summary: 'Ready to accept packets: Redis connected and at least one live worker.',
      response: { 200: Type.Object({ status: Type.String(), redis: Type.String(), workers: Type.Integer() }), 503: Type.Object({ status: Type.String(), redis: Type.String(), workers: Type.Integer() }) },
    },
  }, async (_request, reply) => {
    const redisStatus = redis.status;
    const workers = redisStatus === 'ready' && options.workersAlive ? await options.workersAlive().catch(() => 0) : 0;
    const ready = !closing && redisStatus === 'ready' && (options.workersAlive === undefined || workers > 0);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not-ready', redis: redisStatus, workers });
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics.', produces: ['text/plain'] } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  function takeToken(monitorId: string, now: number): void {
    let bucket = buckets.get(monitorId);
    if (bucket === undefined) {
      if (buckets.size > 100_000) buckets.clear(); // bounded memory; a cleared bucket only forgives
      buckets.set(monitorId, (bucket = { tokens: rate.burst, at: now }));
    }
    bucket.tokens = Math.min(rate.burst, bucket.tokens + ((now - bucket.at) / 1000) * rate.perSecond);
    bucket.at = now;
    if (bucket.tokens < 1) {
      throw new GatewayError('MONITOR_RATE_LIMITED', `monitor ${monitorId} is over its limit of ${rate.perSecond} packets/s`, {
        retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / rate.perSecond)),
      });
    }
    bucket.tokens -= 1;
  }

  return app;
}

interface MappedError {
  statusCode: number;
  code: GatewayErrorCode;
  message: string;
  retryAfterSeconds?: number | undefined;
}

function mapError(error: FastifyError): MappedError {
  if (error instanceof GatewayError) return { statusCode: error.statusCode, code: error.code as GatewayErrorCode, message: error.message, retryAfterSeconds: error.retryAfterSeconds };
  const make = (code: GatewayErrorCode, message: string): MappedError => ({ statusCode: GATEWAY_ERRORS[code].status, code, message });
  if (error.validation) {
    const context = error.validationContext;
    if (context === 'params') return make('INVALID_MONITOR_ID', `monitor id must be 1-64 of [A-Za-z0-9_-] (${error.message})`);
    if (context === 'querystring') return make('INVALID_QUERY', error.message);
    return make('INVALID_PACKET', error.message);
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return make('PAYLOAD_TOO_LARGE', `body is larger than ${BODY_LIMIT_BYTES} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return make('UNSUPPORTED_MEDIA_TYPE', error.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return make('BAD_JSON', 'the JSON body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return make('BAD_JSON', error.message);
    default:
  }
  if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) return make('BAD_JSON', `the body is not valid JSON: ${error.message}`);
  if (error.statusCode === 415) return make('UNSUPPORTED_MEDIA_TYPE', error.message);
  if (error.statusCode === 413) return make('PAYLOAD_TOO_LARGE', error.message);
  if (error.statusCode === 503) return make('SHUTTING_DOWN', error.message);
  return make('INTERNAL', 'internal error');
}

function httpReason(status: number): string {
  return ({ 400: 'Bad Request', 404: 'Not Found', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Entity', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' } as Record<number, string>)[status] ?? 'Error';
}

export type GatewayApp = Awaited<ReturnType<typeof buildGatewayApp>>;

/** The HTTP error for a packet the queue did not take (none of these accepted it). */
function toSubmitError(error: unknown): GatewayError {
  const code = isEcgFaasError(error) ? error.code : null;
  const message = (error as Error).message;
  if (code === 'NO_WORKERS') return new GatewayError('NO_WORKERS', message, { retryAfterSeconds: 1, cause: error });
  if (code === 'INGEST_CLOSED') return new GatewayError('SHUTTING_DOWN', message, { retryAfterSeconds: 1, cause: error });
  // The placement policy has no room for a new monitor: capacity may come (a worker, a VM), so retry later.
  if (code === 'PLACEMENT_REFUSED' || code === 'PLACEMENT_BUSY') return new GatewayError('NO_CAPACITY', message, { retryAfterSeconds: 5, cause: error });
  return new GatewayError('REDIS_UNAVAILABLE', `the queue (Redis) did not accept the packet: ${message}`, { retryAfterSeconds: 1, cause: error });
}
