/**
 * Moving a placed monitor to another slot (worker queue) with no packet lost, run twice or out of
 * order. A monitor's packets sit in its slot's queue among other monitors' packets, so a move is a
 * handover in four steps:
 *
 * 1. Under the placement lock: the assignment now names the new slot, and a move record says which
 *    slot the monitor leaves (`keys.move`).
 * 2. Every gateway is told (pub/sub, `keys.routesChannel`); each forgets the route, waits for its
 *    flushes that may have used the old one to end, and acknowledges. From then on no packet of the
 *    monitor can reach the old queue. Waiting is bounded: a gateway that never answers is dead or
 *    cut off from Redis (and a packet that still reaches the old slot is forwarded, below).
 * 3. A `handover` job is queued on the old slot, behind every packet routed there. Its worker runs
 *    those, then, at the mark, drops the monitor's warm state (all of it is in Redis: checkpoint and
 *    replay log) and deletes the move record in its fenced commit.
 * 4. Meanwhile the new slot parks the monitor's packets in Redis (`keys.park`) instead of running
 *    them; once the record is gone it restores the state and runs the parked packets first.
 *
 * The price: the monitor's packets wait until the old slot has worked through what it had queued,
 * which is long exactly when a slot is overloaded. Moving early (interference detection) keeps it
 * short. A worker that dies mid-handover is replaced as in any failover: its slot's adopter runs
 * the handover job.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { HANDOVER_JOB, type HandoverJobData } from '../queue/envelope.js';
import type { RedisKeys } from '../queue/keys.js';
import { appendSchedulerEvents, type SchedulerEvent } from './events.js';
import { DECISION_TTL_SECONDS, withPlacementLock, type StoredDecision } from './live.js';
import type { Decision } from './placement.js';

/** Published on `keys.routesChannel`: these monitors' routes changed (null: all of them). */
export interface RouteChange {
  id: string;
  monitors: string[] | null;
}

/** A move record (`keys.move`), while the handover is in progress. */
export interface MoveRecord {
  id: string;
  monitor: string;
  /** The slot the monitor leaves, and the one it goes to (null: released, placed anew on its next packet). */
  from: string;
  to: string | null;
  reason: string;
  /** Redis-clock ms. */
  at: number;
}

export interface MoveRequest {
  monitor: string;
  /** The slot to move to (a worker's own slot is its id); null releases the monitor. */
  to: string | null;
  reason: string;
  /** For the event: the VMs of the two slots. */
  fromVm?: string | null;
  toVm?: string | null;
  /** Stored for `placement explain`. */
  decision?: Decision;
  /** The event's type (default `monitor-moved`, or `monitor-released` for `to: null`). */
  event?: 'monitor-moved' | 'monitor-released';
  details?: Record<string, unknown>;
}

export interface MoveOutcome {
  monitor: string;
  from: string | null;
  to: string | null;
  /** Whether the handover began; when not, why. */
  moved: boolean;
  skipped?: string;
  moveId?: string;
}

export interface MoveOptions {
  redis: Redis;
  keys: RedisKeys;
  /** Redis-clock now (ms). */
  now: () => number;
  moves: readonly MoveRequest[];
  /** How long to wait for the live gateways' acknowledgements (ms; default 5000). */
  gatewayWaitMs?: number;
  /** A gateway whose heartbeat is older than this is not waited for (ms; default 5000). */
  gatewayLiveMs?: number;
  /** How long a move record may live if its handover never runs (s; default 1 day). */
  recordTtlSeconds?: number;
}

export interface MoveResult {
  outcomes: MoveOutcome[];
  /** Every live gateway acknowledged the route change in time. */
  acknowledged: boolean;
  /** Gateways that did not (each one's stale packets are forwarded by the old slot). */
  silentGateways: string[];
  /** The events recorded (one per move begun). */
  events: SchedulerEvent[];
}

