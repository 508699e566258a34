/**
 * The scheduler's control loop (`ecgfaas scheduler`): every few seconds it applies the policy to the
 * VMs the deploy drivers manage (deploy/vms.ts records, acted on through `vmControl`, so it runs on
 * the host of a local driver's VMs):
 *
 * - idle VMs: a running VM with no function instance for `idleVmAfterS` is paused or shut down as
 *   `idleVm` says (the paper's Table V: idle VMs left running hurt Xen);
 * - a paused VM that placement chose for a new monitor (a `resumed` decision: cheaper than a new VM)
 *   is resumed; the monitor's packets wait in its queue until then, none is lost.
 *
 * Each action is an event with its reason in a Redis stream (`<prefix>:scheduler-events`), for
 * reports and `ecgfaas scheduler --events`.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { listVms, vmControl } from '../deploy/vms.js';
import type { RedisKeys } from '../queue/keys.js';
import { readInventory } from './inventory.js';
import type { Policy } from './policy.js';
import { appendSchedulerEvents, type SchedulerEvent } from './events.js';

export interface SchedulerLoopOptions {
  redis: Redis;
  keys: RedisKeys;
  policy: Policy;
  now: () => number;
  logger: Logger;
  /** Between ticks (ms; default 5000). */
  intervalMs?: number;
  deadAfterMs?: number;
}

export class SchedulerLoop {
  readonly #o: Required<SchedulerLoopOptions>;
  /** When each running VM was first seen without instances (Redis-clock ms). */
  readonly #idleSince = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<unknown> | null = null;

  constructor(options: SchedulerLoopOptions) {
    this.#o = { intervalMs: 5000, deadAfterMs: 15_000, ...options };
  }

  start(): void {
    this.#timer ??= setInterval(() => {
      this.#ticking ??= this.tick()
        .catch((error: Error) => this.#o.logger.warn({ err: error.message }, 'scheduler tick failed'))
        .finally(() => {
          this.#ticking = null;
        });
    }, this.#o.intervalMs);
  }

  /** One pass over the VMs; returns what it did. */
  async tick(): Promise<SchedulerEvent[]> {
    const { redis, keys, policy } = this.#o;
    const now = this.#o.now();
    const [records, inventory] = await Promise.all([listVms(redis, keys), readInventory(redis, keys, { now, deadAfterMs: this.#o.deadAfterMs })]);
    const vmOfWorker = new Map(inventory.workers.map((worker) => [worker.id, worker.vm]));
    const instances = new Map<string, number>();
    for (const instance of inventory.instances) {
      const vm = vmOfWorker.get(instance.worker);
      if (vm !== undefined) instances.set(vm, (instances.get(vm) ?? 0) + 1);
    }
    const control = vmControl(redis, keys);
    const events: SchedulerEvent[] = [];
    for (const record of records) {
      const count = instances.get(record.name) ?? 0;
      if (record.state === 'paused' && count > 0) {
        await control.resume(record.name);
        events.push({ at: now, type: 'vm-resumed', vm: record.name, reason: `${count} monitor(s) placed on it while it was paused` });
        continue;
      }
      if (record.state !== 'running' || count > 0) {
        this.#idleSince.delete(record.name);
        continue;
      }
      const since = this.#idleSince.get(record.name) ?? now;
      this.#idleSince.set(record.name, since);
      if (policy.idleVm === 'keep' || now - since < policy.idleVmAfterS * 1000) continue;
      const reason = `no monitors for ${Math.round((now - since) / 1000)} s (idleVm: ${policy.idleVm}, idleVmAfterS: ${policy.idleVmAfterS})`;
      if (policy.idleVm === 'pause') {
        await control.pause(record.name);
        events.push({ at: now, type: 'vm-paused', vm: record.name, reason });
      } else {
        await control.shutdown(record.name);
        events.push({ at: now, type: 'vm-shut-down', vm: record.name, reason });
      }
      this.#idleSince.delete(record.name);
    }
    for (const event of events) this.#o.logger.info(event, 'scheduler event');
    await appendSchedulerEvents(redis, keys, events);
    return events;
  }

  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#ticking;
  }
}
