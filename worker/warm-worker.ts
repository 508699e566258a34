/**
 * The warm worker (`ecgfaas worker`): loads the model once, owns a queue slot (and adopts the slots
 * of dead workers), keeps one warm function per monitor, and for each queue job (a batch of packets)
 * runs the function, writes episode objects to S3, then commits results, latency records,
 * checkpoints and replay-log entries and publishes the results in ONE fenced Lua call. Everything a
 * packet causes is keyed by its invocation id or by its position in the monitor's stream, so a job
 * retried after a crash produces each effect once ("effectively once").
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Queue, Worker, WaitingError, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import type { Logger } from 'pino';
import { decodePacket, toEcgPacket } from '../contracts/packet-binary.js';
import type { EcgPacket } from '../contracts/packet.js';
import { EcgFaasError } from '../contracts/errors.js';
import type { DeployDriver, HypervisorKind, InvocationResult, LatencyRecord } from '../contracts/invocation.js';
import { FunctionError, type PacketResult } from '../functions/ecg-function/index.js';
import { BeatClassifier } from '../functions/model/index.js';
import { decodeBatch, encodeBatch, HANDOVER_JOB, RESUME_JOB, type BatchJobData, type HandoverJobData, type PacketBatch, type PacketEnvelope } from '../queue/envelope.js';
import { RedisKeys } from '../queue/keys.js';
import { RedisClock } from '../queue/clock.js';
import { connectRedis } from '../queue/connect.js';
import { withScripts } from '../queue/scripts.js';
import type { EpisodeStore, S3Settings } from '../storage/index.js';
import { latencyStreamKey, encodeLatencyEntry, LatencyPersister } from '../storage/index.js';
import type { S3Client } from '@aws-sdk/client-s3';
import { encodePlacementFields } from '../scheduler/inventory.js';
import { appendSchedulerEvents } from '../scheduler/events.js';
import { collectHostFacts, CpuSampler, type HostFacts } from './facts/index.js';
import { EpisodeOutbox, encodeOutboxEntry } from './episode-outbox.js';
import { StorageThread, type SlotStorer } from './storage-client.js';
import { CpuWork } from './cpu-work.js';
import { HealthCounters } from './health.js';
import { encodeCheckpoint, encodeParked, FunctionStates, type Acquired, type ParkedPacket, type WarmFunction } from './function-states.js';

export interface WarmWorkerOptions {
  redisUrl: string;
  keyPrefix?: string;
  modelPath: string;
  /**
   * Where the slots' episode outboxes are stored from: `thread` (what `ecgfaas worker` uses) runs
   * them on a storage thread of their own with these S3 settings (worker/storage-thread.ts), so S3
   * bursts never hold up jobs; `inline` runs them on this event loop with the given store.
   */
  storage: { kind: 'thread'; s3: S3Settings; logLevel?: string; roundMs?: number } | { kind: 'inline'; episodes: EpisodeStore; roundMs?: number };
  /** For the latency persister (records → NDJSON segments in the bucket). */
  s3: { client: S3Client; bucket: string };
  logger: Logger;
  workerId?: string;
  driver?: DeployDriver;
  /** Physical host, when the deploy driver knows it (a guest cannot see it). */
  host?: string | null;
  /** The VM this worker runs in, as the deploy driver named it (default: the hostname, which in a guest is the VM's). */
  vm?: string | null;
  /** CPU burnt per packet, to reproduce the paper's ~305 ms classifier and collocation effects. */
  extraComputeMs?: number;
  /**
   * The same CPU work as an exact loop count, calibrated elsewhere (an experiment calibrates once on
   * the host): every worker, in a guest or not, then does the same work, so a slower guest takes
   * longer, where calibrating in each worker (extraComputeMs alone) would hide that. Wins over
   * extraComputeMs for the work done; extraComputeMs then only labels the records.
   */
  extraComputeIterations?: number;
  /** Store abnormal episodes (default true); false runs the function alone, as the paper's runs without disk writes (its Tables I-II). */
  storeEpisodes?: boolean;
  checkpointEvery?: number;
  resultTtlSeconds?: number;
  /** Checkpoints and replay logs of silent monitors expire after this long. */
  stateTtlSeconds?: number;
  heartbeatMs?: number;
  leaseMs?: number;
  /** Adopt the slots of dead workers (default true). */
  adoptOrphans?: boolean;
  /** Jobs wait before committing while a slot's outbox holds more episode writes than this (default 20,000). */
  maxOutbox?: number;
  /** On close, keep storing the outbox for up to this long (default 30 s). */
  outboxDrainMs?: number;
  /** A packet served later than this missed its deadline, in the health the scheduler reads (default 1000 ms). */
  deadlineMs?: number;
  /**
   * Called once when a deploy driver asks this worker to stop (`requestWorkerStop`: a field in its
   * Redis record, read with each heartbeat), for drivers that cannot signal it (it runs in a guest).
   */
  onStopRequested?: () => void;
}

