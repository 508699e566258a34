/**
 * The libvirt deploy driver: each VM is a libvirt domain (KVM, QEMU, Xen HVM or Xen PV) behind any
 * connection URI, booting the platform's initramfs (build-initrd.sh), which starts one warm worker
 * by itself (guest-init.sh) over the host's root (9p) or a root image (`ecgfaas image build`). The
 * worker learns its VM, worker id, Redis, root and network from the kernel command line, and its
 * S3 settings (secrets) from a seed archive the driver appends to a per-guest copy of the
 * initramfs (mode 0600 on the host; see initramfs.ts).
 *
 * start() resolves once the guest's worker heartbeats; a guest that powers off or does not come up
 * in time is torn down (destroyed, undefined, its files and record removed) and the error carries
 * the end of its console log. Pause, resume, shut down and destroy go through vmControl (deploy/vms.ts),
 * so `ecgfaas vm ...` and the scheduler's idle-VM policy act on libvirt guests as on local VMs.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { EcgFaasError } from '../../contracts/errors.js';
import type { RedisKeys } from '../../queue/keys.js';
import type { S3Settings } from '../../storage/index.js';
import { readOrNull } from '../../worker/facts/index.js';
import { listVms, readVm, vmControl, VmError, writeVm, type DeployDriver, type VmRecord, type VmSpec } from '../vms.js';
import { domainXml, xenCap, type GuestHypervisor, type GuestSpec } from './domain.js';
import { guestSpec, IMAGE_CHECKOUT } from './guests.js';
import { seededInitrd } from './initramfs.js';
import { Virsh } from './virsh.js';

export interface LibvirtDriverOptions {
  redis: Redis;
  keys: RedisKeys;
  /** libvirt connection URI, e.g. qemu:///system, qemu+ssh://host/system, xen:///system. */
  connect: string;
  hypervisor: GuestHypervisor;
  /** Redis as the guests reach it (QEMU user networking: the host's loopback is 10.0.2.2). */
  guestRedisUrl: string;
  /** S3 as the guests reach it. */
  guestS3: S3Settings;
  kernel: string;
  /** The base initramfs (ensureInitrd); each guest boots a copy with its seed appended. */
  initrd: string;
  /** The project's checkout as the guest sees it through the host's root over 9p (the same path); unused with a root image. */
  checkout: string;
  /** The workers' root file system (`ecgfaas image build`), attached read-only; default: the host's root over 9p (KVM, QEMU). */
  rootImage?: string;
  /** The guests' network set-up (`user`, `dhcp`, `static:...`; see GuestOptions.net). */
  net?: string;
  /** Seeded initramfs copies, domain XML and console logs of the guests. */
  stateDir: string;
  /** `ecgfaas worker` arguments (e.g. --prefix, --model, --extra-compute-ms), without spaces in any. */
  workerArgs?: string[];
  pinCpus?: readonly number[];
  network?: GuestSpec['network'];
  /** How long a guest may take to boot and start its worker (default 5 min: QEMU emulation is slow). */
  bootTimeoutMs?: number;
  /** The physical host, as the scheduler's inventory names it (default: this machine). */
  host?: string;
  /** Appended to the guests' kernel command line. */
  cmdline?: string;
}

/** What a guest's domain follows from: the driver's options without its connections and secrets. */
export type GuestDefinition = Pick<LibvirtDriverOptions,
  'hypervisor' | 'guestRedisUrl' | 'kernel' | 'checkout' | 'rootImage' | 'net' | 'stateDir' | 'workerArgs' | 'pinCpus' | 'network' | 'host' | 'cmdline'>;

/** A guest's files on the host: its seeded initramfs (0600), its domain XML, its console log. */
export function guestFiles(stateDir: string, name: string): { initrd: string; xml: string; console: string } {
  return {
    initrd: path.join(stateDir, `${name}.initrd`),
    xml: path.join(stateDir, `${name}.xml`),
    console: path.join(stateDir, `${name}.console.log`),
  };
}

/**
 * The spec of the index-th guest the driver defines (index: its place among the driver's VMs, for
 * vCPU pinning). Pure, so `deploy --print-xml` prints exactly what a deploy would define.
 */
