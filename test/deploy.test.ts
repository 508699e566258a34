/**
 * The local deploy driver as a user runs it: `ecgfaas deploy --vms 2 --vcpus 0.5` (cgroup-confined
 * "VMs" of warm workers where the cgroup filesystem is writable), then `ecgfaas vms` and `ecgfaas vm
 * pause|resume|shutdown|destroy` from other processes, against a redis-server of the test's own and
 * the embedded S3 store.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectCgroups, type VmRecord } from '../deploy/index.js';
import { EmbeddedRedis } from '../queue/index.js';
import { RedisKeys } from '../queue/keys.js';
import { readInventory } from '../scheduler/index.js';
import { EmbeddedS3 } from '../storage/index.js';
import { alive, ecgfaas } from './support/processes.js';

const PREFIX = 'deploytest';
const keys = new RedisKeys(PREFIX);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const entry = path.join(root, 'bin', 'ecgfaas.js');

let dir: string;
let redisServer: EmbeddedRedis;
let redisUrl: string;
let s3Server: EmbeddedS3;
let redis: Redis;
let deploy: ChildProcess | null = null;
let env: NodeJS.ProcessEnv;


/** The CLI against this test's Redis and S3. */
function cli(...args: string[]) {
  return ecgfaas([...args, '--redis', redisUrl, '--prefix', PREFIX], { env });
}

async function vms(): Promise<VmRecord[]> {
  return JSON.parse((await cli('vms', '--json')).stdout) as VmRecord[];
}

async function heartbeatOf(workerId: string): Promise<number> {
  return Number(await redis.zscore(keys.workers, workerId));
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-deploy-'));
  redisServer = new EmbeddedRedis({ directory: path.join(dir, 'redis') });
  redisUrl = await redisServer.start();
  s3Server = new EmbeddedS3({ directory: path.join(dir, 's3') });
  const s3 = await s3Server.start();
  env = {
    ...process.env, ECGFAAS_LOG_LEVEL: 'warn', ECGFAAS_S3_ENDPOINT: s3.endpoint, ECGFAAS_S3_BUCKET: s3.bucket,
    AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region,
  };
  redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  deploy = spawn(process.execPath, [entry, 'deploy', '--driver', 'local', '--vms', '2', '--vcpus', '0.5', '--memory-mb', '768', '--model', 'paper',
    '--redis', redisUrl, '--prefix', PREFIX, '--logs', path.join(dir, 'logs')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: deploy?.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.includes('"event":"ready"')) resolve();
    });
    deploy?.once('exit', (code) => reject(new Error(`ecgfaas deploy exited ${code} before it was ready`)));
  });
}, 120_000);