/** Packet errors the function raises before touching its state: the packet is answered, not retried. */
const PACKET_ERRORS = new Set(['FN_SAMPLE_RATE', 'FN_PACKET_LENGTH', 'FN_BAD_GAIN', 'FN_LEADS_CHANGED', 'FN_BAD_SAMPLE']);
const packr = new Packr({ useRecords: false });

type ScriptedRedis = ReturnType<typeof withScripts>;

/** One packet between compute and commit. */
interface Computed {
  envelope: PacketEnvelope;
  /** Of the queue job the packet came in (an orphaned job's packets keep their own). */
  enqueuedAt: number;
  batchSize: number;
  warm: WarmFunction;
  packet: EcgPacket;
  result: PacketResult | null;
  status: string;
  errorCode: string | null;
  startedAt: number;
  computedAt: number;
  /** The checkpoint or replay-log op of this packet (empty when the state did not change). */
  stateOp: Array<string | Buffer | number>;
  /** It waited in the park for its monitor's handover: its latency is the move's, not this worker's. */
  fromPark: boolean;
}

export interface WorkerStats {
  jobs: number;
  packets: number;
  processed: number;
  duplicates: number;
  errors: number;
  fencedOff: number;
  /** Packets re-queued on the slot their monitor had moved to. */
  forwarded: number;
  /** Packets parked while their monitor's handover to this worker was in progress. */
  parked: number;
}

export class WarmWorker {
  readonly id: string;
  readonly #options: Required<Omit<WarmWorkerOptions, 'host' | 'vm' | 'workerId'>> & { host: string | null; vm: string | null };
  /**
   * Packets since the last heartbeat and the process's CPU time then, for the smoothed cost per
   * packet the scheduler reads (#costMsPerPacket): the cost per packet is CPU
   * time (all threads: inference, storage), not wall time, which a starved or throttled VM stretches.
   */
  #costWindow = { packets: 0, cpu: process.cpuUsage() };
  #costMsPerPacket: number | null = null;
  #health: HealthCounters | null = null;
  #stopRequested = false;
  readonly #work = new CpuWork();
  readonly #keys: RedisKeys;
  #redis: ScriptedRedis | null = null;
  #clock: RedisClock | null = null;
  #classifier: BeatClassifier | null = null;
  #states: FunctionStates | null = null;
  #cpu: CpuSampler | null = null;
  #persister: LatencyPersister | null = null;
  #facts: HostFacts | null = null;
  readonly #consumers = new Map<string, { worker: Worker; connection: Redis }>();
  readonly #outboxes = new Map<string, SlotStorer>();
  /** Other slots' queues, for forwarding packets and waking a monitor's new slot after a handover. */
  readonly #queues = new Map<string, Queue>();
  #storageThread: StorageThread | null = null;
  /** Orphaned jobs (`slot/jobId`) whose packets this worker has committed; BullMQ still holds them as active. */
  readonly #handledOrphans = new Set<string>();
  /**
   * Slots whose next job must first look for orphaned active jobs: a slot just taken (adopted from
   * a dead worker, or our own after a restart), or one whose connection to Redis dropped (a fetch
   * reply may have been lost). Otherwise no orphan can exist, and the check would cost a round trip
   * per job.
   */
  readonly #orphanCheck = new Set<string>();
  #heartbeat: NodeJS.Timeout | null = null;
  #beating: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  readonly stats: WorkerStats = { jobs: 0, packets: 0, processed: 0, duplicates: 0, errors: 0, fencedOff: 0, forwarded: 0, parked: 0 };

