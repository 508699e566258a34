/**
 * Real guests (issue 5): the libvirt driver boots QEMU guests (software emulation: this machine
 * has no hardware virtualisation) whose initramfs starts a warm worker, over the host's root (9p)
 * or over a root image built from Debian's packages (`ecgfaas image build`: the way Xen guests
 * run, with DHCP as on a bridge); a replay through the real gateway reaches it, its latency records
 * say `qemu` and `libvirt`, and the report has them beside a local worker's. Teardown leaves no
 * domain, file or process, also after a boot that fails. Slow (a guest's worker takes one to two
 * minutes to start under emulation; the image takes about two to build): runs with
 * ECGFAAS_GUEST_TESTS=1 (README), as root, with Debian's qemu-system-x86, libvirt-daemon-system,
 * linux-image-amd64, busybox-static, cpio, kmod, debootstrap and the Debian mirror.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asSeenFromGuest, ensureInitrd, LibvirtDriver, newestKernel, Virsh, type LibvirtDriverOptions } from '../deploy/libvirt/index.js';
import { buildRootImage } from '../deploy/image/index.js';
import { runOnStack, type RunOutcome } from '../stack/run.js';
import type { EmbeddedStack, StackInfo } from '../stack/stack.js';
import { EmbeddedRedis } from '../queue/index.js';
import { RedisKeys } from '../queue/keys.js';
import { excerptDir, repoRoot } from './support/data.js';

const run = promisify(execFile);
const enabled = process.env.ECGFAAS_GUEST_TESTS === '1';
const CONNECT = 'qemu:///system';


/** Daemons this test file started (and stops when it is done). */
let startedDaemons = false;

async function ensureLibvirtd(): Promise<void> {
  const virsh = new Virsh(CONNECT);
  if (await virsh.call(['list']).then(() => true, () => false)) return;
  // No systemd here: the daemons start by hand.
  await run('virtlogd', ['-d']).catch(() => undefined);
  await run('libvirtd', ['-d']);
  startedDaemons = true;
  for (let tries = 0; tries < 60 && !(await virsh.call(['list']).then(() => true, () => false)); tries++) await new Promise((resolve) => setTimeout(resolve, 500));
}

afterAll(async () => {
  if (!startedDaemons) return;
  for (const pidFile of ['/run/libvirtd.pid', '/run/virtlogd.pid']) {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (pid > 0) process.kill(pid, 'SIGTERM');
  }
});

/** libvirtd up, the newest kernel in /boot, and the platform's initramfs built into `scratch`. */
async function bootFiles(scratch: string): Promise<{ kernel: string; version: string; initrd: string }> {
  await ensureLibvirtd();
  const found = await newestKernel();
  if (found === null) throw new Error('no kernel in /boot (Debian: apt-get install linux-image-amd64)');
  return { ...found, initrd: await ensureInitrd(path.join(scratch, 'initrd.img'), found.version) };
}

/** A driver of QEMU guests whose workers serve `stack` (its Redis and S3 as the guests reach them). */
function guestDriver(stack: EmbeddedStack, redis: Redis, boot: { kernel: string; initrd: string }, scratch: string, extra: Partial<LibvirtDriverOptions> = {}): LibvirtDriver {
  const info = stack.info as StackInfo;
  return new LibvirtDriver({
    redis, keys: stack.keys, connect: CONNECT, hypervisor: 'qemu',
    guestRedisUrl: asSeenFromGuest(info.redisUrl), guestS3: { ...info.s3, endpoint: asSeenFromGuest(info.s3.endpoint as string) },
    kernel: boot.kernel, initrd: boot.initrd, checkout: repoRoot, stateDir: path.join(scratch, 'state'),
    workerArgs: ['--prefix', stack.keys.prefix, '--model', 'default'], ...extra,
  });
}

