/**
 * Live placement: a new monitor's slot, chosen by the planner under the policy on the inventory
 * in Redis, written to the assignment table the gateways route by. Used by the gateway on a
 * monitor's first packet and by `ecgfaas monitors add` ahead of time.
 *
 * Gateways place concurrently, so read-plan-write runs under a short lock in Redis: two first
 * packets on two gateways cannot both take a VM's last place. An assignment that exists already
 * (another gateway's, or made ahead of time) is kept. Each decision is stored with the monitor
 * (`ecgfaas placement explain`). A scale-out needs a deploy driver (next); until then a monitor
 * that would need one is refused with that reason.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../queue/keys.js';
import { withScripts } from '../queue/scripts.js';
import { SchedulerError } from './errors.js';
import { liveDrivers, readInventory, type PendingVm } from './inventory.js';
import { plan, type Decision } from './placement.js';
import type { Policy } from './policy.js';

/** How long a placement decision is kept for `explain` (s). */
export const DECISION_TTL_SECONDS = 30 * 24 * 3600;
const LOCK_TTL_MS = 5_000;
const LOCK_WAIT_MS = 3_000;

export interface StoredDecision {
  decision: Decision;
  /** Redis-clock ms. */
  at: number;
}

export interface LivePlacerOptions {
  redis: Redis;
  keys: RedisKeys;
  policy: Policy;
  /** Redis-clock now (ms). */
  now: () => number;
  /** A worker silent this long is dead (ms; default: the policy's workerDeadAfterS). */
  deadAfterMs?: number;
}

export class LivePlacer {
  readonly #o: Required<LivePlacerOptions>;
  readonly #redis: ReturnType<typeof withScripts>;

  constructor(options: LivePlacerOptions) {
    this.#o = { deadAfterMs: options.policy.workerDeadAfterS * 1000, ...options };
    this.#redis = withScripts(options.redis);
  }