  constructor(options: WarmWorkerOptions) {
    this.id = options.workerId ?? `${hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 32)}-${process.pid}-${randomBytes(3).toString('hex')}`;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(this.id)) throw new RangeError(`worker id "${this.id}" must be 1-64 of [A-Za-z0-9_-]`);
    this.#options = {
      keyPrefix: 'ecgfaas', driver: 'local', extraComputeMs: 0, extraComputeIterations: 0, storeEpisodes: true, checkpointEvery: 30, resultTtlSeconds: 300,
      stateTtlSeconds: 24 * 3600, heartbeatMs: 2000, leaseMs: 10_000, adoptOrphans: true, maxOutbox: 20_000, outboxDrainMs: 30_000, deadlineMs: 1000, onStopRequested: () => {}, ...options, host: options.host ?? null, vm: options.vm ?? null,
    };
    this.#keys = new RedisKeys(this.#options.keyPrefix);
  }

  /** The slot this worker was born with (its own queue). */
  get slot(): string {
    return this.id;
  }

  get facts(): HostFacts | null {
    return this.#facts;
  }

  ownedSlots(): string[] {
    return [...this.#consumers.keys()];
  }

  async start(): Promise<void> {
    const { logger } = this.#options;
    this.#redis = withScripts(new Redis(this.#options.redisUrl, { maxRetriesPerRequest: null, lazyConnect: true }));
    this.#redis.on('error', (error) => logger.warn({ err: error.message }, 'redis connection error'));
    this.#redis.on('close', () => {
      for (const slot of this.#consumers.keys()) this.#orphanCheck.add(slot);
    });
    await connectRedis(this.#redis, this.#options.redisUrl).catch((error: unknown) => {
      // Nothing to hand back or flush on close: forget the client (its commands would wait forever).
      this.#redis = null;
      throw error;
    });
    // Refreshed by the heartbeat (#beat), not by a timer of its own as well.
    this.#clock = new RedisClock(this.#redis, { refreshMs: 0 });
    await this.#clock.start();
    this.#classifier = await BeatClassifier.load(this.#options.modelPath);
    const clock = this.#clock;
    this.#states = new FunctionStates({
      redis: this.#redis, keys: this.#keys, classifier: this.#classifier,
      newStreamId: () => Math.round(clock.now()).toString(36),
    });
    this.#facts = await collectHostFacts();
    this.#health = new HealthCounters(this.#options.deadlineMs, this.#work);
    if (this.#options.extraComputeMs > 0 && this.#options.extraComputeIterations === 0) this.#options.logger.info({ iterationsPerMs: Math.round(this.#work.iterationsPerMs) }, 'extra compute calibrated');
    this.#cpu = new CpuSampler({ intervalMs: 1000 });
    this.#cpu.start();
    const { storage } = this.#options;
    if (storage.kind === 'thread') {
      this.#storageThread = new StorageThread({
        redisUrl: this.#options.redisUrl, keyPrefix: this.#options.keyPrefix, owner: this.id, s3: storage.s3,
        logLevel: storage.logLevel ?? logger.level, ...(storage.roundMs !== undefined ? { roundMs: storage.roundMs } : {}),
      }, logger);
      await this.#storageThread.start();
    }
    this.#persister = new LatencyPersister({
      redis: this.#redis, s3: this.#options.s3.client, bucket: this.#options.s3.bucket, prefix: this.#options.keyPrefix, consumer: this.id,
    });
    await this.#persister.start();
    if ((await this.#redis.lease(this.#keys.slotLease(this.slot), this.#keys.slots, this.id, this.#options.leaseMs, this.slot, 'own')) !== 1) {
      throw new EcgFaasError('WORKER_SLOT_TAKEN', `slot ${this.slot} is held by another worker`);
    }
    // A stop request left for an earlier worker of this id (a VM name reused) is not for this one.
    await this.#redis.hdel(this.#keys.worker(this.id), 'stop');
    this.#consume(this.slot);
    await this.#beat();
    this.#heartbeat = setInterval(() => {
      this.#beating ??= this.#beat().catch((error: Error) => logger.warn({ err: error.message }, 'heartbeat failed')).finally(() => {
        this.#beating = null;
      });
    }, this.#options.heartbeatMs);
    this.#heartbeat.unref();
    logger.info({ worker: this.id, hypervisor: this.#facts.hypervisor.kind, model: this.#classifier.info.name }, 'worker ready');
  }

  #consume(slot: string): void {
    if (this.#consumers.has(slot)) return;
    const connection = new Redis(this.#options.redisUrl, { maxRetriesPerRequest: null });
    connection.on('error', () => {});
    this.#orphanCheck.add(slot);
    connection.on('close', () => this.#orphanCheck.add(slot));
    const worker = new Worker<BatchJobData>(this.#keys.queueName(slot), (job, token) => this.#processJob(slot, job, token), {
      connection,
      prefix: this.#keys.bullPrefix,
      concurrency: 1,
      lockDuration: this.#options.leaseMs,
      stalledInterval: Math.max(1000, Math.floor(this.#options.leaseMs / 2)),
      maxStalledCount: 1_000_000,
      removeOnComplete: { count: 0 },
    });
    this.#outboxes.set(slot, this.#openStorer(slot));
    worker.on('error', (error) => this.#options.logger.warn({ err: error.message, slot }, 'queue consumer error'));
    worker.on('failed', (job, error) => this.#options.logger.error({ slot, job: job?.id, code: (error as { code?: string }).code, err: error.message }, 'queue job failed'));
    this.#consumers.set(slot, { worker, connection });
  }

  #openStorer(slot: string): SlotStorer {
    const { storage } = this.#options;
    if (this.#storageThread !== null) return this.#storageThread.open(slot, this.#redis as ScriptedRedis, this.#keys);
    if (storage.kind !== 'inline') throw new Error('the storage thread is not running');
    const outbox = new EpisodeOutbox({
      redis: this.#redis as ScriptedRedis, keys: this.#keys, slot, owner: this.id, episodes: storage.episodes,
      latencyStream: latencyStreamKey(this.#options.keyPrefix), now: () => (this.#clock as RedisClock).now(), logger: this.#options.logger,
      ...(storage.roundMs !== undefined ? { roundMs: storage.roundMs } : {}),
    });
    outbox.start();
    return outbox;
  }

  async #stopConsuming(slot: string): Promise<void> {
    const consumer = this.#consumers.get(slot);
    if (consumer === undefined) return;
    this.#consumers.delete(slot);
    this.#states?.drop((warm) => warm.slot === slot);
    const outbox = this.#outboxes.get(slot);
    this.#outboxes.delete(slot);
    await outbox?.close();
    await consumer.worker.close(true).catch(() => {});
    consumer.connection.disconnect();
  }

  /** Slots being let go in the background; close() waits for them. */
  readonly #stopping = new Set<Promise<void>>();

  #track(stopping: Promise<void>): void {
    const tracked = stopping.catch((error: Error) => this.#options.logger.warn({ err: error.message }, 'stopping a slot failed')).finally(() => this.#stopping.delete(tracked));
    this.#stopping.add(tracked);
  }

  async #beat(): Promise<void> {
    const redis = this.#redis;
    if (redis === null || this.#closing !== null) return;
    await this.#clock?.estimate().catch(() => {});
    const keys = this.#keys;
    for (const slot of [...this.#consumers.keys()]) {
      const held = await redis.lease(keys.slotLease(slot), keys.slots, this.id, this.#options.leaseMs, slot, 'own');
      if (held !== 1) {
        this.#options.logger.warn({ slot }, 'lost the lease of a slot; another worker took it over');
        // Not awaited: draining its outbox may take a while, and this heartbeat must go out now
        // (its commits are fenced off already). close() waits for it.
        this.#track(this.#stopConsuming(slot));
      }
    }
    const nowMs = this.#clock?.now() ?? Date.now();
    // A slot adopted from a worker that is alive again (it was paused, frozen or cut off, not dead):
    // hand it back between jobs; the worker takes it below on its own next heartbeat.
    for (const slot of [...this.#consumers.keys()]) {
      if (slot === this.id) continue;
      const heartbeat = await redis.zscore(keys.workers, slot);
      if (heartbeat !== null && Number(heartbeat) >= nowMs - 2 * this.#options.heartbeatMs) {
        this.#options.logger.info({ slot }, 'handing an adopted slot back to its worker, alive again');
        await this.#stopConsuming(slot);
        await redis.release(keys.slotLease(slot), this.id);
      }
    }
    // Our own slot, taken over while we were away: take it back once its adopter lets go.
    if (!this.#consumers.has(this.slot)
      && (await redis.lease(keys.slotLease(this.slot), keys.slots, this.id, this.#options.leaseMs, this.slot, 'own')) === 1) {
      this.#options.logger.info({ slot: this.slot }, 'took its own slot back');
      this.#consume(this.slot);
    }
    if (this.#options.adoptOrphans) {
      const staleBefore = Math.round((this.#clock?.now() ?? Date.now()) - this.#options.leaseMs * 1.5);
      const stale = await redis.zrangebyscore(keys.slots, '-inf', staleBefore);
      for (const slot of stale) {
        if (this.#consumers.has(slot)) continue;
        if ((await redis.lease(keys.slotLease(slot), keys.slots, this.id, this.#options.leaseMs, slot, 'adopt')) === 1) {
          this.#options.logger.info({ slot }, 'adopted the slot of a dead worker');
          this.#consume(slot);
        }
      }
    }
    const now = Math.round(this.#clock?.now() ?? Date.now());
    const ttl = Math.ceil((this.#options.heartbeatMs * 5) / 1000);
    if (this.#costWindow.packets > 0) {
      const used = process.cpuUsage(this.#costWindow.cpu);
      const mean = (used.user + used.system) / 1000 / this.#costWindow.packets;
      this.#costMsPerPacket = this.#costMsPerPacket === null ? mean : 0.7 * this.#costMsPerPacket + 0.3 * mean;
      this.#costWindow = { packets: 0, cpu: process.cpuUsage() };
    } else {
      this.#costWindow.cpu = process.cpuUsage();
    }
    const facts = this.#facts as HostFacts;
    this.#health?.probe();
    await redis.multi()
      .hset(keys.worker(this.id), {
        facts: JSON.stringify(this.#facts), driver: this.#options.driver, heartbeatAt: String(now),
        slots: JSON.stringify(this.ownedSlots()), monitors: String(this.#states?.size ?? 0),
        stats: JSON.stringify(this.stats), cpu: JSON.stringify(this.#cpu?.latest() ?? null),
        clock: JSON.stringify({ offsetMs: this.#clock?.offsetMs ?? 0, uncertaintyMs: this.#clock?.uncertaintyMs ?? 0 }),
        health: JSON.stringify(this.#health?.snapshot() ?? null),
        ...encodePlacementFields({
          vm: this.#options.vm ?? facts.hostname, host: this.#options.host ?? facts.hostname,
          vcpus: Math.min(facts.vcpus, facts.cpuQuotaCores ?? Number.POSITIVE_INFINITY), memoryMb: Math.round(facts.memoryBytes / 2 ** 20),
          hypervisor: facts.hypervisor.kind as HypervisorKind, costMsPerPacket: this.#costMsPerPacket === null ? null : Math.round(this.#costMsPerPacket * 1000) / 1000,
        }),
      })
      .expire(keys.worker(this.id), ttl)
      .zadd(keys.workers, now, this.id)
      .hget(keys.worker(this.id), 'stop')
      .exec()
      .then((replies) => {
        if (replies?.at(-1)?.[1] === '1' && !this.#stopRequested) {
          this.#stopRequested = true;
          this.#options.logger.info('a deploy driver asked this worker to stop');
          this.#options.onStopRequested();
        }
      });
  }

  async #processJob(slot: string, job: Job<BatchJobData>, token: string | undefined): Promise<void> {
    const redis = this.#redis as ScriptedRedis;
    const clock = this.#clock as RedisClock;
    const states = this.#states as FunctionStates;
    const control = job.name === HANDOVER_JOB || job.name === RESUME_JOB ? (job.data as unknown as HandoverJobData) : null;
    const batch = control === null ? decodeBatch(job.data) : null;
    this.stats.jobs += 1;
    const touched = new Set<string>();
    try {
      // FIX (ordering after a crash): jobs this queue took before this one and never finished go first.
      const orphans = this.#orphanCheck.delete(slot) ? await this.#orphanedBatches(slot, job.id) : [];
      const queued: Array<ParkedPacket & { fromPark?: boolean }> = [...orphans, ...(batch === null ? [] : [{ id: job.id ?? '', batch }])].flatMap(({ batch: each }) => each.packets.map((envelope) => ({
        envelope, enqueuedAt: each.enqueuedAt, batchSize: each.packets.length,
      })));
      // Handover (scheduler/moves.ts): park, forward, trim and done marks, committed with the job.
      const handoverOps: Array<string | Buffer | number> = [];
      const forwards = new Map<string, ParkedPacket[]>();
      /** Monitors whose packets this job parked: their later packets in it park too, in order. */
      const parkedHere = new Set<string>();
      if (control !== null && job.name === HANDOVER_JOB) {
        // Every packet queued here for the monitor before this mark has run: its state is all in
        // Redis. Let it go; its new slot runs the packets it parked meanwhile, then the rest.
        states.drop((warm) => warm.monitorId === control.m);
        handoverOps.push('H', this.#keys.move(control.m), control.id ?? '');
      } else if (control !== null) {
        const acquired = await states.acquire(control.m, slot);
        if (acquired.kind === 'run' && acquired.parked.length > 0) {
          touched.add(control.m);
          queued.push(...acquired.parked.map((parked) => ({ ...parked, fromPark: true })));
          handoverOps.push('T', this.#keys.park(control.m), acquired.parked.length);
        }
      }
      // 1. Compute, in queue order (a monitor's packets must reach its function in order).
      const done: Computed[] = [];
      for (let index = 0; index < queued.length; index += 1) {
        const { envelope, enqueuedAt, batchSize, fromPark = false } = queued[index] as ParkedPacket & { fromPark?: boolean };
        const startedAt = clock.now();
        const monitorId = envelope.monitorId;
        const acquired: Acquired = parkedHere.has(monitorId) ? { kind: 'park' } : await states.acquire(monitorId, slot);
        if (acquired.kind === 'park') {
          parkedHere.add(monitorId);
          this.stats.parked += 1;
          handoverOps.push('K', this.#keys.park(monitorId), encodeParked({ envelope, enqueuedAt, batchSize }), this.#options.stateTtlSeconds);
          continue;
        }
        if (acquired.kind === 'forward') {
          // Routed here before the monitor moved (a gateway that missed the route change): its slot runs it.
          let list = forwards.get(acquired.slot);
          if (list === undefined) forwards.set(acquired.slot, (list = []));
          list.push({ envelope, enqueuedAt, batchSize });
          continue;
        }
        touched.add(monitorId);
        if (acquired.parked.length > 0) {
          // Its handover has just finished: the packets parked meanwhile are older than this one and run first.
          queued.splice(index, 0, ...acquired.parked.map((parked) => ({ ...parked, fromPark: true })));
          handoverOps.push('T', this.#keys.park(monitorId), acquired.parked.length);
          index -= 1;
          continue;
        }
        const warm = acquired.warm;
        const packet = toEcgPacket(envelope.monitorId, decodePacket(envelope.packet));
        let result: PacketResult | null = null;
        let errorCode: string | null = null;
        try {
          result = await warm.fn.process(packet);
        } catch (error) {
          if (!(error instanceof FunctionError) || !PACKET_ERRORS.has(error.code)) throw error;
          errorCode = error.code;
        }
        this.#burn();
        const computedAt = clock.now();
        this.#costWindow.packets += 1;
        const status = errorCode !== null ? 'error' : (result as PacketResult).status;
        this.stats.packets += 1;
        if (status === 'duplicate') {
          // Seen and committed before (a retried job, or a duplicate that raced past the gateway): no new effects.
          this.stats.duplicates += 1;
          continue;
        }
        if (status === 'error') this.stats.errors += 1;
        else this.stats.processed += 1;
        // The checkpoint decision is taken now, in order; its bytes are the state after this packet.
        let stateOp: Array<string | Buffer | number> = [];
        if (status === 'processed') {
          if (warm.sinceCheckpoint === null || warm.sinceCheckpoint + 1 >= this.#options.checkpointEvery) {
            stateOp = ['C', this.#keys.checkpoint(warm.monitorId), encodeCheckpoint(warm.streamId, warm.fn), this.#options.stateTtlSeconds, this.#keys.replayLog(warm.monitorId)];
            warm.sinceCheckpoint = 0;
          } else {
            stateOp = ['L', this.#keys.replayLog(warm.monitorId), Buffer.from(envelope.packet), this.#options.stateTtlSeconds];
            warm.sinceCheckpoint += 1;
          }
        }
        done.push({ envelope, enqueuedAt, batchSize, warm, packet, result, status, errorCode, startedAt, computedAt, stateOp, fromPark });
      }
      if (done.length === 0 && handoverOps.length === 0) {
        for (const orphan of orphans) this.#handledOrphans.add(`${slot}/${orphan.id}`);
        await this.#forward(forwards);
        return;
      }

      // 2. Commit everything at once, fenced by the slot lease, and publish. Episode writes go to the
      // slot's outbox with their latency records; its storer writes them to S3 (worker/episode-outbox.ts).
      const outbox = this.#outboxes.get(slot);
      await outbox?.backPressure(this.#options.maxOutbox);
      const ops: Array<string | Buffer | number> = [...handoverOps];
      const published: Array<[string, string, string, string]> = [];
      const publishedAt = clock.now();
      let episodeWrites = 0;
      const records: LatencyRecord[] = [];
      for (const item of done) {
        ops.push(...item.stateOp);
        const record = this.#record(item, publishedAt);
        records.push(record);
        const json = JSON.stringify(this.#result(item, record));
        ops.push('R', this.#keys.result(item.envelope.invocationId), json, this.#options.resultTtlSeconds);
        const events = this.#options.storeEpisodes ? item.result?.events ?? [] : [];
        if (item.result !== null && events.length > 0) {
          episodeWrites += 1;
          ops.push('O', this.#keys.outbox(slot), encodeOutboxEntry({
            monitorId: item.envelope.monitorId,
            seq: item.packet.seq,
            ctx: {
              monitorId: item.envelope.monitorId, streamId: item.warm.streamId,
              model: { name: item.warm.fn.model.name, sha256: item.warm.fn.model.sha256 },
              sampleRate: item.packet.sampleRate, clock: { sample: item.result.startSample ?? 0, epochMs: item.packet.sentAt ?? item.envelope.receivedAt },
            },
            input: { events, beats: item.result.beats, gap: item.result.gap },
            record,
          }));
        } else {
          ops.push('X', latencyStreamKey(this.#options.keyPrefix), (encodeLatencyEntry(record)[1] as string));
        }
        published.push([item.envelope.gatewayId, item.envelope.invocationId, item.envelope.monitorId, json]);
      }
      if (published.length > 0) ops.push('P', this.#keys.resultsChannel, packr.pack(published));
      for (const monitorId of new Set(done.map((item) => item.envelope.monitorId))) ops.push('S', this.#keys.lastSeen, monitorId, Math.round(publishedAt));
      const ok = await redis.commit(this.#keys.slotLease(slot), this.id, ...ops);
      if (ok !== 1) {
        // Another worker owns the slot now: put the job back at the head of the queue for it.
        this.stats.fencedOff += 1;
        states.drop((warm) => warm.slot === slot);
        await job.moveToWait(token);
        this.#track(this.#stopConsuming(slot));
        throw new WaitingError();
      }
      for (const orphan of orphans) this.#handledOrphans.add(`${slot}/${orphan.id}`);
      records.forEach((record, index) => {
        if (done[index]?.fromPark) this.#health?.recordParked();
        else this.#health?.record(record.serviceTimeMs, record.queueWaitMs, record.computeMs);
      });
      if (episodeWrites > 0) outbox?.poke();
      await this.#forward(forwards);
      if (control !== null && job.name === HANDOVER_JOB) {
        // Wake the new slot even if the monitor has gone quiet: its parked packets are waiting.
        const next = await redis.hget(this.#keys.assignments, control.m);
        if (next !== null && next !== slot) await this.#queue(next).add(RESUME_JOB, { m: control.m } satisfies HandoverJobData);
        await appendSchedulerEvents(redis, this.#keys, [{
          at: Math.round(clock.now()), type: 'handover-done', monitor: control.m, from: slot, to: next, moveId: control.id ?? '',
          reason: `${this.id} ran the last packet queued for it on ${slot}`,
        }]);
      }
    } catch (error) {
      if (!(error instanceof WaitingError)) {
        // Nothing of this job was committed: forget the in-memory progress so a retry starts from Redis.
        states.drop((warm) => touched.has(warm.monitorId));
        // The job stays active until BullMQ retries it; later jobs must not overtake it.
        this.#orphanCheck.add(slot);
      }
      throw error;
    }
  }

  /** Re-queues packets on the slots they belong to now (after this job's commit: a retry forwards again, and the copies are duplicates). */
  async #forward(forwards: Map<string, ParkedPacket[]>): Promise<void> {
    for (const [target, items] of forwards) {
      this.#options.logger.warn({ slot: target, packets: items.length }, 'forwarding packets of monitors that moved to another slot');
      const enqueuedAt = Math.min(...items.map((item) => item.enqueuedAt));
      await this.#queue(target).add('packets', encodeBatch({ version: 1, enqueuedAt, packets: items.map((item) => item.envelope) }));
      this.stats.forwarded += items.length;
    }
  }

  #queue(slot: string): Queue {
    let queue = this.#queues.get(slot);
    if (queue === undefined) {
      queue = new Queue(this.#keys.queueName(slot), {
        connection: this.#redis as ScriptedRedis, prefix: this.#keys.bullPrefix,
        defaultJobOptions: { removeOnComplete: true, removeOnFail: { count: 10_000 } },
      });
      queue.on('error', (error) => this.#options.logger.warn({ err: error.message, slot }, 'queue error'));
      this.#queues.set(slot, queue);
    }
    return queue;
  }

  /**
   * FIX (ordering after a crash): the jobs of this slot's queue that are active in Redis besides
   * `jobId`, oldest first. With one consumer per slot and concurrency 1, such a job was taken
   * earlier by a consumer that is gone: a SIGKILLed worker whose slot this one adopted, or this
   * worker when the reply of BullMQ's fetch was lost with a Redis restart. BullMQ hands such a job
   * back only after its lock lapses and a stalled check runs, by which time later jobs of the same
   * monitors have run, so its packets came out 'late' (never processed). They are older than
   * `jobId`, so they are processed first, here; when BullMQ retries the job later, its packets are
   * duplicates and change nothing (the commit adds effects only for a packet without a result).
   */
  async #orphanedBatches(slot: string, jobId: string | undefined): Promise<Array<{ id: string; batch: PacketBatch }>> {
    const redis = this.#redis as ScriptedRedis;
    const queueKey = `${this.#keys.bullPrefix}:${this.#keys.queueName(slot)}`;
    // BullMQ moves a job to active by pushing it on the left: the oldest active job is last.
    const active = (await redis.lrange(`${queueKey}:active`, 0, -1)).reverse();
    for (const key of this.#handledOrphans) {
      if (key.startsWith(`${slot}/`) && !active.includes(key.slice(slot.length + 1))) this.#handledOrphans.delete(key);
    }
    const orphans: Array<{ id: string; batch: PacketBatch }> = [];
    for (const id of active) {
      if (id === jobId || this.#handledOrphans.has(`${slot}/${id}`)) continue;
      const data = await redis.hget(`${queueKey}:${id}`, 'data');
      if (data === null) continue; // finished and removed meanwhile
      try {
        orphans.push({ id, batch: decodeBatch(JSON.parse(data) as BatchJobData) });
      } catch {
        // not a packet batch: BullMQ fails it when it runs it
      }
    }
    if (orphans.length > 0) this.#options.logger.warn({ slot, job: jobId, orphans: orphans.map((orphan) => orphan.id) }, 'processing orphaned active jobs first');
    return orphans;
  }

  /** CPU work, like the paper's classifier: a fixed amount of it, not a sleep and not a span of wall time (worker/cpu-work.ts). */
  #burn(): void {
    if (this.#options.extraComputeIterations > 0) this.#work.run(this.#options.extraComputeIterations);
    else this.#work.burn(this.#options.extraComputeMs);
  }

  /** The invocation's latency record; a packet with episode writes gets storedAt from the outbox's storer. */
  #record(item: Computed, publishedAt: number): LatencyRecord {
    const facts = this.#facts as HostFacts;
    const cpu = this.#cpu?.latest() ?? null;
    const { envelope, result, packet, enqueuedAt, batchSize } = item;
    const beats = result?.beats ?? [];
    return {
      runId: envelope.runId,
      invocationId: envelope.invocationId,
      monitorId: envelope.monitorId,
      session: packet.session ?? null,
      seq: packet.seq,
      status: item.status,
      workerId: this.id,
      vm: this.#options.vm ?? facts.hostname,
      host: this.#options.host,
      hypervisor: facts.hypervisor.kind as HypervisorKind,
      driver: this.#options.driver,
      collocated: this.#states?.size ?? 0,
      extraComputeMs: this.#options.extraComputeMs,
      ...(this.#options.extraComputeIterations > 0 ? { extraComputeIterations: this.#options.extraComputeIterations } : {}),
      batchSize,
      beats: beats.length,
      abnormalBeats: beats.filter((beat) => beat.abnormal).length,
      episodeEvents: result?.events.length ?? 0,
      sentAt: packet.sentAt ?? null,
      receivedAt: envelope.receivedAt,
      enqueuedAt,
      startedAt: item.startedAt,
      computedAt: item.computedAt,
      storedAt: item.computedAt,
      finishedAt: item.computedAt,
      publishedAt,
      queueWaitMs: item.startedAt - enqueuedAt,
      computeMs: item.computedAt - item.startedAt,
      storageWriteMs: 0,
      serviceTimeMs: publishedAt - envelope.receivedAt,
      gatewayClock: envelope.gatewayClock,
      workerClock: { offsetMs: this.#clock?.offsetMs ?? 0, uncertaintyMs: this.#clock?.uncertaintyMs ?? 0 },
      cpu: cpu === null ? null : { processPct: cpu.processCpuPct, hostPct: cpu.hostCpuPct, stealPct: cpu.stealPct },
    };
  }

  #result(item: Computed, latency: LatencyRecord): InvocationResult {
    const { envelope, warm, result, packet } = item;
    const episodeIdOf = (fnEpisodeId: string) => storageEpisodeId(warm.monitorId, warm.streamId, fnEpisodeId);
    const episode = result?.episode ?? warm.fn.episode;
    return {
      invocationId: envelope.invocationId,
      monitorId: envelope.monitorId,
      session: packet.session ?? null,
      seq: packet.seq,
      status: item.status,
      ...(item.errorCode !== null ? { error: { code: item.errorCode } } : {}),
      startSample: result?.startSample ?? null,
      endSample: result?.endSample ?? null,
      gap: result?.gap ?? null,
      beats: result?.beats ?? [],
      events: (result?.events ?? []).map((event) => {
        const base = { type: event.type, episodeId: episodeIdOf(event.episodeId) };
        if (event.type === 'start') return { ...base, fromSample: event.fromSample, toSample: event.toSample, triggerSample: event.triggerSample };
        if (event.type === 'continue') return { ...base, fromSample: event.fromSample, toSample: event.toSample };
        return { ...base, endSample: event.endSample, reason: event.reason };
      }),
      episode: { ...episode, episodeId: episode.episodeId === null ? null : episodeIdOf(episode.episodeId) },
      model: { name: warm.fn.model.name, sha256: warm.fn.model.sha256 },
      latency,
    };
  }

  /** Stops taking jobs (the current one finishes and commits), flushes latency records, releases slots. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
      await this.#beating;
      await Promise.all([...this.#stopping]);
      const slots = [...this.#consumers.keys()];
      await Promise.all(slots.map(async (slot) => {
        const consumer = this.#consumers.get(slot);
        await consumer?.worker.close().catch(() => {});
        consumer?.connection.disconnect();
      }));
      this.#consumers.clear();
      // Store what the jobs committed before leaving (an adopter would, but a clean stop should not need one).
      await Promise.all([...this.#outboxes.values()].map((outbox) => outbox.close(this.#options.outboxDrainMs)));
      this.#outboxes.clear();
      await this.#storageThread?.close();
      await Promise.all([...this.#queues.values()].map((queue) => queue.close().catch(() => {})));
      this.#queues.clear();
      await this.#persister?.close().catch((error: Error) => this.#options.logger.warn({ err: error.message }, 'latency flush failed'));
      await this.#cpu?.close();
      if (this.#redis !== null) {
        // Hand the slots back at once so another worker can adopt them without waiting for the lease to lapse.
        for (const slot of slots) await this.#redis.release(this.#keys.slotLease(slot), this.id).catch(() => 0);
        await this.#redis.zrem(this.#keys.workers, this.id).catch(() => 0);
        await this.#clock?.close();
        await this.#redis.quit().catch(() => this.#redis?.disconnect());
      }
      await this.#classifier?.close();
    })();
    return this.#closing;
  }
}

/** The stored episode's id: `<monitor>.<stream>.<first sample>` (storage/episodes). */
export function storageEpisodeId(monitorId: string, streamId: string, fnEpisodeId: string): string {
  const fromSample = fnEpisodeId.slice(fnEpisodeId.lastIndexOf('_') + 1);
  return `${monitorId}.${streamId}.${fromSample}`;
}