describe.skipIf(!enabled)('a worker in a real QEMU guest, deployed through libvirt', () => {
  let scratch: string;
  let outcome: RunOutcome;
  let guestFacts: { hypervisor?: { kind?: string } } = {};
  let leftAfterTeardown: string[] = [];
  let pausedState = '';
  let resumedState = '';
  let filesAfterTeardown: boolean[] = [];

  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-guest-'));
    const boot = await bootFiles(scratch);
    let driver: LibvirtDriver | null = null;
    let redis: Redis | null = null;
    outcome = await runOnStack({
      stack: { dir: scratch, workers: 1 },
      logger: pino({ level: 'warn' }), monitors: 4, durationS: 20, dataDir: excerptDir(), seed: 3, deadlineMs: 1000,
      reportsDir: path.join(scratch, 'reports'), runPrefix: 'guest',
      beforeReplay: async (stack) => {
        redis = new Redis((stack.info as StackInfo).redisUrl);
        driver = guestDriver(stack, redis, boot, scratch);
        await driver.create({ name: 'gt-1', vcpus: 1, memoryMb: 1024 });
        await driver.start('gt-1');
        // Suspend and resume the real guest (as the idle-VM policy would), before it serves anything.
        await driver.pause('gt-1');
        pausedState = (await new Virsh(CONNECT).list()).get('gt-1') ?? '';
        await driver.resume('gt-1');
        resumedState = (await new Virsh(CONNECT).list()).get('gt-1') ?? '';
        guestFacts = JSON.parse((await redis.hget(stack.keys.worker('gt-1-w1'), 'facts')) ?? '{}') as typeof guestFacts;
      },
      beforeStop: async () => {
        await driver?.close();
        leftAfterTeardown = [...(await new Virsh(CONNECT).list()).keys()].filter((name) => name === 'gt-1');
        filesAfterTeardown = ['gt-1.initrd', 'gt-1.xml'].map((file) => existsSync(path.join(scratch, 'state', file)));
        redis?.disconnect();
      },
    });
  }, 600_000);

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it('the guest\'s worker detects QEMU (not KVM) and serves packets of the replay through the real gateway', () => {
    expect(guestFacts.hypervisor?.kind).toBe('qemu');
    const inGuest = outcome.records.filter((record) => record.workerId === 'gt-1-w1');
    expect(inGuest.length).toBeGreaterThan(10);
    for (const record of inGuest) {
      expect(record).toMatchObject({ hypervisor: 'qemu', driver: 'libvirt', vm: 'gt-1' });
      expect(Number.isFinite(record.workerClock.offsetMs)).toBe(true);
    }
    expect(outcome.packets.lost).toBe(0);
  });

  it('the report puts the guest beside the local worker', () => {
    const kinds = outcome.report.byHypervisor.map((group) => group.key);
    expect(kinds).toContain('qemu');
    expect(kinds.length).toBeGreaterThanOrEqual(2);
    expect(outcome.report.byWorker.map((group) => group.workerId)).toContain('gt-1-w1');
  });

  it('suspends and resumes the guest through libvirt', () => {
    expect([pausedState, resumedState]).toEqual(['paused', 'running']);
  });

  it('teardown leaves no domain and no file behind', () => {
    expect(leftAfterTeardown).toEqual([]);
    expect(filesAfterTeardown).toEqual([false, false]);
  });
});

/**
 * A driver of QEMU guests on a Redis of its own and no stack (for guests that never serve a
 * packet), with the boot files `bootWith` chooses; everything is removed afterwards.
 */
