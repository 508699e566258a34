/**
 * libvirt domain XML from one guest spec, for the four kinds of guest the platform runs workers in.
 * What differs between hypervisors (domain type, how the guest boots, its devices' buses, the
 * console) is in one table, HYPERVISORS; everything else is shared. The document is built as an
 * object and written by an XML library (fast-xml-parser's XMLBuilder), which escapes every value:
 * no string concatenation of XML.
 */
import { XMLBuilder } from 'fast-xml-parser';
import { EcgFaasError } from '../../contracts/errors.js';

export type GuestHypervisor = 'kvm' | 'qemu' | 'xen-hvm' | 'xen-pv';
export const GUEST_HYPERVISORS: readonly GuestHypervisor[] = ['kvm', 'qemu', 'xen-hvm', 'xen-pv'];

export interface GuestSpec {
  name: string;
  hypervisor: GuestHypervisor;
  /** Whole vCPUs (libvirt has no fractions; a share below one CPU is the scheduler's quota, not a vCPU). */
  vcpus: number;
  /**
   * CPU the guest may use in all, below its vCPUs (e.g. 0.5 of one vCPU): KVM and QEMU get a CFS
   * quota per vCPU (<cputune> period and quota); Xen's credit scheduler takes a cap instead, which
   * the driver sets after defining the guest (libvirt's Xen driver has no quota in the XML).
   */
  cpuShare?: number;
  /** Pin vCPU i to host CPU cpuset[i % length] (the paper pinned VMs to cores); none: float. */
  cpuset?: readonly number[];
  memoryMb: number;
  /** A kernel (+ initrd, command line) booted directly, or a disk image with its own boot loader. */
  boot: { kernel: string; initrd?: string; cmdline?: string } | { disk: string; format?: 'raw' | 'qcow2' };
  /** Extra disks (e.g. a cloud-init NoCloud seed image). */
  disks?: ReadonlyArray<{ file: string; format?: 'raw' | 'qcow2'; readonly?: boolean }>;
  /** Host folders shared with the guest over 9p (KVM and QEMU guests only). */
  shares?: ReadonlyArray<{ source: string; tag: string; readonly?: boolean }>;
  /** user: QEMU's user-mode network (the host is 10.0.2.2); network/bridge: a libvirt network or a host bridge. */
  network?: { kind: 'user' } | { kind: 'network' | 'bridge'; name: string };
  /** Run QEMU as root (a DAC label of +0:+0): needed when what the guest reads lives under /root. */
  runAsRoot?: boolean;
  /** Keep what the guest prints on its console in this host file (boot failures are read there). */
  consoleLog?: string;
}

interface HypervisorProfile {
  domainType: 'kvm' | 'qemu' | 'xen';
  osType: 'hvm' | 'linux';
  machine: string;
  /** Xen HVM's firmware loader. */
  loader?: string;
  features: string[];
  /** CPU model element (KVM passes the host's through; emulation keeps QEMU's default). */
  cpu?: Record<string, unknown>;
  diskBus: 'virtio' | 'xen';
  /** Network card model (Xen guests use their own netfront: no model). */
  netModel?: string;
  console: 'serial' | 'xen';
  /** 9p shares are a QEMU feature. */
  shares: boolean;
}

const HYPERVISORS: Record<GuestHypervisor, HypervisorProfile> = {
  kvm: {
    domainType: 'kvm', osType: 'hvm', machine: 'pc', features: ['acpi', 'apic'], cpu: { '@_mode': 'host-passthrough' },
    diskBus: 'virtio', netModel: 'virtio', console: 'serial', shares: true,
  },
  qemu: { domainType: 'qemu', osType: 'hvm', machine: 'pc', features: ['acpi', 'apic'], diskBus: 'virtio', netModel: 'virtio', console: 'serial', shares: true },
  // libxl boots HVM guests through its own hvmloader (Debian: /usr/lib/xen-4.17/boot/hvmloader) and
  // reads <loader> only for UEFI; the element keeps libvirt's documented form of a Xen HVM guest.
  'xen-hvm': {
    domainType: 'xen', osType: 'hvm', machine: 'xenfv', loader: '/usr/lib/xen/boot/hvmloader', features: ['acpi', 'apic', 'pae'],
    diskBus: 'xen', console: 'serial', shares: false,
  },
  // Xen PV: libvirt's OS type is `linux` (`xenpv` is older spelling that its test driver rejects); no ACPI, PV console.
  'xen-pv': { domainType: 'xen', osType: 'linux', machine: 'xenpv', features: [], diskBus: 'xen', console: 'xen', shares: false },
};

