/** `ecgfaas deploy`, `ecgfaas vms`, `ecgfaas vm pause|resume|shutdown|destroy NAME`: VMs and their warm workers. */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import pLimit from 'p-limit';
import { listVms, LocalVmDriver, ScaleOutService, vmControl, type VmRecord } from '../../deploy/index.js';
import { DEFAULT_ROOT_IMAGE, staleImageWarning } from '../../deploy/image/index.js';
import { asSeenFromGuest, domainXml, ensureInitrd, GUEST_HYPERVISORS, definedGuest, DeployError, isGuestNet, LibvirtDriver, newestKernel, type GuestDefinition, type GuestHypervisor } from '../../deploy/libvirt/index.js';
import { s3SettingsFromEnv } from '../../storage/index.js';
import { RedisKeys } from '../../queue/keys.js';
import { CliError, integerOption, numberOption, PACKAGE_ROOT, printJson, redisUrlOf, withRedis } from '../common.js';
import { createLogger, untilSignal } from '../runtime.js';
import { RedisClock } from '../../queue/clock.js';
import { exists } from '../../worker/facts/index.js';

function formatVms(records: VmRecord[]): string {
  if (records.length === 0) return 'no VMs';
  const lines = ['NAME            STATE     DRIVER  HOST                 VCPUS  MEMORY  CGROUP  WORKERS'];
  for (const vm of records) {
    lines.push(`${vm.name.padEnd(15)} ${vm.state.padEnd(9)} ${vm.driver.padEnd(7)} ${vm.host.slice(0, 20).padEnd(20)} ${String(vm.vcpus).padStart(5)}  ${String(vm.memoryMb).padStart(6)}  ${(vm.cgroup ?? '-').padEnd(6)}  ${vm.workers.map((w) => `${w.workerId}${w.pid === null ? '' : `(${w.pid})`}`).join(', ') || '-'}`);
  }
  return lines.join('\n');
}

const DEFAULT_INITRD = '.ecgfaas/guest/initrd.img';
/** Where deploy keeps its guests' files (seeded initramfs, XML, console logs). */
const GUEST_STATE_DIR = path.resolve('.ecgfaas', 'guest');

/** The VMs a deploy makes: <prefix>-1 ... <prefix>-N. */
function guestNames(flags: { vms: number; namePrefix: string }): string[] {
  return Array.from({ length: flags.vms }, (_, index) => `${flags.namePrefix}-${index + 1}`);
}