async function withLoneDriver(
  name: string, bootWith: (scratch: string) => Promise<{ kernel: string; initrd: string }>,
  body: (driver: LibvirtDriver, scratch: string) => Promise<void>, options: Partial<LibvirtDriverOptions> = {},
): Promise<void> {
  const scratch = await mkdtemp(path.join(tmpdir(), `ecgfaas-${name}-`));
  const redisServer = new EmbeddedRedis({ directory: path.join(scratch, 'redis') });
  const redisUrl = await redisServer.start();
  const redis = new Redis(redisUrl);
  try {
    const boot = await bootWith(scratch);
    const driver = new LibvirtDriver({
      redis, keys: new RedisKeys(name.replace(/-/g, '')), connect: CONNECT, hypervisor: 'qemu', guestRedisUrl: asSeenFromGuest(redisUrl),
      guestS3: { region: 'us-east-1', bucket: 'none', forcePathStyle: true, endpoint: 'http://10.0.2.2:1', accessKeyId: 'none', secretAccessKey: 'none' },
      kernel: boot.kernel, initrd: boot.initrd, checkout: repoRoot, stateDir: path.join(scratch, 'state'), ...options,
    });
    await body(driver, scratch);
  } finally {
    redis.disconnect();
    await redisServer.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

describe.skipIf(!enabled)('a guest that fails to boot', () => {
  it('is torn down: an error with the end of its console, no domain, no file', async () => {
    // Not an initramfs: the kernel panics, reboots at once (panic=-1), and libvirt ends the guest.
    const brokenBoot = async (scratch: string) => {
      await ensureLibvirtd();
      const initrd = path.join(scratch, 'broken.img');
      await writeFile(initrd, 'not a cpio archive');
      return { kernel: (await newestKernel())?.kernel ?? '/boot/vmlinuz', initrd };
    };
    await withLoneDriver('guest-bad', brokenBoot, async (driver, scratch) => {
      await driver.create({ name: 'gt-bad', vcpus: 1, memoryMb: 512 });
      await expect(driver.start('gt-bad')).rejects.toMatchObject({ code: 'DEPLOY_BOOT_FAILED', message: expect.stringMatching(/gt-bad: it stopped[\s\S]*console ended with/) });
      expect([...(await new Virsh(CONNECT).list()).keys()]).not.toContain('gt-bad');
      expect(existsSync(path.join(scratch, 'state', 'gt-bad.initrd'))).toBe(false);
      expect(await driver.list()).toEqual([]);
      const { stdout } = await run('ps', ['-eo', 'args']);
      expect(stdout).not.toMatch(/guest=gt-bad/);
    }, { bootTimeoutMs: 120_000 });
  }, 180_000);
});

describe.skipIf(!enabled)('a deploy stopped while its guest boots', () => {
  it('close() stops the boot at once and tears the guest down: no domain, no file, no record', async () => {
    await withLoneDriver('guest-stop', bootFiles, async (driver, scratch) => {
      await driver.create({ name: 'gt-stop', vcpus: 1, memoryMb: 512 });
      const booting = driver.start('gt-stop');
      booting.catch(() => undefined);
      for (let tries = 0; tries < 60 && (await new Virsh(CONNECT).list()).get('gt-stop') !== 'running'; tries++) await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await new Virsh(CONNECT).list()).get('gt-stop')).toBe('running');
      const closing = Date.now();
      await driver.close();
      // Far sooner than a worker could come up under emulation, and than a graceful shutdown's 30 s.
      expect(Date.now() - closing).toBeLessThan(20_000);
      await expect(booting).rejects.toMatchObject({ code: 'DEPLOY_BOOT_FAILED', message: expect.stringContaining('stopped while it booted') });
      await expect(driver.start('gt-stop')).rejects.toMatchObject({ code: 'DEPLOY_BOOT_FAILED', message: expect.stringContaining('closing') });
      expect([...(await new Virsh(CONNECT).list()).keys()]).not.toContain('gt-stop');
      expect(['gt-stop.initrd', 'gt-stop.xml'].map((file) => existsSync(path.join(scratch, 'state', file)))).toEqual([false, false]);
      expect(await driver.list()).toEqual([]);
    });
  }, 180_000);
});

