/**
 * Live placement by policy: a redis-server of the test's own, the embedded S3 store, real warm
 * workers in "VMs" named by the deploy flag (`vm`), and a gateway placing new monitors under a
 * policy of one instance per VM. The CLI's `placement explain` and `monitors add` run as a user runs
 * them, against the same Redis.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BINARY_CONTENT_TYPE, encodePacket } from '../contracts/packet-binary.js';
import { Gateway } from '../gateway/index.js';
import { EmbeddedRedis } from '../queue/index.js';
import { RedisKeys } from '../queue/keys.js';
import { readInventory, resolvePolicy } from '../scheduler/index.js';
import { createS3Client, EmbeddedS3, EpisodeStore } from '../storage/index.js';
import { WarmWorker } from '../worker/index.js';
import { modelPath } from './support/data.js';
import { ecgfaas } from './support/processes.js';

const PREFIX = 'placetest';
const keys = new RedisKeys(PREFIX);
const silent = pino({ level: 'silent' });

let dir: string;
let redisServer: EmbeddedRedis;
let redisUrl: string;
let s3Server: EmbeddedS3;
let s3: S3Client;
let episodes: EpisodeStore;
const workers: WarmWorker[] = [];
let gateway: Gateway;
let base: string;
let redis: Redis;

function newWorker(vm: string): WarmWorker {
  return new WarmWorker({
    redisUrl, keyPrefix: PREFIX, modelPath: modelPath('paper'), storage: { kind: 'inline', episodes }, s3: { client: s3, bucket: 'ecgfaas' },
    logger: silent, vm, host: 'host-1', workerId: `w-${vm}`,
  });
}

/** One second of a flat trace: placement, not classification, is under test. */
function packet(seq: number): Uint8Array {
  const samples = new Int16Array(360).fill(1024);
  return encodePacket({ seq, sampleRate: 360, gain: 200, baseline: 1024, leads: [{ name: 'MLII', samples }] });
}

async function post(monitor: string, seq: number): Promise<{ status: number; body: { code?: string; message?: string; invocationId?: string }; retryAfter: string | null }> {
  const response = await fetch(`${base}/v1/monitors/${monitor}/packets`, { method: 'POST', headers: { 'content-type': BINARY_CONTENT_TYPE }, body: packet(seq) });
  return { status: response.status, body: await response.json() as { code?: string; message?: string }, retryAfter: response.headers.get('retry-after') };
}

