/**
 * The libvirt driver's parts against Debian's libvirt: the domain XML of each kind of guest passes
 * libvirt's own schema (virt-xml-validate), runs a whole lifecycle on libvirt's test driver, and
 * virsh's errors become ours; the per-guest seeded initramfs carries the worker's secrets. (Real
 * QEMU guests booted through libvirt: guest.isolated.test.ts.)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { domainXml, GUEST_HYPERVISORS, guestSpec, guestSpecs, LibvirtDriver, seededInitrd, Virsh, xenCap, type GuestHypervisor, type GuestSpec } from '../deploy/libvirt/index.js';
import { EmbeddedRedis } from '../queue/index.js';
import { RedisKeys } from '../queue/keys.js';
import { repoRoot } from './support/data.js';
import { ecgfaas } from './support/processes.js';

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-libvirt-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** virt-xml-validate's verdict on a document ("<file> validates", or its errors). */
async function validate(xml: string, name: string): Promise<string> {
  const file = path.join(dir, `${name}.xml`);
  await writeFile(file, xml);
  try {
    const { stdout, stderr } = await run('virt-xml-validate', [file, 'domain']);
    return `${stdout}${stderr}`.trim();
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string };
    return `${failure.stdout ?? ''}${failure.stderr ?? ''}`.trim();
  }
}

function kernelGuest(hypervisor: GuestHypervisor): GuestSpec {
  const shares = hypervisor === 'kvm' || hypervisor === 'qemu' ? [{ source: '/', tag: 'hostroot', readonly: true }] : [];
  return {
    name: `k-${hypervisor}`, hypervisor, vcpus: 2, cpuset: [0, 1], memoryMb: 512, runAsRoot: true, shares,
    boot: { kernel: '/boot/vmlinuz', initrd: '/tmp/initrd & more.img', cmdline: 'console=ttyS0 ecgfaas.worker=k-w1' },
    disks: [{ file: '/tmp/seed.img', readonly: true }],
  };
}