export async function moveMonitors(options: MoveOptions): Promise<MoveResult> {
  const { redis, keys, now } = options;
  const ttl = options.recordTtlSeconds ?? 24 * 3600;
  const changeId = `${Math.round(now()).toString(36)}-${randomBytes(4).toString('hex')}`;
  const events: SchedulerEvent[] = [];
  const started: Array<{ request: MoveRequest; record: MoveRecord }> = [];
  const outcomes = await withPlacementLock(redis, keys, async () => {
    const results: MoveOutcome[] = [];
    for (const [index, request] of options.moves.entries()) {
      const { monitor } = request;
      const [from, pending, parked] = await Promise.all([
        redis.hget(keys.assignments, monitor), redis.exists(keys.move(monitor)), redis.llen(keys.park(monitor)),
      ]);
      const skipped = from === null ? 'it is not placed'
        : from === request.to ? 'it is there already'
          : pending === 1 ? 'its previous handover is still in progress'
            : parked > 0 ? 'packets parked by its previous handover have not run yet' : null;
      if (skipped !== null) {
        results.push({ monitor, from, to: request.to, moved: false, skipped });
        continue;
      }
      const at = Math.round(now());
      const record: MoveRecord = { id: `${changeId}.${index}`, monitor, from: from as string, to: request.to, reason: request.reason, at };
      const transaction = redis.multi()
        .set(keys.move(monitor), JSON.stringify(record), 'EX', ttl)
        .hincrby(keys.slotLoad, record.from, -1);
      if (request.to === null) {
        transaction.hdel(keys.assignments, monitor);
      } else {
        transaction.hset(keys.assignments, monitor, request.to).hincrby(keys.slotLoad, request.to, 1);
      }
      if (request.decision !== undefined) {
        transaction.set(keys.placement(monitor), JSON.stringify({ decision: request.decision, at } satisfies StoredDecision), 'EX', DECISION_TTL_SECONDS);
      }
      await transaction.exec();
      started.push({ request, record });
      results.push({ monitor, from: record.from, to: request.to, moved: true, moveId: record.id });
      events.push({
        at, type: request.event ?? (request.to === null ? 'monitor-released' : 'monitor-moved'), monitor, reason: request.reason,
        from: record.from, to: request.to, fromVm: request.fromVm ?? null, toVm: request.toVm ?? null, moveId: record.id,
        ...(request.details !== undefined ? { details: request.details } : {}),
      });
    }
    return results;
  });
  if (started.length === 0) return { outcomes, acknowledged: true, silentGateways: [], events };

  await redis.publish(keys.routesChannel, JSON.stringify({ id: changeId, monitors: started.map(({ record }) => record.monitor) } satisfies RouteChange));
  const silentGateways = await waitForGateways(redis, keys, changeId, now, options.gatewayWaitMs ?? 5000, options.gatewayLiveMs ?? 5000);

  // The handover marks, behind every packet a gateway routed to the old slots.
  const queues = new Map<string, Queue>();
  try {
    for (const { record } of started) {
      let queue = queues.get(record.from);
      if (queue === undefined) {
        queue = new Queue(keys.queueName(record.from), { connection: redis, prefix: keys.bullPrefix, defaultJobOptions: { removeOnComplete: true, removeOnFail: { count: 10_000 } } });
        queues.set(record.from, queue);
      }
      await queue.add(HANDOVER_JOB, { m: record.monitor, id: record.id } satisfies HandoverJobData);
    }
  } finally {
    await Promise.all([...queues.values()].map((queue) => queue.close()));
  }
  if (silentGateways.length > 0) for (const event of events) event.details = { ...event.details, silentGateways };
  await appendSchedulerEvents(redis, keys, events);
  return { outcomes, acknowledged: silentGateways.length === 0, silentGateways, events };
}

/** Waits until every live gateway acknowledged the change; returns those that did not in time. */
async function waitForGateways(redis: Redis, keys: RedisKeys, changeId: string, now: () => number, waitMs: number, liveMs: number): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const [live, acked] = await Promise.all([
      redis.zrangebyscore(keys.gateways, Math.round(now() - liveMs), '+inf'),
      redis.smembers(keys.routeAck(changeId)),
    ]);
    const silent = live.filter((gateway) => !acked.includes(gateway));
    if (silent.length === 0 || Date.now() >= deadline) return silent;
    await sleep(10);
  }
}

/** The monitor's handover in progress, or null. */
export async function pendingMove(redis: Redis, keys: RedisKeys, monitorId: string): Promise<MoveRecord | null> {
  const raw = await redis.get(keys.move(monitorId));
  return raw === null ? null : JSON.parse(raw) as MoveRecord;
}