  /** The monitor's slot: its assignment if it has one, else a new one by the policy. Throws PLACEMENT_REFUSED with the reason. */
  async place(monitorId: string): Promise<string> {
    const { keys } = this.#o;
    const existing = await this.#redis.hget(keys.assignments, monitorId);
    if (existing !== null) return existing;
    return withPlacementLock(this.#redis, keys, async () => {
      const again = await this.#redis.hget(keys.assignments, monitorId);
      if (again !== null) return again;
      const inventory = await readInventory(this.#redis, keys, { now: this.#o.now(), deadAfterMs: this.#o.deadAfterMs });
      // A new function is expected to cost what the running ones measure (the policy's default before any is measured).
      const measured = inventory.instances.map((instance) => instance.costMsPerPacket).filter((cost): cost is number => cost !== undefined);
      const cost = measured.length > 0 ? measured.reduce((a, b) => a + b, 0) / measured.length : undefined;
      const result = plan(inventory, this.#o.policy, [{ monitor: monitorId, ...(cost !== undefined ? { costMsPerPacket: cost } : {}) }]);
      const decision = result.decisions[0] as Decision;
      const stored: StoredDecision = { decision, at: Math.round(this.#o.now()) };
      if (decision.how === 'scaled-out' && decision.worker !== null && decision.vm !== null && (await liveDrivers(this.#redis, keys, this.#o.now())).length > 0) {
        // A deploy driver makes the VM (deploy/scale-out.ts); the monitor's packets wait in its worker's slot.
        const host = result.scaleOut.find((vm) => vm.vm === decision.vm)?.host ?? null;
        const { policy } = this.#o;
        const pending: PendingVm = {
          name: decision.vm, host: host ?? '', vcpus: policy.scaleOut.vcpus, memoryMb: policy.scaleOut.memoryMb, hypervisor: policy.scaleOut.hypervisor, worker: decision.worker,
          requestedAt: Math.round(this.#o.now()), reason: `${monitorId}: ${decision.reason}`,
        };
        await this.#redis.multi()
          .hset(keys.scaleOutPending, pending.name, JSON.stringify(pending))
          .hset(keys.assignments, monitorId, decision.worker)
          .hincrby(keys.slotLoad, decision.worker, 1)
          .set(keys.placement(monitorId), JSON.stringify(stored), 'EX', DECISION_TTL_SECONDS)
          .exec();
        return decision.worker;
      }
      if (decision.how === 'scaled-out' || decision.worker === null) {
        const reason = decision.how === 'scaled-out'
          ? `it needs a new VM (${decision.reason}), and no deploy driver is running to make one (ecgfaas deploy serves scale-out requests)`
          : decision.reason;
        await this.#redis.set(keys.placement(monitorId), JSON.stringify({ ...stored, decision: { ...decision, vm: null, worker: null, how: 'refused', reason } }), 'EX', DECISION_TTL_SECONDS);
        throw new SchedulerError('PLACEMENT_REFUSED', `monitor ${monitorId} was not placed: ${reason}`);
      }
      // The worker consumes the slot it was born with (its id).
      const slot = decision.worker;
      await this.#redis.multi()
        .hset(keys.assignments, monitorId, slot)
        .hincrby(keys.slotLoad, slot, 1)
        .set(keys.placement(monitorId), JSON.stringify(stored), 'EX', DECISION_TTL_SECONDS)
        .exec();
      return slot;
    });
  }

}

/**
 * Runs `work` holding the placement lock: gateways placing first packets, `monitors add` and the
 * scheduler's moves read the inventory and write assignments one at a time.
 */
export async function withPlacementLock<T>(redis: Redis, keys: RedisKeys, work: () => Promise<T>): Promise<T> {
  const scripted = withScripts(redis);
  const token = randomBytes(8).toString('hex');
  const deadline = Date.now() + LOCK_WAIT_MS;
  while ((await scripted.set(keys.placementLock, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
    if (Date.now() > deadline) throw new SchedulerError('PLACEMENT_BUSY', 'another placement held the lock for too long; retry');
    await sleep(5 + Math.random() * 10);
  }
  try {
    return await work();
  } finally {
    await scripted.release(keys.placementLock, token).catch(() => 0);
  }
}

/** The stored decision for a monitor, or null. */
export async function storedDecision(redis: Redis, keys: RedisKeys, monitorId: string): Promise<StoredDecision | null> {
  const raw = await redis.get(keys.placement(monitorId));
  return raw === null ? null : JSON.parse(raw) as StoredDecision;
}

/**
 * Assigns monitors to chosen workers ahead of their first packet: a fixed placement (an experiment
 * row places its monitors itself, as the paper did). Each decision is stored (`placement explain`)
 * with the caller's reason. A monitor assigned already is refused (PLACEMENT_EXISTS): pinning
 * never moves a monitor that may have packets in flight.
 */
export async function pinMonitors(
  redis: Redis, keys: RedisKeys, pins: ReadonlyArray<{ monitor: string; worker: string; vm: string; reason: string }>, now: number,
): Promise<void> {
  await withPlacementLock(redis, keys, async () => {
    const existing = pins.length === 0 ? [] : await redis.hmget(keys.assignments, ...pins.map((pin) => pin.monitor));
    const taken = pins.filter((_, index) => existing[index] !== null);
    if (taken.length > 0) throw new SchedulerError('PLACEMENT_EXISTS', `already placed: ${taken.map((pin) => pin.monitor).join(', ')}`);
    const multi = redis.multi();
    for (const pin of pins) {
      const stored: StoredDecision = {
        decision: { monitor: pin.monitor, vm: pin.vm, worker: pin.worker, how: 'placed', reason: pin.reason, excluded: [], eligible: 1 },
        at: Math.round(now),
      };
      multi.hset(keys.assignments, pin.monitor, pin.worker).hincrby(keys.slotLoad, pin.worker, 1)
        .set(keys.placement(pin.monitor), JSON.stringify(stored), 'EX', DECISION_TTL_SECONDS);
    }
    await multi.exec();
  });
}