/** The CLI against this test's Redis. */
function cli(...args: string[]) {
  return ecgfaas([...args, '--redis', redisUrl, '--prefix', PREFIX]);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-placement-'));
  redisServer = new EmbeddedRedis({ directory: path.join(dir, 'redis') });
  redisUrl = await redisServer.start();
  s3Server = new EmbeddedS3({ directory: path.join(dir, 's3') });
  const settings = await s3Server.start();
  s3 = createS3Client(settings);
  episodes = new EpisodeStore({ client: s3, bucket: settings.bucket });
  for (const vm of ['vm-a', 'vm-b']) {
    const worker = newWorker(vm);
    await worker.start();
    workers.push(worker);
  }
  gateway = new Gateway({
    redisUrl, keyPrefix: PREFIX, logger: silent, port: 0,
    policy: resolvePolicy({ maxInstancesPerVm: 1, onNoCapacity: 'refuse' }),
  });
  base = await gateway.start();
  redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  for (const worker of workers) await worker.close();
  redis?.disconnect();
  await redisServer?.close();
  s3?.destroy();
  await s3Server?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('live placement under a policy (one instance per VM, refuse)', () => {
  it('reads the inventory the workers report: their VMs, host, vCPUs and hypervisor', async () => {
    const inventory = await readInventory(redis, keys, { now: Date.now(), deadAfterMs: 15_000 });
    expect(inventory.workers).toEqual([{ id: 'w-vm-a', vm: 'vm-a', alive: true }, { id: 'w-vm-b', vm: 'vm-b', alive: true }]);
    expect(inventory.vms.map((vm) => [vm.name, vm.host, vm.state])).toEqual([['vm-a', 'host-1', 'running'], ['vm-b', 'host-1', 'running']]);
    expect(inventory.vms[0]?.vcpus).toBeGreaterThan(0);
    expect(inventory.hosts).toEqual([expect.objectContaining({ name: 'host-1', hypervisor: workers[0]?.facts?.hypervisor.kind })]);
  });

  it('places two monitors on the two VMs, and refuses a third with 503 NO_CAPACITY and the rule that excluded each worker', async () => {
    const first = await post('bed-1', 0);
    const second = await post('bed-2', 0);
    expect([first.status, second.status]).toEqual([202, 202]);
    const assigned = await redis.hgetall(keys.assignments);
    expect(new Set([assigned['bed-1'], assigned['bed-2']])).toEqual(new Set(['w-vm-a', 'w-vm-b']));

    const third = await post('bed-3', 0);
    expect(third.status).toBe(503);
    expect(third.retryAfter).toBe('5');
    expect(third.body.code).toBe('NO_CAPACITY');
    expect(third.body.message).toContain('maxInstancesPerVm: 1 of 1 on vm-a');
    expect(third.body.message).toContain('maxInstancesPerVm: 1 of 1 on vm-b');
    expect(await redis.hget(keys.assignments, 'bed-3')).toBeNull();
    // A placed monitor's next packets go through.
    expect((await post('bed-1', 1)).status).toBe(202);
  });

  it('explains both: why bed-1 is where it is, and why bed-3 was refused', async () => {
    const placed = await cli('placement', 'explain', 'bed-1');
    expect(placed.code).toBe(0);
    expect(placed.stdout).toMatch(/^bed-1 → vm-[ab] \(w-vm-[ab]\), placed: spread/);
    const refused = await cli('placement', 'explain', 'bed-3');
    expect(refused.code).toBe(0);
    expect(refused.stdout).toContain('bed-3: refused.');
    expect(refused.stdout).toMatch(/vm-a\/w-vm-a on host-1: excluded by maxInstancesPerVm: 1 of 1 on vm-a/);
    const unknown = await cli('placement', 'explain', 'bed-99');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('[PLACEMENT_UNKNOWN]');
    const bad = await cli('placement', 'explain', 'bed 99');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('[CLI_BAD_MONITOR]');
  });

  it('accepts the refused monitor once capacity comes (a worker on a new VM): its refused packet was not remembered as seen', async () => {
    const worker = newWorker('vm-c');
    await worker.start();
    workers.push(worker);
    const again = await post('bed-3', 0);
    expect(again.status).toBe(202);
    expect(await redis.hget(keys.assignments, 'bed-3')).toBe('w-vm-c');
  });

  it('monitors add places ahead of the first packet, and refuses with the reason and exit 1 when full', async () => {
    const file = path.join(dir, 'policy.yaml');
    await writeFile(file, 'maxInstancesPerVm: 2\n');
    const added = await cli('monitors', 'add', 'bed-4', 'bed-5', 'bed-6', 'bed-7', '--policy', file, '--json');
    expect(added.code).toBe(1);
    const out = JSON.parse(added.stdout) as { placed: Array<{ monitor: string; slot: string }>; refused: Array<{ monitor: string; reason: string }> };
    expect(out.placed.map((p) => p.monitor)).toEqual(['bed-4', 'bed-5', 'bed-6']);
    expect(new Set(out.placed.map((p) => p.slot))).toEqual(new Set(['w-vm-a', 'w-vm-b', 'w-vm-c']));
    expect(out.refused).toEqual([{ monitor: 'bed-7', reason: expect.stringContaining('maxInstancesPerVm: 2 of 2') }]);
    expect(added.stderr).toContain('[PLACEMENT_REFUSED]');
    // The gateway routes by what was added.
    await sleep(50);
    expect((await post('bed-4', 0)).status).toBe(202);
  });
});