afterAll(async () => {
  if (deploy !== null && deploy.exitCode === null) {
    deploy.kill('SIGTERM');
    await new Promise((resolve) => deploy?.once('exit', resolve));
  }
  redis?.disconnect();
  await redisServer?.close();
  await s3Server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('ecgfaas deploy --driver local, then vms and vm from other processes', () => {
  let pids: number[] = [];

  it('starts 2 VMs of one worker each; their workers report the VM, this host and the confinement as their CPUs', async () => {
    const records = await vms();
    expect(records.map((vm) => [vm.name, vm.state, vm.driver, vm.vcpus, vm.memoryMb, vm.workers.map((w) => w.workerId)])).toEqual([
      ['vm-1', 'running', 'local', 0.5, 768, ['vm-1-w1']],
      ['vm-2', 'running', 'local', 0.5, 768, ['vm-2-w1']],
    ]);
    pids = records.flatMap((vm) => vm.workers.map((w) => w.pid as number));
    expect(pids.every(alive)).toBe(true);
    const inventory = await readInventory(redis, keys, { now: Date.now(), deadAfterMs: 15_000 });
    expect(inventory.workers).toEqual([{ id: 'vm-1-w1', vm: 'vm-1', alive: true }, { id: 'vm-2-w1', vm: 'vm-2', alive: true }]);
    // As root where a cgroup filesystem exists, the VMs are confined; then the worker itself sees
    // half a core (its cgroup quota); unconfined, the machine's CPUs.
    if (process.getuid?.() === 0 && detectCgroups() !== null) expect(records.map((vm) => vm.cgroup)).toEqual([detectCgroups(), detectCgroups()]);
    const expected = records[0]?.cgroup === null ? inventory.vms[0]?.vcpus : 0.5;
    expect(inventory.vms.map((vm) => vm.vcpus)).toEqual([expected, expected]);
    const table = await cli('vms');
    expect(table.stdout).toMatch(/vm-1\s+running\s+local/);
  });

  it('pauses an idle VM (its worker stops, heartbeats too) and resumes it (heartbeats again)', async () => {
    const paused = await cli('vm', 'pause', 'vm-2');
    expect(paused).toMatchObject({ code: 0, stdout: 'vm-2: paused\n' });
    await sleep(500);
    const [frozenAt, otherAt] = [await heartbeatOf('vm-2-w1'), await heartbeatOf('vm-1-w1')];
    await sleep(4500);
    expect(await heartbeatOf('vm-2-w1')).toBe(frozenAt);
    expect(await heartbeatOf('vm-1-w1')).toBeGreaterThan(otherAt);
    expect((await cli('vm', 'resume', 'vm-2')).stdout).toBe('vm-2: running\n');
    await sleep(3000);
    expect(await heartbeatOf('vm-2-w1')).toBeGreaterThan(frozenAt);
  });

  it('a VM paused past the lease: the other VM\'s worker adopts its slot, and hands it back once it is resumed', async () => {
    expect(await redis.get(keys.slotLease('vm-2-w1'))).toBe('vm-2-w1');
    await cli('vm', 'pause', 'vm-2');
    let holder: string | null = null;
    for (let tries = 0; tries < 60 && holder !== 'vm-1-w1'; tries++) {
      await sleep(500);
      holder = await redis.get(keys.slotLease('vm-2-w1'));
    }
    expect(holder).toBe('vm-1-w1');
    await cli('vm', 'resume', 'vm-2');
    for (let tries = 0; tries < 40 && holder !== 'vm-2-w1'; tries++) {
      await sleep(500);
      holder = await redis.get(keys.slotLease('vm-2-w1'));
    }
    expect(holder).toBe('vm-2-w1');
  }, 60_000);

  it('refuses actions that do not fit the VM\'s state, and unknown VMs, with codes', async () => {
    const resumeRunning = await cli('vm', 'resume', 'vm-1');
    expect(resumeRunning.code).toBe(1);
    expect(resumeRunning.stderr).toContain('[VM_BAD_STATE]');
    const unknown = await cli('vm', 'pause', 'vm-9');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('[VM_NOT_FOUND]');
    const badAction = await cli('vm', 'reboot', 'vm-1');
    expect(badAction.code).toBe(2);
  });

  it('shuts a VM down (its worker exits) and destroys it (gone from the list)', async () => {
    const [, vm2pid] = pids as [number, number];
    expect((await cli('vm', 'shutdown', 'vm-2')).stdout).toBe('vm-2: shut-off\n');
    for (let tries = 0; tries < 100 && alive(vm2pid); tries++) await sleep(100);
    expect(alive(vm2pid)).toBe(false);
    const destroyed = await cli('vm', 'destroy', 'vm-2');
    expect(destroyed.stdout, destroyed.stderr).toBe('vm-2: destroyed\n');
    expect((await vms()).map((vm) => vm.name)).toEqual(['vm-1']);
  });

  it('on SIGTERM, deploy stops its VMs: no worker left, no VM listed', async () => {
    deploy?.kill('SIGTERM');
    const code = await new Promise((resolve) => deploy?.once('exit', resolve));
    expect(code).toBe(0);
    expect(pids.some(alive)).toBe(false);
    expect(await vms()).toEqual([]);
  });
});
