/**
 * A running gateway: its Redis connections (commands, and a subscriber for results), its clock
 * corrected to Redis, the ingestor, and the fastify app listening on a port. `start()`/`close()`.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RedisClock } from '../queue/clock.js';
import { connectRedis } from '../queue/connect.js';
import { Ingestor } from '../queue/ingest.js';
import { RedisKeys } from '../queue/keys.js';
import { buildGatewayApp, type GatewayApp, type GatewayAppOptions } from './app.js';
import { LivePlacer, type Policy, type RouteChange } from '../scheduler/index.js';
import { GatewayMetrics } from './metrics.js';
import { ResultHub } from './result-hub.js';

export interface GatewayOptions extends Pick<GatewayAppOptions, 'waitTimeoutMs' | 'monitorRate' | 'maxBacklog'> {
  redisUrl: string;
  keyPrefix?: string;
  host?: string;
  /** 0: a free port. */
  port?: number;
  logger: Logger;
  gatewayId?: string;
  /** See IngestorOptions.flushWindowMs. */
  flushWindowMs?: number;
  /** Place new monitors by this policy (scheduler/); without it, on the least-loaded live slot. */
  policy?: Policy;
}

export class Gateway {
  readonly id: string;
  readonly #options: GatewayOptions;
  readonly keys: RedisKeys;
  #redis: Redis | null = null;
  #subscriber: Redis | null = null;
  #clock: RedisClock | null = null;
  #ingestor: Ingestor | null = null;
  #hub: ResultHub | null = null;
  #app: GatewayApp | null = null;
  #runId = 'default';
  #runPoll: NodeJS.Timeout | null = null;
  #url: string | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: GatewayOptions) {
    this.#options = options;
    this.keys = new RedisKeys(options.keyPrefix);
    this.id = options.gatewayId ?? `gw-${hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 24)}-${process.pid}-${randomBytes(2).toString('hex')}`;
  }

  get url(): string | null {
    return this.#url;
  }

  get app(): GatewayApp | null {
    return this.#app;
  }

  get ingestStats() {
    return this.#ingestor?.stats ?? null;
  }

  async start(): Promise<string> {
    if (this.#url !== null) return this.#url;
    const { logger, redisUrl } = this.#options;
    // Commands fail fast while Redis is away (503, never a 2xx that loses the packet); ioredis keeps reconnecting.
    const redis = new Redis(redisUrl, {
      lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 5000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
    });
    redis.on('error', (error) => logger.warn({ err: error.message }, 'redis connection error'));
    this.#redis = redis;
    await connectRedis(redis, redisUrl);
    const subscriber = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(100 * times, 1000) });
    subscriber.on('error', () => {});
    this.#subscriber = subscriber;
    await connectRedis(subscriber, redisUrl);

    const clock = new RedisClock(redis, {});
    await clock.start();
    this.#clock = clock;
    await this.#pollRun();
    this.#runPoll = setInterval(() => void this.#pollRun(), 1000);
    this.#runPoll.unref();

    // Route changes (scheduler/moves.ts): forget the routes, let flushes that used them end, then say so.
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.keys.routesChannel) void this.#onRoutesChanged(message);
    });
    // Pub/sub loses what is published while disconnected: after a reconnect, every route is re-read.
    subscriber.on('ready', () => this.#ingestor?.invalidateRoutes());
    await subscriber.subscribe(this.keys.routesChannel);
    const hub = new ResultHub(subscriber, this.keys.resultsChannel);
    await hub.start();
    this.#hub = hub;
    const ingestor = new Ingestor({
      redis, keys: this.keys, gatewayId: this.id, now: () => clock.now(),
      clock: () => ({ offsetMs: clock.offsetMs, uncertaintyMs: clock.uncertaintyMs }),
      runId: () => this.#runId,
      ...(this.#options.flushWindowMs !== undefined ? { flushWindowMs: this.#options.flushWindowMs } : {}),
      ...(this.#options.policy !== undefined ? { place: placerFor(redis, this.keys, this.#options.policy, () => clock.now()) } : {}),
      onError: (error) => logger.debug({ err: error.message }, 'queue connection error'),
    });
    this.#ingestor = ingestor;
    const metrics = new GatewayMetrics({ backlog: () => ingestor.backlog, waiting: () => hub.waiting, sse: () => hub.listeners });
    this.#app = await buildGatewayApp({
      redis, keys: this.keys, ingestor, hub, metrics, now: () => clock.now(), logger,
      ...(this.#options.waitTimeoutMs !== undefined ? { waitTimeoutMs: this.#options.waitTimeoutMs } : {}),
      ...(this.#options.monitorRate !== undefined ? { monitorRate: this.#options.monitorRate } : {}),
      ...(this.#options.maxBacklog !== undefined ? { maxBacklog: this.#options.maxBacklog } : {}),
      workersAlive: async () => redis.zcount(this.keys.workers, Math.round(clock.now() - 15_000), '+inf'),
    });
    const address = await this.#app.listen({ host: this.#options.host ?? '127.0.0.1', port: this.#options.port ?? 0 });
    this.#url = address.replace('[::1]', '127.0.0.1');
    logger.info({ gateway: this.id, url: this.#url }, 'gateway listening');
    return this.#url;
  }

  /** Every second: the current run, and this gateway's heartbeat (a route change waits for the live gateways). */
  async #pollRun(): Promise<void> {
    const redis = this.#redis;
    if (redis?.status !== 'ready') return;
    const [run] = await Promise.all([
      redis.get(this.keys.currentRun).catch(() => null),
      this.#clock === null ? null : redis.zadd(this.keys.gateways, Math.round(this.#clock.now()), this.id).catch(() => 0),
    ]);
    if (run !== null) this.#runId = run;
  }

  async #onRoutesChanged(message: string): Promise<void> {
    let change: RouteChange;
    try {
      change = JSON.parse(message) as RouteChange;
    } catch {
      return;
    }
    this.#ingestor?.invalidateRoutes(change.monitors);
    await this.#ingestor?.barrier();
    const ack = this.keys.routeAck(change.id);
    await this.#redis?.multi().sadd(ack, this.id).expire(ack, 600).exec()
      .catch((error: Error) => this.#options.logger.warn({ err: error.message }, 'route change not acknowledged'));
  }

  /** Stops accepting, answers what is in flight, then closes connections. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#runPoll !== null) clearInterval(this.#runPoll);
      await this.#redis?.zrem(this.keys.gateways, this.id).catch(() => 0);
      this.#hub?.close();
      await this.#app?.close();
      await this.#ingestor?.close();
      await this.#clock?.close();
      for (const connection of [this.#subscriber, this.#redis]) {
        if (connection === null) continue;
        await connection.quit().catch(() => connection.disconnect());
      }
      this.#url = null;
    })();
    return this.#closing;
  }
}

function placerFor(redis: Redis, keys: RedisKeys, policy: Policy, now: () => number): (monitorId: string) => Promise<string> {
  const placer = new LivePlacer({ redis, keys, policy, now });
  return (monitorId) => placer.place(monitorId);
}
