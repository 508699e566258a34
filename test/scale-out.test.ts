/**
 * Scale-out through the deploy driver: placement that needs a new VM asks a running driver for one
 * through Redis and assigns the monitor to the worker it will have; the driver's ScaleOutService
 * makes it; without a driver the monitor is refused with that reason; a VM the driver cannot make
 * leaves its slot to be adopted. Real local VMs (worker processes), a redis-server of the test's own.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScaleOutService, type LocalVmDriver } from '../deploy/index.js';
import { RedisKeys } from '../queue/keys.js';
import { LivePlacer, pendingVms, readSchedulerEvents, resolvePolicy } from '../scheduler/index.js';
import { startLocalVms, type LocalVms } from './support/local-vms.js';

const PREFIX = 'scaletest';
const keys = new RedisKeys(PREFIX);
const silent = pino({ level: 'silent' });
const policy = resolvePolicy({
  maxInstancesPerVm: 1, onNoCapacity: 'scale-out', maxVms: 2, interference: { enabled: false },
  scaleOut: { vcpus: 0.5, memoryMb: 512, hypervisor: 'kvm' },
});

let env: LocalVms;
let redis: Redis;
let driver: LocalVmDriver;
let service: ScaleOutService | null = null;

beforeAll(async () => {
  env = await startLocalVms(PREFIX, [{ name: 'vm-1', vcpus: 1, memoryMb: 512 }]);
  ({ redis, driver } = env);
}, 120_000);

afterAll(async () => {
  await service?.close();
  await env?.close();
});

describe('scale-out through the deploy driver', () => {
  const placer = () => new LivePlacer({ redis, keys, policy, now: () => Date.now() });

  it('refuses a monitor that needs a new VM while no driver serves scale-out, and says so', async () => {
    expect(await placer().place('m-1')).toBe('vm-1-w1');
    await expect(placer().place('m-2')).rejects.toMatchObject({ code: 'PLACEMENT_REFUSED', message: expect.stringContaining('no deploy driver is running') });
    expect(await redis.hget(keys.assignments, 'm-2')).toBeNull();
  });

  it('with a driver serving: assigns the monitor to the new VM\'s worker at once, counts the pending VM, and the driver brings it up', async () => {
    service = new ScaleOutService({ redis, keys, driver, logger: silent, now: () => Date.now() });
    await service.start();
    expect(await placer().place('m-2')).toBe('vm-2-w1');
    expect((await pendingVms(redis, keys)).map((vm) => [vm.name, vm.worker, vm.vcpus, vm.host, vm.hypervisor])).toEqual([['vm-2', 'vm-2-w1', 0.5, hostname(), 'kvm']]);
    // The pending VM counts: with it, maxVms (2) is reached and its one place is taken.
    await expect(placer().place('m-3')).rejects.toMatchObject({ code: 'PLACEMENT_REFUSED', message: expect.stringContaining('maxVms 2') });
    let beat: string | null = null;
    for (let tries = 0; tries < 100 && beat === null; tries++) {
      await sleep(200);
      beat = await redis.zscore(keys.workers, 'vm-2-w1');
    }
    expect(beat, 'the new VM\'s worker heartbeats').not.toBeNull();
    expect(await pendingVms(redis, keys)).toEqual([]);
    expect((await driver.list()).map((vm) => [vm.name, vm.state, vm.vcpus])).toEqual([['vm-1', 'running', 1], ['vm-2', 'running', 0.5]]);
    const events = await readSchedulerEvents(redis, keys);
    expect(events).toEqual([expect.objectContaining({ type: 'vm-scaled-out', vm: 'vm-2', reason: expect.stringContaining('m-2') })]);
  }, 60_000);

  it('a driver of another hypervisor leaves a request alone (a KVM and a Xen deploy on one host each make their own)', async () => {
    const xen = new ScaleOutService({ redis, keys: new RedisKeys('scaletest-xen'), driver, logger: silent, now: () => Date.now(), hypervisor: 'xen-pv' });
    const xenKeys = new RedisKeys('scaletest-xen');
    await redis.hset(xenKeys.scaleOutPending, 'vm-9', JSON.stringify({ name: 'vm-9', host: hostname(), vcpus: 1, memoryMb: 512, hypervisor: 'kvm', worker: 'vm-9-w1', requestedAt: Date.now(), reason: 'test' }));
    await xen.start();
    await sleep(1500);
    await xen.close();
    expect((await pendingVms(redis, xenKeys)).map((vm) => [vm.name, vm.hypervisor])).toEqual([['vm-9', 'kvm']]);
    expect((await driver.list()).map((vm) => vm.name)).not.toContain('vm-9');
    await redis.del(xenKeys.scaleOutPending, xenKeys.drivers);
  });

  it('leaves the slot of a VM it could not make to a live worker, which adopts it, and says why', async () => {
    await redis.hset(keys.scaleOutPending, 'vm-1', JSON.stringify({ name: 'vm-1', host: hostname(), vcpus: 1, memoryMb: 512, worker: 'ghost-w1', requestedAt: Date.now(), reason: 'test' }));
    let failed = false;
    for (let tries = 0; tries < 30 && !failed; tries++) {
      await sleep(200);
      failed = (await readSchedulerEvents(redis, keys)).some((event) => event.type === 'scale-out-failed');
    }
    const event = (await readSchedulerEvents(redis, keys)).find((each) => each.type === 'scale-out-failed');
    expect(event?.reason).toMatch(/a VM named vm-1 exists.*ghost-w1 is left for a live worker to adopt/);
    // A live worker adopts the slot on one of its next heartbeats (every 2 s), as after a crash.
    let holder: string | null = null;
    for (let tries = 0; tries < 50 && holder === null; tries++) {
      holder = await redis.get(keys.slotLease('ghost-w1'));
      if (holder === null) await sleep(200);
    }
    expect(['vm-1-w1', 'vm-2-w1']).toContain(holder);
    expect(await pendingVms(redis, keys)).toEqual([]);
  });
});
