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
 * - silent monitors: one without a packet for `monitorIdleReleaseS` releases its slot;
 * - interference (scheduler/interference.ts, the policy's `interference`): a VM whose packets fare
 *   badly for a few passes in a row is quarantined (placement leaves it out) and its monitors are
 *   moved to VMs the policy allows (scheduler/moves.ts); `verifyAfterS` later the loop compares
 *   their latency where they went with what it was, and says whether the moves helped; the VM
 *   comes back once it is good again (with hysteresis) and `quarantineS` has passed.
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
import { InterferenceDetector, windowOf, type InterferenceSettings, type VmWindow, type WorkerSample } from './interference.js';
import { storedDecision } from './live.js';
import { moveMonitors, type MoveRequest } from './moves.js';
import { plan } from './placement.js';
import type { WorkerHealth } from '../worker/health.js';

/** A check, after moves away from interference, that the moved monitors fare better. */
interface Verification {
  vm: string;
  before: VmWindow;
  monitors: string[];
  /** Workers the monitors went to. */
  toWorkers: Set<string>;
  /** When it was made (Redis-clock ms). */
  createdAt: number;
  /** When every handover of its moves was done (their parked packets run); the after-window starts a little later. */
  settledAt: number | null;
  /** Its workers' samples when the after-window began, and when that was. */
  start: Map<string, WorkerSample> | null;
  startedAt: number;
}

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
  readonly #detector: InterferenceDetector;
  #lastWindows: readonly VmWindow[] = [];
  /** Monitors whose move away was refused once in this quarantine (not repeated every pass). */
  readonly #refusedMoves = new Set<string>();
  readonly #verifications: Verification[] = [];
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<unknown> | null = null;

  constructor(options: SchedulerLoopOptions) {
    this.#o = { intervalMs: 5000, deadAfterMs: options.policy.workerDeadAfterS * 1000, ...options };
    this.#detector = new InterferenceDetector(options.policy.interference);
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
    const moved = [...await this.#releaseSilent(now), ...(policy.interference.enabled ? await this.#interference(now) : [])];
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
    for (const event of events) {
      // Nothing runs in a paused or shut-off VM: its quarantine ends with it (a resumed VM is judged afresh).
      if ((event.type === 'vm-paused' || event.type === 'vm-shut-down') && this.#detector.isQuarantined(event.vm ?? '')) {
        moved.push(...await this.#release(now, event.vm as string, `${event.type === 'vm-paused' ? 'paused' : 'shut down'}: nothing runs in it`, null));
      }
    }
    return [...moved, ...events];
  }

  /**
   * Monitors silent for `monitorIdleReleaseS` give their place back: a handover to nowhere
   * (scheduler/moves.ts), so packets still queued for them run first and a packet that comes later
   * is placed anew. Silent: no packet committed for that long (`keys.lastSeen`), or, for one placed
   * ahead of time, none since its placement.
   */
  async #releaseSilent(now: number): Promise<SchedulerEvent[]> {
    const { redis, keys, policy } = this.#o;
    const [assignments, lastSeen] = await Promise.all([redis.hgetall(keys.assignments), redis.hgetall(keys.lastSeen)]);
    const limitMs = policy.monitorIdleReleaseS * 1000;
    const silent: Array<{ monitor: string; forS: number }> = [];
    for (const monitor of Object.keys(assignments).sort()) {
      let last = lastSeen[monitor] === undefined ? null : Number(lastSeen[monitor]);
      if (last === null) last = (await storedDecision(redis, keys, monitor))?.at ?? null;
      if (last !== null && now - last >= limitMs) silent.push({ monitor, forS: Math.round((now - last) / 1000) });
    }
    if (silent.length === 0) return [];
    const inventory = await readInventory(redis, keys, { now, deadAfterMs: this.#o.deadAfterMs });
    const vmOf = new Map(inventory.workers.map((worker) => [worker.id, worker.vm]));
    const workerOf = new Map(inventory.instances.map((instance) => [instance.monitor, instance.worker]));
    const result = await moveMonitors({
      redis, keys, now: this.#o.now,
      moves: silent.map(({ monitor, forS }) => ({
        monitor, to: null, fromVm: vmOf.get(workerOf.get(monitor) ?? '') ?? null,
        reason: `no packet for ${forS} s (monitorIdleReleaseS: ${policy.monitorIdleReleaseS})`,
      })),
    });
    return result.events;
  }

  /** Detection, quarantine, moves away from quarantined VMs, and checking that the moves helped. */
  async #interference(now: number): Promise<SchedulerEvent[]> {
    const { redis, keys, policy } = this.#o;
    const settings = policy.interference;
    const events: SchedulerEvent[] = [];
    let inventory = await readInventory(redis, keys, { now, deadAfterMs: this.#o.deadAfterMs });
    for (const vm of inventory.vms) if (vm.quarantined !== undefined && !this.#detector.isQuarantined(vm.name)) this.#detector.adopt(vm.name, now);
    const samples = await readWorkerSamples(redis, keys, inventory.workers.filter((worker) => worker.alive), now);
    const windows = this.#detector.windows(samples);
    this.#lastWindows = windows;
    // VMs that monitors were just moved to: their handovers' delayed packets are no interference.
    const vmOfWorker = new Map(inventory.workers.map((worker) => [worker.id, worker.vm]));
    const grace = new Set(this.#verifications.filter((check) => check.start === null)
      .flatMap((check) => [...check.toWorkers].map((worker) => vmOfWorker.get(worker) ?? '')));
    const { detected, cleared } = this.#detector.observe(now, windows, grace);
    for (const { window, reason } of detected) {
      await redis.hset(keys.quarantine, window.vm, JSON.stringify({ since: Math.round(now), reason }));
      events.push({ at: now, type: 'interference-detected', vm: window.vm, reason, details: { window, thresholds: thresholdsOf(settings) } });
      this.#verifications.push({ vm: window.vm, before: window, monitors: [], toWorkers: new Set(), createdAt: now, settledAt: null, start: null, startedAt: 0 });
    }
    for (const { window, reason } of cleared) events.push(...await this.#release(now, window.vm, reason, window));
    await appendSchedulerEvents(redis, keys, events);

    // Monitors still on a quarantined VM go wherever the policy lets them (retried each pass while none may take them).
    if (detected.length > 0) inventory = await readInventory(redis, keys, { now, deadAfterMs: this.#o.deadAfterMs });
    const quarantined = new Set(inventory.vms.filter((vm) => vm.quarantined !== undefined).map((vm) => vm.name));
    const vmOf = new Map(inventory.workers.map((worker) => [worker.id, worker.vm]));
    const leaving = inventory.instances.filter((instance) => quarantined.has(vmOf.get(instance.worker) ?? ''));
    if (leaving.length > 0) {
      const staying = { ...inventory, instances: inventory.instances.filter((instance) => !leaving.includes(instance)) };
      const result = plan(staying, policy, leaving.map((instance) => ({
        monitor: instance.monitor, ...(instance.costMsPerPacket !== undefined ? { costMsPerPacket: instance.costMsPerPacket } : {}),
      })));
      const moves: MoveRequest[] = [];
      for (const decision of result.decisions) {
        const from = leaving.find((instance) => instance.monitor === decision.monitor);
        const fromVm = vmOf.get(from?.worker ?? '') ?? null;
        if (decision.how === 'placed' && decision.worker !== null) {
          moves.push({ monitor: decision.monitor, to: decision.worker, fromVm, toVm: decision.vm, decision, reason: `interference on ${fromVm}: ${inventory.vms.find((vm) => vm.name === fromVm)?.quarantined ?? ''}` });
        } else if (!this.#refusedMoves.has(decision.monitor)) {
          this.#refusedMoves.add(decision.monitor);
          const reason = decision.how === 'refused' ? decision.reason : `it needs ${decision.how === 'resumed' ? 'a paused VM resumed' : 'a new VM'} (${decision.reason}); the control loop moves only to running VMs`;
          events.push({ at: now, type: 'move-refused', monitor: decision.monitor, fromVm, reason: `could not move it away from interference on ${fromVm}: ${reason}` });
        }
      }
      await appendSchedulerEvents(redis, keys, events.filter((event) => event.type === 'move-refused'));
      if (moves.length > 0) {
        const done = await moveMonitors({ redis, keys, now: this.#o.now, moves });
        events.push(...done.events);
        for (const outcome of done.outcomes) {
          if (!outcome.moved) continue;
          this.#refusedMoves.delete(outcome.monitor);
          const request = moves.find((move) => move.monitor === outcome.monitor);
          const check = this.#verifications.find((each) => each.vm === request?.fromVm && each.start === null);
          if (check !== undefined && outcome.to !== null) {
            check.monitors.push(outcome.monitor);
            check.toWorkers.add(outcome.to);
          }
        }
      }
    }

    // Did it help? The VMs the monitors went to, over verifyAfterS from when their handovers were
    // done and the packets delayed by them had run (two passes: heartbeats lag by up to one), against
    // the window that found the interference.
    const checked: SchedulerEvent[] = [];
    const settleMs = 2 * this.#o.intervalMs;
    for (const check of [...this.#verifications]) {
      if (check.monitors.length === 0) {
        if (now - check.createdAt > 3 * settings.verifyAfterS * 1000) this.#verifications.splice(this.#verifications.indexOf(check), 1);
        continue;
      }
      const workersNow = samples.filter((sample) => check.toWorkers.has(sample.worker));
      if (check.start === null) {
        if (check.settledAt === null && !(await handoversPending(redis, keys, check.monitors))) check.settledAt = now;
        if (check.settledAt === null || now - check.settledAt < settleMs) continue;
        check.start = new Map(workersNow.map((sample) => [sample.worker, sample]));
        check.startedAt = now;
        continue;
      }
      if (now - check.startedAt < settings.verifyAfterS * 1000) continue;
      this.#verifications.splice(this.#verifications.indexOf(check), 1);
      const start = check.start;
      const after = windowOf('moved-to', workersNow, (worker) => start.get(worker)?.health ?? undefined);
      const helped = this.#detector.verdict(after).verdict !== 'bad';
      checked.push({
        at: now, type: 'interference-verified', vm: check.vm,
        reason: helped
          ? `moving ${check.monitors.length} monitor(s) off ${check.vm} helped: ${describe(check.before)} before, ${describe(after)} after`
          : `moving ${check.monitors.length} monitor(s) off ${check.vm} did not help: ${describe(after)} after`,
        details: { helped, monitors: check.monitors, before: check.before, after },
      });
    }
    await appendSchedulerEvents(redis, keys, checked);
    events.push(...checked);
    for (const event of events) this.#o.logger.info(event, 'scheduler event');
    return events;
  }

  async #release(now: number, vm: string, reason: string, window: VmWindow | null): Promise<SchedulerEvent[]> {
    await this.#o.redis.hdel(this.#o.keys.quarantine, vm);
    this.#detector.release(vm);
    const event: SchedulerEvent = { at: now, type: 'interference-cleared', vm, reason, ...(window !== null ? { details: { window } } : {}) };
    await appendSchedulerEvents(this.#o.redis, this.#o.keys, [event]);
    return [event];
  }

  /** The windows of the last pass (for `ecgfaas scheduler` output and tests). */
  get lastWindows(): readonly VmWindow[] {
    return this.#lastWindows;
  }

  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#ticking;
  }
}

/** Each live worker's health (from its heartbeat) and the age of the oldest job waiting in its slots. */
export async function readWorkerSamples(redis: Redis, keys: RedisKeys, workers: ReadonlyArray<{ id: string; vm: string }>, now: number): Promise<WorkerSample[]> {
  if (workers.length === 0) return [];
  const fields = await Promise.all(workers.map((worker) => redis.hmget(keys.worker(worker.id), 'health', 'slots')));
  const slotsOf = fields.map(([, slots]) => (slots === null || slots === undefined ? [] : JSON.parse(slots) as string[]));
  const queueKey = (slot: string) => `${keys.bullPrefix}:${keys.queueName(slot)}`;
  // BullMQ pushes new jobs on the left of the wait list: the oldest is the last one.
  const oldest = await Promise.all(slotsOf.map((slots) => Promise.all(slots.map((slot) => redis.lindex(`${queueKey(slot)}:wait`, -1)))));
  const stamps = await Promise.all(slotsOf.map((slots, index) => Promise.all(slots.map((slot, at) => {
    const id = oldest[index]?.[at];
    return id === null || id === undefined ? Promise.resolve(null) : redis.hget(`${queueKey(slot)}:${id}`, 'timestamp');
  }))));
  return workers.map((worker, index) => {
    const raw = fields[index]?.[0];
    const ages = (stamps[index] ?? []).filter((stamp): stamp is string => stamp !== null).map((stamp) => Math.max(0, now - Number(stamp)));
    return { worker: worker.id, vm: worker.vm, health: raw === null || raw === undefined ? null : JSON.parse(raw) as WorkerHealth | null, backlogAgeMs: Math.max(0, ...ages) };
  });
}

/** Whether any of the monitors' handovers is still in progress, or has packets parked. */
async function handoversPending(redis: Redis, keys: RedisKeys, monitors: readonly string[]): Promise<boolean> {
  const pending = await Promise.all(monitors.map(async (monitor) => (await redis.exists(keys.move(monitor))) === 1 || (await redis.llen(keys.park(monitor))) > 0));
  return pending.some(Boolean);
}

function thresholdsOf(settings: InterferenceSettings): Record<string, number> {
  return { missRate: settings.missRate, latencyP95Ms: settings.latencyP95Ms, deadlineMs: settings.deadlineMs, sustainWindows: settings.sustainWindows };
}

function describe(window: VmWindow): string {
  const backlog = window.backlogAgeMs > 0 ? `, oldest queued packet ${Math.round(window.backlogAgeMs)} ms old` : '';
  if (window.missRate === null) return `no packet served${backlog}`;
  return `${Math.round(window.missRate * 1000) / 10} % of ${window.packets} packets missed, service p95 ${window.serviceP95Ms ?? '-'} ms${backlog}`;
}
