/**
 * The scheduler's control loop on real local VMs (worker processes, paused by the cgroup freezer or
 * SIGSTOP): idle VMs are paused as the policy says, and a paused VM that placement chooses for a new
 * monitor is resumed; every action is an event with its reason. A redis-server of the test's own
 * and the embedded S3 store.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalVmDriver } from '../deploy/index.js';
import { RedisKeys } from '../queue/keys.js';
import { LivePlacer, readSchedulerEvents, resolvePolicy, SchedulerLoop } from '../scheduler/index.js';
import { startLocalVms, type LocalVms } from './support/local-vms.js';

const PREFIX = 'looptest';
const keys = new RedisKeys(PREFIX);
const silent = pino({ level: 'silent' });

let env: LocalVms;
let redis: Redis;
let driver: LocalVmDriver;

beforeAll(async () => {
  env = await startLocalVms(PREFIX, [{ name: 'vm-1', vcpus: 1, memoryMb: 512 }, { name: 'vm-2', vcpus: 1, memoryMb: 512 }]);
  ({ redis, driver } = env);
}, 120_000);

afterAll(async () => {
  await env?.close();
});

describe('scheduler control loop (idleVm: pause)', () => {
  const policy = resolvePolicy({ idleVm: 'pause', idleVmAfterS: 0, maxInstancesPerVm: 1, onNoCapacity: 'refuse' });
  const loop = () => new SchedulerLoop({ redis, keys, policy, now: () => Date.now(), logger: silent });

  it('pauses the VMs that run no monitor, and keeps the one that does', async () => {
    await new LivePlacer({ redis, keys, policy: resolvePolicy({ maxInstancesPerVm: 1 }), now: () => Date.now() }).place('busy-1');
    const busyVm = (await redis.hget(keys.assignments, 'busy-1')) === 'vm-1-w1' ? 'vm-1' : 'vm-2';
    const idleVm = busyVm === 'vm-1' ? 'vm-2' : 'vm-1';
    const events = await loop().tick();
    expect(events).toEqual([{ at: expect.any(Number), type: 'vm-paused', vm: idleVm, reason: expect.stringContaining('idleVm: pause') }]);
    expect((await driver.list()).map((vm) => [vm.name, vm.state])).toEqual([[busyVm, 'running'], [idleVm, 'paused']].sort());
  });

  it('places a new monitor on the paused VM (cheaper than a new one) and the loop resumes it; the worker heartbeats again', async () => {
    const paused = (await driver.list()).find((vm) => vm.state === 'paused')?.name as string;
    const worker = `${paused}-w1`;
    const slot = await new LivePlacer({ redis, keys, policy, now: () => Date.now() }).place('new-1');
    expect(slot).toBe(worker);
    const frozenAt = Number(await redis.zscore(keys.workers, worker));
    const events = await loop().tick();
    expect(events).toEqual([{ at: expect.any(Number), type: 'vm-resumed', vm: paused, reason: '1 monitor(s) placed on it while it was paused' }]);
    let beat = frozenAt;
    for (let tries = 0; tries < 75 && beat <= frozenAt; tries++) {
      await sleep(200);
      beat = Number(await redis.zscore(keys.workers, worker));
    }
    expect(beat).toBeGreaterThan(frozenAt);
    expect((await readSchedulerEvents(redis, keys)).map((event) => event.type)).toEqual(['vm-paused', 'vm-resumed']);
  });
});

describe('scheduler control loop (monitorIdleReleaseS)', () => {
  it('releases a monitor that has sent nothing for monitorIdleReleaseS, through a handover on its slot', async () => {
    const policy = resolvePolicy({ monitorIdleReleaseS: 1, idleVm: 'keep', interference: { enabled: false } });
    const slot = await new LivePlacer({ redis, keys, policy, now: () => Date.now() }).place('quiet-1');
    const loop = new SchedulerLoop({ redis, keys, policy, now: () => Date.now(), logger: silent });
    // Placed ahead of time, no packet since: silent from its placement on. Not yet a second.
    expect((await loop.tick()).filter((event) => event.monitor === 'quiet-1')).toEqual([]);
    await sleep(1100);
    const events = (await loop.tick()).filter((event) => event.monitor === 'quiet-1');
    expect(events).toEqual([expect.objectContaining({ type: 'monitor-released', from: slot, to: null, reason: expect.stringContaining('monitorIdleReleaseS: 1') })]);
    expect(await redis.hget(keys.assignments, 'quiet-1')).toBeNull();
    // The slot's worker runs the handover job: the move record goes, and it says so.
    let pending = 1;
    for (let tries = 0; tries < 50 && pending === 1; tries++) {
      await sleep(100);
      pending = await redis.exists(keys.move('quiet-1'));
    }
    expect(pending).toBe(0);
    const done = (await readSchedulerEvents(redis, keys)).filter((event) => event.type === 'handover-done' && event.monitor === 'quiet-1');
    expect(done).toEqual([expect.objectContaining({ from: slot, to: null })]);
  });
});