export function registerDeploy(program: Command): void {
  program
    .command('deploy')
    .description('Start VMs of warm workers with a deploy driver and keep them until Ctrl-C (local: cgroup-confined process groups on this host)')
    .addOption(new Option('--driver <driver>', 'deploy driver').choices(['local', 'libvirt']).default('local'))
    .addOption(new Option('--hypervisor <kind>', 'libvirt: the guests\' hypervisor').choices([...GUEST_HYPERVISORS]).default('qemu'))
    .option('--connect <uri>', 'libvirt: connection URI (qemu:///system, qemu+ssh://host/system, xen:///system, test:///default)', 'qemu:///system')
    .option('--print-xml', 'libvirt: print the domain XML of each VM (documents separated by a line ---) and create nothing')
    .option('--kernel <path>', 'libvirt: kernel the guests boot (default: the newest /boot/vmlinuz-*)')
    .option('--guest-redis <url>', 'libvirt: Redis as the guests reach it (default: --redis, its loopback address as 10.0.2.2 for QEMU user networking)')
    .option('--guest-s3-endpoint <url>', 'libvirt: S3 as the guests reach it (default: ECGFAAS_S3_ENDPOINT, loopback as 10.0.2.2)')
    .option('--boot-timeout-s <s>', 'libvirt: how long a guest may take to start its worker', integerOption('--boot-timeout-s', 10, 3600), 300)
    .option('--boot-concurrency <n>', 'libvirt: guests booting at once (each takes about a host CPU while it boots)', integerOption('--boot-concurrency', 1, 64), 2)
    .option('--initrd <path>', 'libvirt: initramfs that starts the worker (the default is built, and rebuilt when its sources change; another is built only when missing)', DEFAULT_INITRD)
    .option('--cmdline <text>', 'libvirt: appended to the guests\' kernel command line')
    .option('--disk <image>', `libvirt: the workers' root file system, a disk image from \`ecgfaas image build\`, attached read-only (default: KVM and QEMU guests see the host's root over 9p; Xen guests take ${DEFAULT_ROOT_IMAGE})`)
    .option('--guest-net <mode>', 'libvirt: how guests set up their network: user (QEMU user networking), dhcp, static:ADDR/PREFIX:GATEWAY[:DNS] (default: user on QEMU user networking, else dhcp)')
    .option('--bridge <name>', 'libvirt: attach the guests to this host bridge (default for Xen: xenbr0; KVM and QEMU: user networking)')
    .option('--pin-cpus <list>', 'libvirt: pin vCPUs to these host CPUs, e.g. 1,2,3')
    .requiredOption('--vms <n>', 'VMs to start', integerOption('--vms', 1, 64))
    .option('--vcpus <n>', 'vCPUs of each VM; a fraction is a CPU quota (local: its cgroup; libvirt: whole vCPUs capped by <cputune> quota, or a Xen credit cap)', numberOption('--vcpus', 0.01, 256), 1)
    .option('--memory-mb <n>', 'memory of each VM', integerOption('--memory-mb', 64), 1024)
    .option('--workers-per-vm <n>', 'warm workers in each VM', integerOption('--workers-per-vm', 1, 16), 1)
    .option('--name-prefix <prefix>', 'VMs are named <prefix>-1, <prefix>-2, ...', 'vm')
    .option('--model <name|path>', 'ONNX model of the workers', 'default')
    .option('--extra-compute-ms <ms>', 'CPU burnt per packet by the functions (the paper: ~305)', integerOption('--extra-compute-ms', 0), 0)
    .option('--logs <dir>', "directory for the workers' logs")
    .option('--no-confine', 'run the VMs without cgroups even where they are available')
    .option('--no-scale-out', 'do not make the VMs placement asks for (policy onNoCapacity: scale-out)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .action(async (flags: {
      vms: number; vcpus: number; memoryMb: number; workersPerVm: number; namePrefix: string; model: string; extraComputeMs: number;
      logs?: string; confine: boolean; scaleOut: boolean; redis?: string; prefix: string;
      driver: 'local' | 'libvirt'; hypervisor: GuestHypervisor; connect: string; printXml?: boolean; kernel?: string; initrd: string; cmdline?: string; disk?: string; pinCpus?: string;
      guestRedis?: string; guestS3Endpoint?: string; bootTimeoutS: number; bootConcurrency: number; guestNet?: string; bridge?: string;
    }) => {
      if (!/^[A-Za-z0-9_-]{1,40}$/.test(flags.namePrefix)) throw new CliError('CLI_BAD_NAME', `--name-prefix "${flags.namePrefix}" must be 1-40 of [A-Za-z0-9_-]`, 2);
      if (flags.driver === 'libvirt') {
        const pinCpus = flags.pinCpus?.split(',').map((cpu) => Number(cpu.trim()));
        if (pinCpus?.some((cpu) => !Number.isInteger(cpu) || cpu < 0)) throw new CliError('CLI_BAD_NUMBER', `--pin-cpus "${flags.pinCpus}" must list host CPU numbers, e.g. 1,2,3`, 2);
        if (flags.workersPerVm !== 1) throw new CliError('CLI_BAD_NUMBER', 'a libvirt guest runs one worker (--workers-per-vm 1)', 2);
        if (flags.guestNet !== undefined && !isGuestNet(flags.guestNet)) {
          throw new CliError('CLI_BAD_OPTION', `--guest-net "${flags.guestNet}" must be user, dhcp or static:ADDRESS/PREFIX:GATEWAY[:DNS]`, 2);
        }
        const kernel = flags.kernel ?? (await newestKernel())?.kernel ?? '/boot/vmlinuz';
        const xen = flags.hypervisor.startsWith('xen');
        const disk = flags.disk ?? (xen ? DEFAULT_ROOT_IMAGE : undefined);
        const diskExists = disk !== undefined && await exists(disk);
        if (!flags.printXml && disk !== undefined && !diskExists) {
          throw new CliError('CLI_NO_IMAGE', `root image ${disk} not found: build it with \`ecgfaas image build --out ${disk}\`${xen ? ' (Xen guests have no 9p share of the host\'s root)' : ''}`, 2);
        }
        // Printing needs no Redis: the guests' Redis URL in the XML then comes from REDIS_URL or the default port.
        const url = flags.printXml ? flags.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' : redisUrlOf(flags.redis);
        const definition: GuestDefinition = {
          // The host's loopback is 10.0.2.2 only on QEMU's user-mode network (bridged guests need --guest-redis to deploy).
          hypervisor: flags.hypervisor, kernel, checkout: PACKAGE_ROOT, stateDir: GUEST_STATE_DIR, guestRedisUrl: flags.guestRedis ?? (xen || flags.bridge !== undefined ? url : asSeenFromGuest(url)),
          workerArgs: ['--prefix', flags.prefix, '--model', flags.model, '--extra-compute-ms', String(flags.extraComputeMs)],
          ...(disk !== undefined ? { rootImage: path.resolve(disk) } : {}), ...(pinCpus !== undefined ? { pinCpus } : {}),
          ...(flags.guestNet !== undefined ? { net: flags.guestNet } : {}), ...(flags.bridge !== undefined ? { network: { kind: 'bridge' as const, name: flags.bridge } } : {}),
          ...(flags.cmdline !== undefined ? { cmdline: flags.cmdline } : {}),
        };
        if (disk !== undefined && diskExists) {
          const stale = await staleImageWarning(path.resolve(disk), PACKAGE_ROOT);
          if (stale !== null) process.stderr.write(`ecgfaas: warning [IMAGE_STALE]: ${stale}\n`);
        }
        if (flags.printXml) {
          // Exactly what a deploy would define (each guest's initramfs is the base with its seed appended).
          const documents = guestNames(flags).map((name, index) => domainXml(definedGuest(definition, { name, vcpus: flags.vcpus, memoryMb: flags.memoryMb }, index)).trimEnd());
          process.stdout.write(`${documents.join('\n---\n')}\n`);
          return;
        }
        await deployGuests(flags, url, definition);
        return;
      }
      const url = redisUrlOf(flags.redis);
      if (flags.logs !== undefined) await mkdir(flags.logs, { recursive: true });
      await withRedis(url, async (redis) => {
        const driver = new LocalVmDriver({
          redis, keys: new RedisKeys(flags.prefix),
          workerArgs: ['--redis', url, '--prefix', flags.prefix, '--model', flags.model, '--extra-compute-ms', String(flags.extraComputeMs)],
          ...(flags.logs !== undefined ? { logsDir: flags.logs } : {}),
          ...(flags.confine ? {} : { confine: false }),
        });
        const stopped = untilSignal();
        const clock = new RedisClock(redis, {});
        let scaleOut: ScaleOutService | null = null;
        try {
          await clock.start();
          for (let index = 1; index <= flags.vms; index++) {
            const name = `${flags.namePrefix}-${index}`;
            await driver.create({ name, vcpus: flags.vcpus, memoryMb: flags.memoryMb, workers: flags.workersPerVm });
            await driver.start(name);
          }
          if (flags.scaleOut) {
            // Placement (gateways, `monitors add`) may now ask this driver for VMs (policy onNoCapacity: scale-out).
            scaleOut = new ScaleOutService({ redis, keys: new RedisKeys(flags.prefix), driver, logger: createLogger('deploy'), now: () => clock.now() });
            await scaleOut.start();
          }
          printJson({ event: 'ready', vms: await driver.list(), scaleOut: flags.scaleOut });
          await stopped;
        } finally {
          await scaleOut?.close();
          await driver.close();
          await clock.close();
        }
      });
    });

  program
    .command('vms')
    .description('List the VMs the deploy drivers manage')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .option('--json', 'print a JSON array')
    .action(async (flags: { redis?: string; prefix: string; json?: boolean }) => {
      const records = await withRedis(redisUrlOf(flags.redis), (redis) => listVms(redis, new RedisKeys(flags.prefix)));
      if (flags.json) printJson(records);
      else process.stdout.write(`${formatVms(records)}\n`);
    });

  program
    .command('vm')
    .description('Pause, resume, shut down or destroy a VM')
    .addArgument(new Command().createArgument('<action>', 'pause | resume | shutdown | destroy').choices(['pause', 'resume', 'shutdown', 'destroy']))
    .argument('<name>', 'the VM (ecgfaas vms lists them)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .option('--json', 'print the VM record after the action')
    .action(async (action: 'pause' | 'resume' | 'shutdown' | 'destroy', name: string, flags: { redis?: string; prefix: string; json?: boolean }) => {
      await withRedis(redisUrlOf(flags.redis), async (redis) => {
        const control = vmControl(redis, new RedisKeys(flags.prefix));
        if (action === 'destroy') {
          await control.destroy(name);
          if (flags.json) printJson({ name, destroyed: true });
          else process.stdout.write(`${name}: destroyed\n`);
          return;
        }
        const record = await control[action](name);
        if (flags.json) printJson(record);
        else process.stdout.write(`${name}: ${record.state}\n`);
      });
    });
}