function diskGuest(hypervisor: GuestHypervisor): GuestSpec {
  return { name: `d-${hypervisor}`, hypervisor, vcpus: 1, memoryMb: 256, boot: { disk: '/var/lib/ecgfaas/guest.qcow2', format: 'qcow2' }, network: { kind: 'network', name: 'default' } };
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_' });

describe.each([...GUEST_HYPERVISORS])('domain XML for %s', (hypervisor) => {
  it('passes libvirt\'s schema, booting a kernel or a disk', async () => {
    expect(await validate(domainXml(kernelGuest(hypervisor)), `k-${hypervisor}`)).toMatch(/validates$/);
    expect(await validate(domainXml(diskGuest(hypervisor)), `d-${hypervisor}`)).toMatch(/validates$/);
  });

  it('says what differs between hypervisors, and escapes values', () => {
    const xml = domainXml(kernelGuest(hypervisor));
    const domain = (parser.parse(xml) as { domain: Record<string, any> }).domain;
    expect(domain['@_type']).toBe({ kvm: 'kvm', qemu: 'qemu', 'xen-hvm': 'xen', 'xen-pv': 'xen' }[hypervisor]);
    expect(domain.os.type['#text']).toBe(hypervisor === 'xen-pv' ? 'linux' : 'hvm');
    expect(domain.os.loader).toBe(hypervisor === 'xen-hvm' ? '/usr/lib/xen/boot/hvmloader' : undefined);
    expect(domain.features === undefined || domain.features === '' ? [] : Object.keys(domain.features)).toEqual(hypervisor === 'xen-pv' ? [] : expect.arrayContaining(['acpi', 'apic']));
    expect(domain.devices.console.target['@_type']).toBe(hypervisor === 'xen-pv' ? 'xen' : 'serial');
    expect(domain.cputune.vcpupin.map((pin: Record<string, unknown>) => [pin['@_vcpu'], pin['@_cpuset']])).toEqual([['0', '0'], ['1', '1']]);
    if (hypervisor === 'kvm' || hypervisor === 'qemu') {
      expect(domain.devices.filesystem).toMatchObject({ '@_multidevs': 'remap', source: { '@_dir': '/' }, target: { '@_dir': 'hostroot' } });
    }
    expect(xml).toContain('/tmp/initrd &amp; more.img');
  });

  it('runs a whole lifecycle on libvirt\'s test driver: define, start, suspend, resume, shutdown, start, destroy, undefine', async () => {
    const spec = { ...kernelGuest(hypervisor), shares: [], runAsRoot: false, name: `life-${hypervisor}` };
    const file = path.join(dir, `life-${hypervisor}.xml`);
    await writeFile(file, domainXml(spec));
    const name = spec.name;
    // The test driver's state lives in one virsh process: the whole lifecycle is one script.
    const result = await new Virsh('test:///default').script([
      `define ${file}`, `start ${name}`, `domstate ${name}`, `suspend ${name}`, `domstate ${name}`, `resume ${name}`, `domstate ${name}`,
      `shutdown ${name}`, `domstate ${name}`, `start ${name}`, `destroy ${name}`, `domstate ${name}`, `undefine ${name}`, 'list --all --name',
    ]);
    expect(result.stderr).toBe('');
    const lines = result.stdout.split('\n').map((line) => line.trim()).filter((line) => line !== '');
    expect(lines).toEqual([
      `Domain '${name}' defined from ${file}`, `Domain '${name}' started`, 'running', `Domain '${name}' suspended`, 'paused',
      `Domain '${name}' resumed`, 'running', `Domain '${name}' is being shutdown`, 'shut off', `Domain '${name}' started`,
      `Domain '${name}' destroyed`, 'shut off', `Domain '${name}' has been undefined`, 'test',
    ]);
  });
});

describe('guest specs and errors', () => {
  it('refuses a spec libvirt cannot have, with every problem named', () => {
    expect(() => domainXml({ ...diskGuest('xen-pv'), vcpus: 0.5, shares: [{ source: '/', tag: 'root' }] })).toThrow(
      /GUEST_SPEC_INVALID|vcpus 0.5 must be a whole number.*xen-pv guests cannot have 9p shares/,
    );
    expect(() => domainXml({ ...diskGuest('kvm'), name: 'bad name' })).toThrow(/name "bad name"/);
  });

  it('turns virsh\'s errors into ours', async () => {
    await expect(new Virsh('test:///default').call(['start', 'no-such-guest'])).rejects.toMatchObject({ code: 'VM_NOT_FOUND', message: expect.stringContaining('no-such-guest') });
    await expect(new Virsh('test:///default').call(['resume', 'test'])).rejects.toMatchObject({ code: 'VM_BAD_STATE' });
    await expect(new Virsh(`qemu+unix:///system?socket=${path.join(dir, 'no-socket')}`).call(['list'])).rejects.toMatchObject({ code: 'LIBVIRT_UNREACHABLE' });
  });

  it('gives each VM its name, worker id and share, and pins vCPUs round robin', () => {
    const specs = guestSpecs({ hypervisor: 'qemu', vms: 2, namePrefix: 'g', vcpus: 1, memoryMb: 512, kernel: '/k', initrd: '/i', pinCpus: [1] });
    expect(specs.map((spec) => [spec.name, spec.cpuset, 'kernel' in spec.boot ? spec.boot.cmdline : null])).toEqual([
      ['g-1', [1], 'console=ttyS0 quiet panic=-1 ecgfaas.vm=g-1 ecgfaas.worker=g-1-w1 ecgfaas.root=9p:hostroot ecgfaas.net=user'],
      ['g-2', [1], 'console=ttyS0 quiet panic=-1 ecgfaas.vm=g-2 ecgfaas.worker=g-2-w1 ecgfaas.root=9p:hostroot ecgfaas.net=user'],
    ]);
  });

  it('gives Xen guests the root image on their block frontend, a bridge and DHCP; no 9p', () => {
    for (const hypervisor of ['xen-pv', 'xen-hvm'] as const) {
      const [spec] = guestSpecs({ hypervisor, vms: 1, namePrefix: 'x', vcpus: 1, memoryMb: 512, kernel: '/k', initrd: '/i', rootImage: '/images/rootfs.img' });
      expect(spec).toMatchObject({
        network: { kind: 'bridge', name: 'xenbr0' }, disks: [{ file: '/images/rootfs.img', readonly: true, format: 'raw' }],
        boot: { cmdline: expect.stringContaining(`${hypervisor === 'xen-pv' ? 'console=hvc0' : 'console=ttyS0'} quiet panic=-1 ecgfaas.vm=x-1 ecgfaas.worker=x-1-w1 ecgfaas.root=disk:/dev/xvda ecgfaas.net=dhcp`) },
      });
      expect(spec?.shares).toBeUndefined();
      expect(domainXml(spec as GuestSpec)).toMatch(/<target dev="xvda" bus="xen"\/>\s*<readonly\/>/);
      expect(() => guestSpecs({ hypervisor, vms: 1, namePrefix: 'x', vcpus: 1, memoryMb: 512, kernel: '/k', initrd: '/i' })).toThrow(/no 9p share of the host's root; give them a root image/);
    }
    const [kvm] = guestSpecs({ hypervisor: 'kvm', vms: 1, namePrefix: 'k', vcpus: 1, memoryMb: 512, kernel: '/k', initrd: '/i', rootImage: '/images/rootfs.img', net: 'static:10.1.0.5/24:10.1.0.1:10.1.0.1' });
    expect(kvm?.boot).toMatchObject({ cmdline: expect.stringContaining('ecgfaas.root=disk:/dev/vda ecgfaas.net=static:10.1.0.5/24:10.1.0.1:10.1.0.1') });
    // Static addresses count up, one per guest (across an octet too).
    const statics = guestSpecs({ hypervisor: 'xen-pv', vms: 3, namePrefix: 's', vcpus: 1, memoryMb: 512, kernel: '/k', initrd: '/i', rootImage: '/r.img', net: 'static:10.1.0.254/16:10.1.0.1' });
    expect(statics.map((spec) => ('kernel' in spec.boot ? spec.boot.cmdline : '')?.match(/ecgfaas\.net=(\S+)/)?.[1])).toEqual([
      'static:10.1.0.254/16:10.1.0.1', 'static:10.1.0.255/16:10.1.0.1', 'static:10.1.1.0/16:10.1.0.1',
    ]);
    expect(() => guestSpecs({ hypervisor: 'kvm', vms: 1, namePrefix: 'k', vcpus: 1, memoryMb: 512, kernel: '/k', initrd: '/i', net: 'static:10.1.0.5' })).toThrow(/network setting "static:10.1.0.5"/);
  });

  it('appends a seed archive to a copy of the initramfs (mode 0600), which the kernel unpacks after the base', async () => {
    const base = path.join(dir, 'base.img');
    const baseArchive = gzipSync(Buffer.from('base archive stands here'));
    await writeFile(base, baseArchive);
    const out = await seededInitrd(base, path.join(dir, 'seeded', 'g.initrd'), { 'seed/worker.env': "AWS_SECRET_ACCESS_KEY='s3cr3t'\n" });
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const combined = await readFile(out);
    expect(combined.subarray(0, baseArchive.length).equals(baseArchive)).toBe(true);
    const seed = gunzipSync(combined.subarray(baseArchive.length));
    const listing = await new Promise<string>((resolve, reject) => {
      const child = execFile('cpio', ['-itv', '--quiet'], (error, stdout) => (error ? reject(error) : resolve(stdout)));
      child.stdin?.end(seed);
    });
    expect(listing).toMatch(/^drwx------ .* root +root .* seed$/m);
    expect(listing).toMatch(/^-rw------- .* root +root .* seed\/worker\.env$/m);
    expect(seed.toString('latin1')).toContain("AWS_SECRET_ACCESS_KEY='s3cr3t'");
    await expect(seededInitrd(base, path.join(dir, 'bad.initrd'), { '../escape': 'x' })).rejects.toMatchObject({ code: 'DEPLOY_INITRD_FAILED' });
  });
});

describe('the libvirt driver closing', () => {
  it('waits for a VM being made (as by a scale-out pass) and removes it; makes and starts nothing after', async () => {
    const redisServer = new EmbeddedRedis({ directory: path.join(dir, 'closing-redis') });
    const redis = new Redis(await redisServer.start());
    try {
      const base = path.join(dir, 'closing-base.img');
      await writeFile(base, gzipSync(Buffer.from('base')));
      const driver = new LibvirtDriver({
        redis, keys: new RedisKeys('closing'), connect: 'test:///default', hypervisor: 'kvm', guestRedisUrl: 'redis://10.0.2.2:6379',
        guestS3: { region: 'us-east-1', bucket: 'none', forcePathStyle: true, endpoint: 'http://10.0.2.2:1', accessKeyId: 'none', secretAccessKey: 'none' },
        kernel: '/boot/vmlinuz', initrd: base, checkout: repoRoot, stateDir: path.join(dir, 'closing-state'),
      });
      // close() begins while the VM is still being defined: it must not miss it.
      const creating = driver.create({ name: 'late-1', vcpus: 1, memoryMb: 256 });
      await driver.close();
      await expect(creating).resolves.toMatchObject({ name: 'late-1', state: 'shut-off' });
      expect(await driver.list()).toEqual([]);
      expect(await readFile(path.join(dir, 'closing-state', 'late-1.initrd')).catch(() => null)).toBeNull();
      await expect(driver.create({ name: 'late-2', vcpus: 1, memoryMb: 256 })).rejects.toMatchObject({ code: 'DEPLOY_BOOT_FAILED', message: expect.stringContaining('closing') });
      await expect(driver.start('late-1')).rejects.toMatchObject({ code: 'DEPLOY_BOOT_FAILED', message: expect.stringContaining('closing') });
    } finally {
      redis.disconnect();
      await redisServer.close();
    }
  });
});

describe('ecgfaas deploy --driver libvirt', () => {
  it('--print-xml prints one valid document per VM, separated by ---, and creates nothing', async () => {
    const result = await ecgfaas(['deploy', '--driver', 'libvirt', '--hypervisor', 'kvm', '--vms', '2', '--vcpus', '2', '--pin-cpus', '0,1', '--cmdline', 'loglevel=4', '--print-xml']);
    expect(result.code, result.stderr).toBe(0);
    const documents = result.stdout.trimEnd().split('\n---\n');
    expect(documents).toHaveLength(2);
    for (const [index, xml] of documents.entries()) {
      expect(xml).toContain(`<name>vm-${index + 1}</name>`);
      // What a deploy would define: the guest's own seeded initramfs, and the worker's settings on the command line.
      expect(xml).toMatch(new RegExp(`<initrd>[^<]*/\\.ecgfaas/guest/vm-${index + 1}\\.initrd</initrd>`));
      expect(xml).toMatch(/ecgfaas\.root=9p:hostroot ecgfaas\.net=user ecgfaas\.redis=redis:\/\/10\.0\.2\.2:\d+ ecgfaas\.dir=\S+ ecgfaas\.host=\S+ ecgfaas\.args=--prefix,ecgfaas,--model,default,--extra-compute-ms,0 loglevel=4</);
      expect(await validate(xml, `cli-${index}`)).toMatch(/validates$/);
    }
  });

  it('--print-xml for Xen guests attaches the root image (default .ecgfaas/guest/rootfs.img) read-only, and the XML validates', async () => {
    for (const hypervisor of ['xen-pv', 'xen-hvm']) {
      const result = await ecgfaas(['deploy', '--driver', 'libvirt', '--hypervisor', hypervisor, '--vms', '1', '--print-xml']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/<source file="[^"]*\/\.ecgfaas\/guest\/rootfs\.img"\/>/);
      expect(result.stdout).toContain('ecgfaas.root=disk:/dev/xvda ecgfaas.net=dhcp');
      expect(await validate(result.stdout, `cli-${hypervisor}`)).toMatch(/validates$/);
    }
    const qemu = await ecgfaas(['deploy', '--driver', 'libvirt', '--hypervisor', 'qemu', '--vms', '1', '--disk', '/images/r.img', '--guest-net', 'dhcp', '--print-xml']);
    expect(qemu.stdout).toMatch(/<source file="\/images\/r\.img"\/>\s*<target dev="vda" bus="virtio"\/>\s*<readonly\/>/);
    expect(qemu.stdout).not.toContain('hostroot');
  });

  it('warns when the root image holds other code than this checkout (its provenance file says which commit)', async () => {
    const image = path.join(dir, 'prov.img');
    await writeFile(image, '');
    const printXml = () => ecgfaas(['deploy', '--driver', 'libvirt', '--hypervisor', 'kvm', '--vms', '1', '--disk', image, '--print-xml']);
    const none = await printXml();
    expect([none.code, none.stderr]).toEqual([0, expect.stringMatching(/\[IMAGE_STALE\]: root image .*prov\.img has no provenance/)]);
    const provenance = { builtAt: '2026-11-01T00:00:00.000Z', suite: 'trixie', node: '20.19.2', commit: 'deadbeef'.repeat(5), dirty: false };
    await writeFile(`${image}.json`, JSON.stringify(provenance));
    const old = await printXml();
    expect(old.code).toBe(0);
    expect(old.stderr).toMatch(/\[IMAGE_STALE\]: root image .*prov\.img was built from commit deadbeefdead on 2026-11-01T00:00:00\.000Z, this checkout is at [0-9a-f]{12}/);
    const { stdout: head } = await run('git', ['-C', repoRoot, 'rev-parse', 'HEAD']);
    await writeFile(`${image}.json`, JSON.stringify({ ...provenance, commit: head.trim() }));
    // This checkout's commit: no stale-commit warning (one about uncommitted changes only while developing).
    expect((await printXml()).stderr).not.toMatch(/was built from commit|no provenance/);
  });

  it('refuses a bad --guest-net, a missing root image, and a bridge without the guests\' endpoints, before touching anything', async () => {
    const net = await ecgfaas(['deploy', '--driver', 'libvirt', '--vms', '1', '--guest-net', 'static:10.0.0.1', '--print-xml']);
    expect([net.code, net.stderr]).toEqual([2, expect.stringContaining('[CLI_BAD_OPTION]: --guest-net "static:10.0.0.1"')]);
    const image = await ecgfaas(['deploy', '--driver', 'libvirt', '--hypervisor', 'xen-pv', '--vms', '1', '--disk', path.join(dir, 'none.img')]);
    expect([image.code, image.stderr]).toEqual([2, expect.stringMatching(/\[CLI_NO_IMAGE\]: root image .*none\.img not found: build it with `ecgfaas image build/)]);
    await writeFile(path.join(dir, 'some.img'), '');
    const endpoints = await ecgfaas(['deploy', '--driver', 'libvirt', '--hypervisor', 'xen-hvm', '--vms', '1', '--disk', path.join(dir, 'some.img'), '--redis', 'redis://127.0.0.1:1']);
    expect([endpoints.code, endpoints.stderr]).toEqual([2, expect.stringContaining('[CLI_GUEST_ENDPOINTS]:')]);
  });

  it('gives a fractional vCPU as a whole vCPU with a CPU quota (schema-valid), and refuses several workers for a guest, before touching anything', async () => {
    const fractional = await ecgfaas(['deploy', '--driver', 'libvirt', '--vms', '1', '--vcpus', '0.5', '--print-xml']);
    expect(fractional.code, fractional.stderr).toBe(0);
    expect(fractional.stdout).toMatch(/<vcpu placement="static">1<\/vcpu>/);
    expect(fractional.stdout).toMatch(/<cputune>\s*<period>100000<\/period>\s*<quota>50000<\/quota>\s*<\/cputune>/);
    const xml = path.join(dir, 'fractional.xml');
    await writeFile(xml, fractional.stdout);
    const validated = await run('virt-xml-validate', [xml, 'domain']).then(() => 0, (error: { code: number }) => error.code);
    expect(validated).toBe(0);
    // Two and a half vCPUs: three whole ones, each at most 5/6 of a CPU.
    expect(domainXml({ ...guestSpec('g', 0, { hypervisor: 'kvm', vcpus: 2.5, memoryMb: 512, kernel: '/k', initrd: '/i' }) })).toMatch(/<vcpu placement="static">3<\/vcpu>[\s\S]*<quota>83333<\/quota>/);
    // Xen's cap is set by the driver after defining the guest, not in the XML.
    expect(domainXml(guestSpec('x', 0, { hypervisor: 'xen-pv', vcpus: 0.5, memoryMb: 512, kernel: '/k', initrd: '/i', rootImage: '/r.img' }))).not.toContain('<quota>');
    expect(xenCap(0.5)).toBe(50);
    const several = await ecgfaas(['deploy', '--driver', 'libvirt', '--vms', '1', '--workers-per-vm', '2']);
    expect(several.code).toBe(2);
    expect(several.stderr).toContain('one worker');
  });
});