export function definedGuest(definition: GuestDefinition, vm: Pick<VmSpec, 'name' | 'vcpus' | 'memoryMb'>, index: number): GuestSpec {
  const args = (definition.workerArgs ?? []).join(',');
  return guestSpec(vm.name, index, {
    hypervisor: definition.hypervisor, vcpus: vm.vcpus, memoryMb: vm.memoryMb, kernel: definition.kernel, initrd: guestFiles(definition.stateDir, vm.name).initrd,
    runAsRoot: process.getuid?.() === 0, consoleDir: definition.stateDir,
    cmdline: [
      `ecgfaas.redis=${definition.guestRedisUrl}`, `ecgfaas.dir=${definition.rootImage !== undefined ? IMAGE_CHECKOUT : definition.checkout}`, `ecgfaas.host=${definition.host ?? hostname()}`,
      ...(args !== '' ? [`ecgfaas.args=${args}`] : []), ...(definition.cmdline !== undefined ? [definition.cmdline] : []),
    ].join(' '),
    ...(definition.rootImage !== undefined ? { rootImage: definition.rootImage } : {}),
    ...(definition.net !== undefined ? { net: definition.net } : {}),
    ...(definition.pinCpus !== undefined ? { pinCpus: definition.pinCpus } : {}),
    ...(definition.network !== undefined ? { network: definition.network } : {}),
  });
}

export class DeployError extends EcgFaasError {
  constructor(code: 'DEPLOY_BOOT_FAILED' | 'DEPLOY_UNSUPPORTED', message: string) {
    super(code, message);
    this.name = 'DeployError';
  }
}

export class LibvirtDriver implements DeployDriver {
  readonly kind = 'libvirt' as const;
  readonly #o: LibvirtDriverOptions;
  readonly #virsh: Virsh;
  readonly #control: ReturnType<typeof vmControl>;
  /** The VMs this driver made, in order (close() tears them down). */
  readonly #made: string[] = [];
  /** Creates and boots in progress (a boot lasts until the worker heartbeats or the boot fails): close() waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Set by close(): no VM is made or started any more, and boots in progress give up and tear their guest down. */
  #closing = false;

  constructor(options: LibvirtDriverOptions) {
    this.#o = options;
    this.#virsh = new Virsh(options.connect);
    this.#control = vmControl(options.redis, options.keys);
  }

  #files(name: string) {
    return guestFiles(this.#o.stateDir, name);
  }

