/**
 * The whole platform on one machine (`ecgfaas demo`, `up`, `bench`): a redis-server of its own
 * (unless REDIS_URL is given), the embedded S3 store (unless ECGFAAS_S3_ENDPOINT is given), one
 * gateway and N warm workers as child processes started by the local deploy driver: the same
 * processes, flags and code as on a production host.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { declareWorkerDead, LocalProcess } from '../deploy/local.js';
import { ScaleOutService } from '../deploy/scale-out.js';
import { LocalVmDriver } from '../deploy/vms.js';
import { EmbeddedRedis } from '../queue/embedded-redis.js';
import { RedisClock } from '../queue/clock.js';
import { loadPolicy, readSchedulerEvents, SchedulerLoop, type SchedulerEvent } from '../scheduler/index.js';
import { RedisKeys } from '../queue/keys.js';
import { createS3Client, EMBEDDED_S3_KEY, s3SettingsFromEnv, type S3Settings } from '../storage/index.js';

export interface StackOptions {
  /** The store directory: embedded S3 data (`<dir>/s3`), logs (`<dir>/logs`). Default `.ecgfaas`. */
  dir?: string;
  /** Data directory of the embedded redis-server (default `<dir>/redis`). */
  redisDir?: string;
  redisUrl?: string;
  appendfsync?: 'always' | 'everysec';
  workers?: number;
  keyPrefix?: string;
  extraComputeMs?: number;
  /** The extra work as an exact loop count for every worker (calibrated once by the caller; see WarmWorkerOptions). */
  extraComputeIterations?: number;
  /** Episodes stored by the workers (default true). */
  storeEpisodes?: boolean;
  /** Packets per second one monitor may send (the gateway's limit; default the gateway's, 5). */
  monitorRatePerSecond?: number;
  gatewayPort?: number;
  waitTimeoutMs?: number;
  /** The gateway's enqueue window (ms; default: the gateway's). */
  flushWindowMs?: number;
  model?: string;
  logger: Logger;
  /** The run new invocations are attributed to from the start (see setRun). */
  runId?: string;
  /** Child log level (default warn: the demo's output stays readable; logs go to <dir>/logs). */
  childLogLevel?: string;
  /**
   * Local VMs (deploy/vms.ts: cgroup-confined groups of workers where cgroups are writable) named
   * vm-1..vm-N, whose workers run besides the `workers` plain ones.
   */
  vms?: { count: number; vcpus: number; memoryMb?: number; workersPerVm?: number } | undefined;
  /** Serve scale-out requests with the local VMs' driver (default true; an experiment's placement is fixed). */
  scaleOut?: boolean;
  /** A placement policy file: the gateway places new monitors by it. */
  policy?: string | undefined;
  /** Run the scheduler's control loop (scheduler/control.ts) with the policy in this process. */
  scheduler?: { intervalMs?: number } | undefined;
}

export interface StackInfo {
  gatewayUrl: string;
  redisUrl: string;
  s3: S3Settings;
  embeddedRedis: boolean;
  embeddedS3: boolean;
}