/** The CFS period of a guest's CPU quota (µs; libvirt's range is 1,000-1,000,000). */
export const CPU_PERIOD_US = 100_000;

/** Each vCPU's quota (µs per period) for `share` CPUs in all over `vcpus` vCPUs (libvirt's minimum is 1,000). */
export function cpuQuotaUs(share: number, vcpus: number): number {
  return Math.max(1000, Math.round((share / vcpus) * CPU_PERIOD_US));
}

/** Xen's credit-scheduler cap for `share` CPUs (% of one physical CPU; 0 would mean no cap). */
export function xenCap(share: number): number {
  return Math.max(1, Math.round(share * 100));
}

export class GuestSpecError extends EcgFaasError {
  constructor(message: string) {
    super('GUEST_SPEC_INVALID', message);
    this.name = 'GuestSpecError';
  }
}

const NAME = /^[A-Za-z0-9_-]{1,48}$/;

export function checkGuestSpec(spec: GuestSpec): GuestSpec {
  const problems: string[] = [];
  if (!NAME.test(spec.name)) problems.push(`name "${spec.name}" must be 1-48 of [A-Za-z0-9_-]`);
  if (!GUEST_HYPERVISORS.includes(spec.hypervisor)) problems.push(`hypervisor "${spec.hypervisor}" is not one of ${GUEST_HYPERVISORS.join(', ')}`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 256) problems.push(`vcpus ${spec.vcpus} must be a whole number from 1 to 256`);
  if (!Number.isInteger(spec.memoryMb) || spec.memoryMb < 64) problems.push(`memoryMb ${spec.memoryMb} must be a whole number of at least 64`);
  if (spec.cpuShare !== undefined && !(spec.cpuShare > 0 && spec.cpuShare <= spec.vcpus)) problems.push(`cpuShare ${spec.cpuShare} must be above 0 and at most its ${spec.vcpus} vCPUs`);
  if (spec.cpuset !== undefined && (spec.cpuset.length === 0 || spec.cpuset.some((cpu) => !Number.isInteger(cpu) || cpu < 0))) problems.push('cpuset must list host CPU numbers');
  if ('kernel' in spec.boot && spec.boot.kernel === '') problems.push('a kernel boot needs a kernel');
  if (spec.shares !== undefined && spec.shares.length > 0 && !HYPERVISORS[spec.hypervisor]?.shares) problems.push(`${spec.hypervisor} guests cannot have 9p shares (use a disk or a cloud-init seed)`);
  for (const share of spec.shares ?? []) if (!/^[A-Za-z0-9_.-]{1,31}$/.test(share.tag)) problems.push(`share tag "${share.tag}" must be 1-31 of [A-Za-z0-9_.-]`);
  if (problems.length > 0) throw new GuestSpecError(`guest ${spec.name}: ${problems.join('; ')}`);
  return spec;
}