/** `ecgfaas deploy --driver libvirt`: guests of one worker each, kept until Ctrl-C, then shut down and removed. */
async function deployGuests(
  flags: {
    vms: number; vcpus: number; memoryMb: number; namePrefix: string; model: string; extraComputeMs: number; redis?: string; prefix: string;
    hypervisor: GuestHypervisor; connect: string; initrd: string; guestRedis?: string; guestS3Endpoint?: string; bootTimeoutS: number; bootConcurrency: number; scaleOut: boolean;
  },
  url: string,
  definition: GuestDefinition,
): Promise<void> {
  // The host's loopback is 10.0.2.2 only on QEMU's user-mode network; on a bridge the guests need real addresses.
  const bridged = definition.network !== undefined || flags.hypervisor.startsWith('xen');
  const endpointsNeeded = () => new CliError('CLI_GUEST_ENDPOINTS', 'guests on a bridge reach Redis and S3 at addresses of the host\'s network: give --guest-redis and --guest-s3-endpoint', 2);
  if (bridged && flags.guestRedis === undefined) throw endpointsNeeded();
  const s3 = s3SettingsFromEnv();
  if (bridged && s3.endpoint !== undefined && flags.guestS3Endpoint === undefined) throw endpointsNeeded();
  const kernelVersion = path.basename(definition.kernel).replace(/^vmlinuz-/, '');
  const initrd = await ensureInitrd(path.resolve(flags.initrd), /^\d/.test(kernelVersion) ? kernelVersion : undefined, { keepExisting: flags.initrd !== DEFAULT_INITRD });
  await withRedis(url, async (redis) => {
    const driver = new LibvirtDriver({
      ...definition, redis, keys: new RedisKeys(flags.prefix), connect: flags.connect, initrd, bootTimeoutMs: flags.bootTimeoutS * 1000,
      guestS3: { ...s3, ...(s3.endpoint !== undefined || flags.guestS3Endpoint !== undefined ? { endpoint: flags.guestS3Endpoint ?? asSeenFromGuest(s3.endpoint as string) } : {}) },
    });
    const stopped = untilSignal();
    const clock = new RedisClock(redis, {});
    let scaleOut: ScaleOutService | null = null;
    try {
      await clock.start();
      const names = guestNames(flags);
      for (const name of names) await driver.create({ name, vcpus: flags.vcpus, memoryMb: flags.memoryMb });
      // Guests boot a few at a time (each takes about a host CPU while it boots); Ctrl-C during the
      // boots stops them at once (close() tears down the guests still booting).
      const limit = pLimit(flags.bootConcurrency);
      const boots = Promise.allSettled(names.map((name) => limit(() => driver.start(name))));
      const first = await Promise.race([boots, stopped.then(() => null)]);
      if (first === null) {
        limit.clearQueue();
        return;
      }
      const failures = first.flatMap((result) => (result.status === 'rejected' ? [result.reason as Error] : []));
      if (failures.length > 0) {
        const [only] = failures;
        if (failures.length === 1 && only !== undefined) throw only;
        throw new DeployError('DEPLOY_BOOT_FAILED', `${failures.length} of ${names.length} guests did not come up; all are torn down:\n${failures.map((error) => error.message).join('\n')}`);
      }
      if (flags.scaleOut) {
        // Placement (policy onNoCapacity: scale-out) may now ask for more guests: this driver boots them.
        scaleOut = new ScaleOutService({
          redis, keys: new RedisKeys(flags.prefix), driver, logger: createLogger('deploy'), now: () => clock.now(), hypervisor: flags.hypervisor, ...(definition.host !== undefined ? { host: definition.host } : {}),
        });
        await scaleOut.start();
      }
      printJson({ event: 'ready', vms: await driver.list(), scaleOut: flags.scaleOut });
      await stopped;
    } finally {
      // Stop asking first, then end every boot (a scale-out pass may be booting a guest), then wait for the pass.
      const scaleOutClosed = scaleOut?.close();
      await driver.close();
      await scaleOutClosed;
      await clock.close();
    }
  });
}