export class EmbeddedStack {
  readonly #options: Required<Omit<StackOptions, 'redisUrl' | 'redisDir' | 'runId' | 'flushWindowMs' | 'vms' | 'policy' | 'scheduler' | 'monitorRatePerSecond' | 'scaleOut'>> & {
    scaleOut: boolean;
    monitorRatePerSecond: number | undefined;
    redisUrl: string | undefined; redisDir: string; runId: string | undefined; flushWindowMs: number | undefined;
  } & Pick<StackOptions, 'vms' | 'policy' | 'scheduler'>;
  /** The local VMs' driver and the scheduler loop, with their Redis connection. */
  #vms: { redis: Redis; driver: LocalVmDriver | null; loop: SchedulerLoop | null; clock: RedisClock | null; scaleOut: ScaleOutService | null } | null = null;
  readonly keys: RedisKeys;
  #redis: EmbeddedRedis | null = null;
  #s3: LocalProcess<{ endpoint: string; bucket: string }> | null = null;
  #gateway: LocalProcess<{ url: string; gatewayId: string }> | null = null;
  readonly workers: Array<LocalProcess<{ workerId: string; hypervisor: string }>> = [];
  #info: StackInfo | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: StackOptions) {
    const dir = options.dir ?? '.ecgfaas';
    this.#options = {
      dir, workers: 2, keyPrefix: 'ecgfaas', extraComputeMs: 0, extraComputeIterations: 0, storeEpisodes: true, gatewayPort: 0, waitTimeoutMs: 1000, model: 'default',
      appendfsync: 'everysec', childLogLevel: 'warn', ...options,
      redisUrl: options.redisUrl ?? process.env.REDIS_URL, redisDir: options.redisDir ?? path.join(dir, 'redis'), runId: options.runId,
      flushWindowMs: options.flushWindowMs, monitorRatePerSecond: options.monitorRatePerSecond, scaleOut: options.scaleOut ?? true,
    };
    this.keys = new RedisKeys(this.#options.keyPrefix);
  }

  get info(): StackInfo | null {
    return this.#info;
  }

  async start(): Promise<StackInfo> {
    if (this.#info !== null) return this.#info;
    const { dir, logger } = this.#options;
    await mkdir(path.join(dir, 'logs'), { recursive: true });
    let redisUrl = this.#options.redisUrl;
    if (redisUrl === undefined) {
      this.#redis = new EmbeddedRedis({ directory: this.#options.redisDir, appendfsync: this.#options.appendfsync });
      redisUrl = await this.#redis.start();
      logger.info({ redisUrl }, 'embedded redis-server started');
    }
    let s3: S3Settings;
    if (process.env.ECGFAAS_S3_ENDPOINT) {
      s3 = s3SettingsFromEnv();
    } else {
      // A process of its own: s3rver is single-threaded JavaScript, and in this process it would
      // share a thread with the load generator.
      this.#s3 = new LocalProcess({ args: ['s3', '--dir', path.join(dir, 's3'), '--bucket', 'ecgfaas'], logs: path.join(dir, 'logs', 's3.log') });
      const ready = await this.#s3.start();
      s3 = {
        endpoint: ready.endpoint, region: 'us-east-1', bucket: ready.bucket, forcePathStyle: true,
        accessKeyId: EMBEDDED_S3_KEY, secretAccessKey: EMBEDDED_S3_KEY,
      };
      logger.info({ endpoint: s3.endpoint }, 'embedded S3 store started');
    }
    this.#info = { gatewayUrl: '', redisUrl, s3, embeddedRedis: this.#redis !== null, embeddedS3: this.#s3 !== null };
    try {
      if (this.#options.runId !== undefined) await this.setRun(this.#options.runId);
      // In parallel: each child loads the TypeScript sources and the model, a few seconds each.
      const workers = Array.from({ length: this.#options.workers }, () => this.addWorker());
      this.#gateway = new LocalProcess({
        args: ['gateway', '--redis', redisUrl, '--port', String(this.#options.gatewayPort), '--prefix', this.#options.keyPrefix,
          '--wait-timeout-ms', String(this.#options.waitTimeoutMs),
          ...(this.#options.flushWindowMs !== undefined ? ['--flush-window-ms', String(this.#options.flushWindowMs)] : []),
          ...(this.#options.monitorRatePerSecond !== undefined ? ['--monitor-rate', String(this.#options.monitorRatePerSecond)] : []),
          ...(this.#options.policy !== undefined ? ['--policy', this.#options.policy] : [])],
        env: this.#childEnv(),
        logs: path.join(dir, 'logs', 'gateway.log'),
      });
      const [ready] = await Promise.all([this.#gateway.start(), ...workers, this.#startVms(redisUrl)]);
      this.#info.gatewayUrl = ready.url;
    } catch (error) {
      await this.close();
      throw error;
    }
    return this.#info;
  }

  async #startVms(redisUrl: string): Promise<void> {
    const { vms, scheduler } = this.#options;
    if (vms === undefined && scheduler === undefined) return;
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    redis.on('error', () => {});
    const clock = new RedisClock(redis, {});
    await clock.start();
    this.#vms = { redis, driver: null, loop: null, clock, scaleOut: null };
    if (vms !== undefined) {
      const driver = new LocalVmDriver({
        redis, keys: this.keys, env: this.#childEnv(), logsDir: path.join(this.#options.dir, 'logs'),
        workerArgs: ['--redis', redisUrl, '--prefix', this.#options.keyPrefix, '--model', this.#options.model, ...this.#functionArgs()],
      });
      this.#vms.driver = driver;
      await Promise.all(Array.from({ length: vms.count }, async (_, index) => {
        const name = `vm-${index + 1}`;
        await driver.create({ name, vcpus: vms.vcpus, memoryMb: vms.memoryMb ?? 1024, workers: vms.workersPerVm ?? 1 });
        await driver.start(name);
      }));
      // The stack's driver makes the VMs placement asks for (policy onNoCapacity: scale-out).
      if (this.#options.scaleOut) {
        this.#vms.scaleOut = new ScaleOutService({ redis, keys: this.keys, driver, logger: this.#options.logger, now: () => clock.now() });
        await this.#vms.scaleOut.start();
      }
    }
    if (scheduler !== undefined) {
      if (this.#options.policy === undefined) throw new Error('the scheduler loop needs a policy');
      this.#vms.loop = new SchedulerLoop({
        redis, keys: this.keys, policy: await loadPolicy(this.#options.policy), now: () => clock.now(), logger: this.#options.logger,
        ...(scheduler.intervalMs !== undefined ? { intervalMs: scheduler.intervalMs } : {}),
      });
      this.#vms.loop.start();
    }
  }

  /** Starts one more local worker; resolves when it is consuming its queue. */
  async addWorker(extraArgs: string[] = []): Promise<LocalProcess<{ workerId: string; hypervisor: string }>> {
    const info = this.#info;
    if (info === null) throw new Error('start the stack first');
    const index = this.workers.length;
    const worker: LocalProcess<{ workerId: string; hypervisor: string }> = new LocalProcess<{ workerId: string; hypervisor: string }>({
      args: ['worker', '--redis', info.redisUrl, '--prefix', this.#options.keyPrefix, '--model', this.#options.model,
        ...this.#functionArgs(), '--driver', 'local', ...extraArgs],
      env: this.#childEnv(),
      logs: path.join(this.#options.dir, 'logs', `worker-${index}.log`),
      // The supervisor sees a crash at once: the dead worker's slots are adopted on the next heartbeat, not after the lease lapses.
      onCrash: () => void this.#declareDead(worker.ready?.workerId),
    });
    this.workers.push(worker);
    await worker.start();
    return worker;
  }

  /** The flags that shape every worker's function (extra compute, episodes on or off), also for workers in guests deployed on this stack. */
  functionArgs(): string[] {
    return this.#functionArgs();
  }

  #functionArgs(): string[] {
    const { extraComputeMs, extraComputeIterations } = this.#options;
    return [
      '--extra-compute-ms', String(extraComputeMs), ...(extraComputeIterations > 0 ? ['--extra-compute-iterations', String(extraComputeIterations)] : []),
      ...(this.#options.storeEpisodes ? [] : ['--no-episodes']),
    ];
  }

  #childEnv(): NodeJS.ProcessEnv {
    const s3 = (this.#info as StackInfo).s3;
    return {
      ECGFAAS_LOG_LEVEL: this.#options.childLogLevel,
      ...(s3.endpoint !== undefined ? { ECGFAAS_S3_ENDPOINT: s3.endpoint } : {}),
      ECGFAAS_S3_BUCKET: s3.bucket,
      ECGFAAS_S3_PATH_STYLE: String(s3.forcePathStyle),
      AWS_REGION: s3.region,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    };
  }

  /** Process ids, for CPU accounting. */
  pids(): { gateway: number | null; workers: number[]; redis: number | null; s3: number | null } {
    return {
      s3: this.#s3?.pid ?? null,
      gateway: this.#gateway?.pid ?? null,
      workers: [...this.workers.map((worker) => worker.pid).filter((pid): pid is number => pid !== null), ...(this.#vms?.driver?.pids() ?? [])],
      redis: this.#redis?.pid ?? null,
    };
  }

  /** Sets the run every new invocation is attributed to; gateways pick it up within a second (waitForGateways). */
  async setRun(runId: string, waitForGateways = false): Promise<void> {
    await this.#withRedis((redis) => redis.set(this.keys.currentRun, runId));
    if (waitForGateways) await new Promise((resolve) => setTimeout(resolve, 1200));
  }

  async #declareDead(workerId: string | undefined): Promise<void> {
    if (workerId === undefined || this.#closing !== null) return;
    await this.#withRedis((redis) => declareWorkerDead(redis, this.keys, workerId))
      .then((slots) => this.#options.logger.warn({ worker: workerId, slots }, 'a worker died; its slots are free for adoption'))
      .catch((error: Error) => this.#options.logger.warn({ worker: workerId, err: error.message }, 'could not declare a dead worker'));
  }

  /** Waits until every slot queue is empty (nothing waiting, active or delayed) and every episode write is stored; false on timeout. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    return this.#withRedis(async (redis) => {
      for (;;) {
        const pending = await this.#sumOverSlots(redis, async (queue, slot) => {
          const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
          // Plus the episode writes committed but not yet in S3.
          return Object.values(counts).reduce((a, b) => a + b, 0) + await redis.llen(this.keys.outbox(slot));
        });
        if (pending === 0) return true;
        if (Date.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    });
  }

  /** The scheduler's events since `since` (Redis-clock ms), oldest first. */
  async schedulerEvents(since = 0): Promise<SchedulerEvent[]> {
    return this.#withRedis(async (redis) => (await readSchedulerEvents(redis, this.keys, 10_000)).filter((event) => event.at >= since));
  }

  /** Failed jobs across slots (they stay visible with their error). */
  async failedJobs(): Promise<number> {
    return this.#withRedis((redis) => this.#sumOverSlots(redis, (queue) => queue.getFailedCount()));
  }

  /** Sums `count` over every slot's queue (a BullMQ Queue on the given connection, closed after). */
  async #sumOverSlots(redis: Redis, count: (queue: Queue, slot: string) => Promise<number>): Promise<number> {
    let total = 0;
    for (const slot of await redis.zrange(this.keys.slots, '0', '-1')) {
      const queue = new Queue(this.keys.queueName(slot), { connection: redis, prefix: this.keys.bullPrefix });
      try {
        total += await count(queue, slot);
      } finally {
        await queue.close();
      }
    }
    return total;
  }

  async #withRedis<T>(use: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = new Redis((this.#info as StackInfo).redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on('error', () => {});
    await redis.connect();
    try {
      return await use(redis);
    } finally {
      redis.disconnect();
    }
  }

  s3Client() {
    return createS3Client((this.#info as StackInfo).s3);
  }

  /** Stops the gateway (no new packets), then the workers (each finishes its job and flushes its latency records); the stores stay up. */
  async stopProcesses(): Promise<void> {
    await this.#vms?.loop?.close();
    await this.#vms?.scaleOut?.close();
    await this.#gateway?.stop();
    await Promise.all([...this.workers.map((worker) => worker.stop()), this.#vms?.driver?.close()]);
    await this.#vms?.clock?.close();
    this.#vms?.redis.disconnect();
    this.#vms = null;
  }

  /** The local VMs' driver (with `vms`), e.g. to find a VM's cgroup. */
  get vmDriver(): LocalVmDriver | null {
    return this.#vms?.driver ?? null;
  }

  /** Stops the gateway first (no new packets), then workers (they finish their job), then the stores. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.stopProcesses();
      await this.#s3?.stop();
      await this.#redis?.close();
    })();
    return this.#closing;
  }
}