/** The domain XML of a guest (a whole document). */
export function domainXml(spec: GuestSpec): string {
  checkGuestSpec(spec);
  const profile = HYPERVISORS[spec.hypervisor];
  const os: Record<string, unknown> = { type: { '@_arch': 'x86_64', '@_machine': profile.machine, '#text': profile.osType } };
  if (profile.loader !== undefined) os.loader = profile.loader;
  const disks: Array<Record<string, unknown>> = [];
  const disk = (file: string, index: number, format: 'raw' | 'qcow2' = 'raw', readonly = false): Record<string, unknown> => ({
    '@_type': 'file', '@_device': 'disk',
    driver: { '@_name': 'qemu', '@_type': format },
    source: { '@_file': file },
    target: { '@_dev': `${profile.diskBus === 'xen' ? 'xvd' : 'vd'}${String.fromCharCode(97 + index)}`, '@_bus': profile.diskBus },
    ...(readonly ? { readonly: '' } : {}),
  });
  if ('kernel' in spec.boot) {
    os.kernel = spec.boot.kernel;
    if (spec.boot.initrd !== undefined) os.initrd = spec.boot.initrd;
    if (spec.boot.cmdline !== undefined) os.cmdline = spec.boot.cmdline;
  } else {
    disks.push(disk(spec.boot.disk, 0, spec.boot.format));
    if (profile.osType === 'hvm') os.boot = { '@_dev': 'hd' };
  }
  for (const extra of spec.disks ?? []) disks.push(disk(extra.file, disks.length, extra.format, extra.readonly ?? false));

  const network = spec.network ?? { kind: 'user' };
  const nic: Record<string, unknown> = { '@_type': network.kind === 'bridge' ? 'bridge' : network.kind };
  if (network.kind === 'network') nic.source = { '@_network': network.name };
  if (network.kind === 'bridge') nic.source = { '@_bridge': network.name };
  if (profile.netModel !== undefined) nic.model = { '@_type': profile.netModel };

  const devices: Record<string, unknown> = {
    ...(disks.length > 0 ? { disk: disks } : {}),
    ...(spec.shares !== undefined && spec.shares.length > 0 ? {
      // multidevs='remap': the host root spans several file systems; without it /proc in the guest breaks.
      filesystem: spec.shares.map((share) => ({
        '@_type': 'mount', '@_accessmode': 'passthrough', '@_multidevs': 'remap',
        source: { '@_dir': share.source }, target: { '@_dir': share.tag }, ...(share.readonly ? { readonly: '' } : {}),
      })),
    } : {}),
    interface: nic,
    ...(profile.console === 'serial'
      ? {
        serial: { '@_type': 'pty', ...(spec.consoleLog !== undefined ? { log: { '@_file': spec.consoleLog, '@_append': 'off' } } : {}), target: { '@_port': 0 } },
        console: { '@_type': 'pty', target: { '@_type': 'serial', '@_port': 0 } },
      }
      : { console: { '@_type': 'pty', ...(spec.consoleLog !== undefined ? { log: { '@_file': spec.consoleLog, '@_append': 'off' } } : {}), target: { '@_type': 'xen', '@_port': 0 } } }),
  };

  const domain: Record<string, unknown> = {
    '@_type': profile.domainType,
    name: spec.name,
    memory: { '@_unit': 'MiB', '#text': spec.memoryMb },
    vcpu: { '@_placement': 'static', '#text': spec.vcpus },
    ...(spec.cpuset !== undefined || (spec.cpuShare !== undefined && profile.domainType !== 'xen') ? {
      cputune: {
        ...(spec.cpuset !== undefined ? { vcpupin: Array.from({ length: spec.vcpus }, (_, vcpu) => ({ '@_vcpu': vcpu, '@_cpuset': spec.cpuset?.[vcpu % (spec.cpuset?.length ?? 1)] })) } : {}),
        // Each vCPU may run quota µs of every period: cpuShare CPUs in all.
        ...(spec.cpuShare !== undefined && profile.domainType !== 'xen' ? { period: CPU_PERIOD_US, quota: cpuQuotaUs(spec.cpuShare, spec.vcpus) } : {}),
      },
    } : {}),
    os,
    ...(profile.features.length > 0 ? { features: Object.fromEntries(profile.features.map((feature) => [feature, ''])) } : {}),
    ...(profile.cpu !== undefined ? { cpu: profile.cpu } : {}),
    // A guest that powers off or reboots is over: the driver starts a new one if it must.
    on_poweroff: 'destroy', on_reboot: 'destroy', on_crash: 'destroy',
    devices,
    ...(spec.runAsRoot ? { seclabel: { '@_type': 'static', '@_model': 'dac', '@_relabel': 'no', label: '+0:+0' } } : {}),
  };
  const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', format: true, suppressEmptyNode: true });
  return builder.build({ domain }) as string;
}
