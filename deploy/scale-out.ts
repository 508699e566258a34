/**
 * Scale-out through a deploy driver. Placement runs in the gateways, the driver in the process that
 * owns the VMs (`ecgfaas deploy`, or the embedded stack), so they meet in Redis:
 *
 * 1. A placement that needs a new VM (policy `onNoCapacity: scale-out`) is made only while a driver
 *    heartbeats in `keys.drivers`. It records the VM as pending (`keys.scaleOutPending`: name, host,
 *    vCPUs, memory, the worker id it will have) and assigns the monitor to that worker's slot at
 *    once: its packets wait in the slot's queue, durably, until the worker consumes it. The
 *    inventory counts a pending VM as running, so the next monitors fill it before another is asked for.
 * 2. The driver's ScaleOutService, polling every second, creates and starts each pending VM on its
 *    host (the worker id is the driver's naming: `<vm>-w1`), then removes the entry: from then on
 *    the worker's heartbeats stand for it.
 * 3. A VM the driver cannot make (no resources, a name in use) is an event with the error; its slot
 *    is marked stale, so a live worker adopts it as after a crash and the waiting packets run there.
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisKeys } from '../queue/keys.js';
import { appendSchedulerEvents } from '../scheduler/events.js';
import { pendingVms } from '../scheduler/inventory.js';
import type { DeployDriver } from './vms.js';

export interface ScaleOutServiceOptions {
  redis: Redis;
  keys: RedisKeys;
  driver: DeployDriver;
  logger: Logger;
  /** Redis-clock now (ms). */
  now: () => number;
  /** The host this driver makes VMs on (default: this machine's name, as the local driver's workers report it). */
  host?: string;
  /**
   * The hypervisor of the guests this driver makes (libvirt): it serves only requests planned for it,
   * so a KVM and a Xen deploy on one host each make their own. None (local VMs): any request.
   */
  hypervisor?: string;
  intervalMs?: number;
}

export class ScaleOutService {
  readonly #o: ScaleOutServiceOptions;
  readonly #id: string;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;

  constructor(options: ScaleOutServiceOptions) {
    this.#o = options;
    this.#id = `${options.driver.kind}@${options.host ?? hostname()}-${process.pid}`;
  }

  async start(): Promise<void> {
    await this.#heartbeat();
    await this.#pass();
    this.#timer = setInterval(() => {
      // The heartbeat goes on while a pass makes a VM: a guest may take minutes to boot.
      this.#heartbeat().catch((error: Error) => this.#o.logger.warn({ err: error.message }, 'scale-out heartbeat failed'));
      this.#running ??= this.#pass().catch((error: Error) => this.#o.logger.warn({ err: error.message }, 'scale-out pass failed')).finally(() => {
        this.#running = null;
      });
    }, this.#o.intervalMs ?? 1000);
    this.#timer.unref();
  }

  async #heartbeat(): Promise<void> {
    await this.#o.redis.zadd(this.#o.keys.drivers, Math.round(this.#o.now()), this.#id);
  }

  async #pass(): Promise<void> {
    const { redis, keys, driver, logger } = this.#o;
    const host = this.#o.host ?? hostname();
    for (const pending of await pendingVms(redis, keys)) {
      if (pending.host !== host) continue;
      if (this.#o.hypervisor !== undefined && pending.hypervisor !== undefined && pending.hypervisor !== this.#o.hypervisor) continue;
      try {
        await driver.create({ name: pending.name, vcpus: pending.vcpus, memoryMb: pending.memoryMb, workers: 1 });
        const record = await driver.start(pending.name);
        const worker = record.workers[0]?.workerId;
        if (worker !== pending.worker) throw new Error(`the driver named its worker ${worker ?? 'nothing'}, not ${pending.worker}`);
        await redis.hdel(keys.scaleOutPending, pending.name);
        logger.info({ vm: pending.name }, 'scaled out');
        await appendSchedulerEvents(redis, keys, [{
          at: Math.round(this.#o.now()), type: 'vm-scaled-out', vm: pending.name,
          reason: `${pending.reason}; up ${((this.#o.now() - pending.requestedAt) / 1000).toFixed(1)} s after the request`,
        }]);
      } catch (error) {
        // Its monitors' packets must not wait for a worker that will never come: a live worker adopts the slot.
        await redis.multi().hdel(keys.scaleOutPending, pending.name).zadd(keys.slots, 0, pending.worker).exec();
        logger.error({ vm: pending.name, err: (error as Error).message }, 'scale-out failed');
        await appendSchedulerEvents(redis, keys, [{
          at: Math.round(this.#o.now()), type: 'scale-out-failed', vm: pending.name,
          reason: `${(error as Error).message}; its slot ${pending.worker} is left for a live worker to adopt`,
        }]);
      }
    }
  }

  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
    await this.#o.redis.zrem(this.#o.keys.drivers, this.#id).catch(() => 0);
  }
}