describe.skipIf(!enabled)('a worker in a guest booted from a root image built from Debian packages', () => {
  let scratch: string;
  let image: { image: string; bytes: number };
  let outcome: RunOutcome;
  let guestFacts: { hypervisor?: { kind?: string }; node?: string; os?: string } = {};
  let consoleText = '';
  let definedXml = '';
  let initrdMode = 0;
  let leftAfterTeardown: string[] = [];
  let filesAfterTeardown: boolean[] = [];
  let secret = '';
  let headCommit = '';

  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ecgfaas-guest-image-'));
    const boot = await bootFiles(scratch);
    headCommit = (await run('git', ['-C', repoRoot, 'rev-parse', 'HEAD'])).stdout.trim();
    image = await buildRootImage({ out: path.join(scratch, 'rootfs.img'), checkout: repoRoot });
    let driver: LibvirtDriver | null = null;
    let redis: Redis | null = null;
    outcome = await runOnStack({
      stack: { dir: scratch, workers: 1 },
      logger: pino({ level: 'warn' }), monitors: 4, durationS: 20, dataDir: excerptDir(), seed: 5, deadlineMs: 1000,
      reportsDir: path.join(scratch, 'reports'), runPrefix: 'guestimage',
      beforeReplay: async (stack) => {
        redis = new Redis((stack.info as StackInfo).redisUrl);
        driver = guestDriver(stack, redis, boot, scratch, { rootImage: image.image, net: 'dhcp' });
        secret = (stack.info as StackInfo).s3.secretAccessKey ?? '';
        await driver.create({ name: 'gi-1', vcpus: 1, memoryMb: 1024 });
        definedXml = (await run('virsh', ['-c', CONNECT, 'dumpxml', 'gi-1'])).stdout;
        initrdMode = (await stat(path.join(scratch, 'state', 'gi-1.initrd'))).mode & 0o777;
        await driver.start('gi-1');
        guestFacts = JSON.parse((await redis.hget(stack.keys.worker('gi-1-w1'), 'facts')) ?? '{}') as typeof guestFacts;
      },
      beforeStop: async () => {
        consoleText = await readFile(path.join(scratch, 'state', 'gi-1.console.log'), 'utf8').catch(() => '');
        await driver?.close();
        leftAfterTeardown = [...(await new Virsh(CONNECT).list()).keys()].filter((name) => name === 'gi-1');
        filesAfterTeardown = ['gi-1.initrd', 'gi-1.xml', 'gi-1.console.log'].map((file) => existsSync(path.join(scratch, 'state', file)));
        redis?.disconnect();
      },
    });
  }, 900_000);

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it('boots from the image (read-only, over DHCP) and its worker runs Debian\'s Node.js and detects QEMU', () => {
    expect(image.bytes).toBeGreaterThan(100 * 2 ** 20);
    // Its provenance, beside it: what `deploy --disk` compares with the checkout.
    expect(JSON.parse(readFileSync(`${image.image}.json`, 'utf8'))).toMatchObject({ suite: 'trixie', node: expect.stringMatching(/^20\.19\./), commit: headCommit });
    expect(definedXml).toMatch(/<source file=['"][^'"]*rootfs\.img['"]\/>[\s\S]*<readonly\/>/);
    expect(definedXml).toContain('ecgfaas.root=disk:/dev/vda');
    expect(definedXml).not.toContain('hostroot');
    expect(consoleText).toMatch(/root=disk:\/dev\/vda net=dhcp/);
    expect(consoleText).toMatch(/DHCP lease 10\.0\.2\.\d+\/\d+ via 10\.0\.2\.2/);
    expect(guestFacts.hypervisor?.kind).toBe('qemu');
    // Debian's Node.js and OS from the image, not the host's (bookworm, NodeSource's Node 20.20).
    expect(guestFacts.os).toMatch(/Debian GNU\/Linux 13/);
    expect(guestFacts.node).toMatch(/^v20\.19\./);
  });

  it('serves packets of the replay, labelled qemu/libvirt, beside the local worker in the report', () => {
    const inGuest = outcome.records.filter((record) => record.workerId === 'gi-1-w1');
    expect(inGuest.length).toBeGreaterThan(10);
    for (const record of inGuest) expect(record).toMatchObject({ hypervisor: 'qemu', driver: 'libvirt', vm: 'gi-1' });
    expect(outcome.packets.lost).toBe(0);
    expect(outcome.report.byHypervisor.map((group) => group.key)).toContain('qemu');
  });

  it('keeps the S3 secrets off the command line: in a 0600 seeded initramfs, removed at teardown with the domain', () => {
    expect(initrdMode).toBe(0o600);
    expect(secret.length).toBeGreaterThan(0);
    expect(definedXml).not.toContain(secret);
    expect(consoleText).not.toContain(secret);
    expect(leftAfterTeardown).toEqual([]);
    expect(filesAfterTeardown).toEqual([false, false, false]);
    expect(existsSync(image.image)).toBe(true);
  });
});