  /** The guest spec of a VM (definedGuest with this driver's options). */
  guest(spec: VmSpec, index = this.#made.length): GuestSpec {
    return definedGuest(this.#o, spec, index);
  }

  /** A promise of work close() must wait for (so a VM a scale-out pass is making is not missed). */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight.add(work);
    const done = () => { this.#inFlight.delete(work); };
    work.then(done, done);
    return work;
  }

  create(spec: VmSpec): Promise<VmRecord> {
    if (this.#closing) return Promise.reject(new DeployError('DEPLOY_BOOT_FAILED', `guest ${spec.name}: not created, the driver is closing`));
    return this.#track(this.#create(spec));
  }

  async #create(spec: VmSpec): Promise<VmRecord> {
    if ((spec.workers ?? 1) !== 1) throw new DeployError('DEPLOY_UNSUPPORTED', 'a libvirt guest runs one worker');
    if (await readVm(this.#o.redis, this.#o.keys, spec.name) !== null) throw new VmError('VM_EXISTS', `a VM named ${spec.name} exists`);
    const guest = this.guest(spec);
    const files = this.#files(spec.name);
    await mkdir(this.#o.stateDir, { recursive: true });
    const s3 = this.#o.guestS3;
    const env = {
      ECGFAAS_S3_ENDPOINT: s3.endpoint ?? '', ECGFAAS_S3_BUCKET: s3.bucket, ECGFAAS_S3_PATH_STYLE: String(s3.forcePathStyle), AWS_REGION: s3.region,
      AWS_ACCESS_KEY_ID: s3.accessKeyId ?? '', AWS_SECRET_ACCESS_KEY: s3.secretAccessKey ?? '', ECGFAAS_LOG_LEVEL: 'info',
    };
    try {
      await seededInitrd(this.#o.initrd, files.initrd, {
        'seed/worker.env': Object.entries(env).map(([key, value]) => `${key}='${value.replace(/'/g, "'\\''")}'`).join('\n') + '\n',
      });
      await writeFile(files.xml, domainXml(guest));
      await this.#virsh.call(['define', files.xml], `defining ${spec.name}`);
      // Xen's share below its vCPUs is a credit-scheduler cap, kept in the guest's configuration.
      if (guest.cpuShare !== undefined && this.#o.hypervisor.startsWith('xen')) {
        await this.#virsh.call(['schedinfo', spec.name, '--config', '--set', `cap=${xenCap(guest.cpuShare)}`], `capping ${spec.name}'s CPU`)
          .catch(async (error: unknown) => {
            await this.#virsh.call(['undefine', spec.name]).catch(() => undefined);
            throw error;
          });
      }
    } catch (error) {
      await this.#removeFiles(spec.name);
      throw error;
    }
    this.#made.push(spec.name);
    return writeVm(this.#o.redis, this.#o.keys, {
      name: spec.name, driver: 'libvirt', host: this.#o.host ?? hostname(), vcpus: spec.vcpus, memoryMb: spec.memoryMb, state: 'shut-off',
      workers: [{ workerId: `${spec.name}-w1`, pid: null }], cgroup: null, connect: this.#o.connect, hypervisor: this.#o.hypervisor, updatedAt: 0,
    });
  }

  start(name: string): Promise<VmRecord> {
    if (this.#closing) return Promise.reject(new DeployError('DEPLOY_BOOT_FAILED', `guest ${name}: not started, the driver is closing`));
    return this.#track(this.#boot(name));
  }

  async #boot(name: string): Promise<VmRecord> {
    const record = await this.#control.need(name);
    if (record.state !== 'shut-off') throw new VmError('VM_BAD_STATE', `${name} is ${record.state}, not shut off`);
    const worker = record.workers[0]?.workerId ?? `${name}-w1`;
    const [seconds] = await this.#o.redis.time();
    const startedAt = Number(seconds) * 1000;
    try {
      await this.#virsh.call(['start', name], `starting ${name}`);
    } catch (error) {
      await this.destroy(name).catch(() => undefined);
      throw error;
    }
    await writeVm(this.#o.redis, this.#o.keys, { ...record, state: 'running' });
    const deadline = Date.now() + (this.#o.bootTimeoutMs ?? 300_000);
    let failure: string | null = null;
    for (;;) {
      const beat = await this.#o.redis.zscore(this.#o.keys.workers, worker);
      if (beat !== null && Number(beat) >= startedAt) return this.#control.need(name);
      const state = (await this.#virsh.list()).get(name);
      if (this.#closing) failure = 'the deploy was stopped while it booted';
      else if (state !== 'running') failure = `it stopped (${state ?? 'gone'}) before its worker came up`;
      else if (Date.now() > deadline) failure = `its worker did not come up within ${Math.round((this.#o.bootTimeoutMs ?? 300_000) / 1000)} s`;
      if (failure !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const console = ((await readOrNull(this.#files(name).console)) ?? '').trim().split('\n').slice(-8).join('\n  ');
    await this.destroy(name).catch(() => undefined);
    throw new DeployError('DEPLOY_BOOT_FAILED', `guest ${name}: ${failure}; torn down. Its console ended with:\n  ${console || '(nothing)'}`);
  }

  startWorker(name: string): Promise<string> {
    return Promise.reject(new DeployError('DEPLOY_UNSUPPORTED', `${name}: a libvirt guest runs the one worker it boots with`));
  }

  pause(name: string): Promise<VmRecord> {
    return this.#control.pause(name);
  }

  resume(name: string): Promise<VmRecord> {
    return this.#control.resume(name);
  }

  shutdown(name: string): Promise<VmRecord> {
    return this.#control.shutdown(name);
  }

  /** Powers the guest off, undefines it, and removes its record and files. */
  async destroy(name: string): Promise<void> {
    await this.#control.destroy(name);
    await this.#removeFiles(name);
    const at = this.#made.indexOf(name);
    if (at >= 0) this.#made.splice(at, 1);
  }

  list(): Promise<VmRecord[]> {
    return listVms(this.#o.redis, this.#o.keys);
  }

  /** Shuts down (gracefully: the workers flush their records) and removes every VM this driver made. */
  async close(): Promise<void> {
    // Guests still booting are torn down by their own start() (within a second); the rest shut down.
    this.#closing = true;
    await Promise.allSettled([...this.#inFlight]);
    for (const name of [...this.#made]) {
      const record = await readVm(this.#o.redis, this.#o.keys, name).catch(() => null);
      if (record?.state === 'running' || record?.state === 'paused') await this.shutdown(name).catch(() => undefined);
      await this.destroy(name).catch(() => undefined);
    }
  }

  async #removeFiles(name: string): Promise<void> {
    const files = this.#files(name);
    await Promise.all([files.initrd, files.xml, files.console].map((file) => rm(file, { force: true })));
  }
}

/** The newest Debian kernel in /boot (`vmlinuz-<version>`) with its version, or null. */
export async function newestKernel(): Promise<{ kernel: string; version: string } | null> {
  const names = (await readdir('/boot').catch(() => [] as string[])).filter((name) => /^vmlinuz-\d/.test(name));
  const version = names.map((name) => name.slice('vmlinuz-'.length)).sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1);
  return version === undefined ? null : { kernel: `/boot/vmlinuz-${version}`, version };
}
