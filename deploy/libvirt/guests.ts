/**
 * The guests `ecgfaas deploy --driver libvirt` makes, from its flags: one GuestSpec per VM. A guest
 * boots a kernel (default: the host's, `/boot/vmlinuz`) with the platform's initramfs, which starts
 * the worker by itself; what the worker needs to know (its VM, its worker id, its root, its
 * network) is on the kernel command line, under `ecgfaas.*`. Its root file system is either the
 * host's, read-only over 9p (KVM and QEMU only: the worker runs this very checkout), or a root
 * image (`ecgfaas image build`: Debian with Node and the platform under /opt/ecgfaas), attached
 * read-only to every guest (any hypervisor; Xen guests have no 9p, so they always take one).
 */
import { GuestSpecError, type GuestHypervisor, type GuestSpec } from './domain.js';

/** Where a root image (`ecgfaas image build`) holds the platform. */
export const IMAGE_CHECKOUT = '/opt/ecgfaas';

export interface GuestOptions {
  hypervisor: GuestHypervisor;
  vms: number;
  namePrefix: string;
  /** vCPUs; a fraction is rounded up to whole vCPUs and capped to this much CPU in all (GuestSpec.cpuShare). */
  vcpus: number;
  memoryMb: number;
  kernel: string;
  initrd: string;
  /** Appended to the kernel command line. */
  cmdline?: string;
  /** The workers' root file system: a raw ext4 image (`ecgfaas image build`), shared read-only. Needed for Xen. */
  rootImage?: string;
  /**
   * How the guest's init configures its network: `user` (QEMU's user-mode network, static
   * 10.0.2.15), `dhcp`, or `static:ADDRESS/PREFIX:GATEWAY[:DNS]` (the i-th guest takes ADDRESS + i).
   * Default: `user` on a user-mode network, else `dhcp`.
   */
  net?: string;
  /** Pin each VM's vCPUs to these host CPUs, VM i from the i-th group of `vcpus` CPUs (round robin). */
  pinCpus?: readonly number[];
  network?: GuestSpec['network'];
  runAsRoot?: boolean;
  /** Directory for each guest's console log (`<vm>.console.log`). */
  consoleDir?: string;
}

export function guestSpecs(options: GuestOptions): GuestSpec[] {
  return Array.from({ length: options.vms }, (_, index) => guestSpec(`${options.namePrefix}-${index + 1}`, index, options));
}

/** Whether `net` is a network setting the guest's init understands (GuestOptions.net). */
export function isGuestNet(net: string): boolean {
  return GUEST_NET.test(net);
}

const GUEST_NET = /^(user|dhcp|static:\d{1,3}(\.\d{1,3}){3}\/\d{1,2}:\d{1,3}(\.\d{1,3}){3}(:\d{1,3}(\.\d{1,3}){3})?)$/;

/** static:ADDRESS/... for the index-th guest: addresses count up from ADDRESS, one per guest. */
function staticFor(net: string, index: number): string {
  const [, address = '', rest = ''] = /^static:([\d.]+)(\/.*)$/.exec(net) ?? [];
  const value = address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0) + index;
  const next = [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
  return `static:${next}${rest}`;
}

/** The index-th guest, named `name` (its pinned CPUs follow from the index). */
export function guestSpec(name: string, index: number, options: Omit<GuestOptions, 'vms' | 'namePrefix'>): GuestSpec {
  const qemuFamily = options.hypervisor === 'kvm' || options.hypervisor === 'qemu';
  const image = options.rootImage;
  if (image === undefined && !qemuFamily) {
    throw new GuestSpecError(`guest ${name}: ${options.hypervisor} guests have no 9p share of the host's root; give them a root image (ecgfaas image build, then --disk IMAGE)`);
  }
  // QEMU's user-mode network needs no set-up on the host (the guest reaches it at 10.0.2.2); Xen has none: its bridge.
  const network = options.network ?? (qemuFamily ? { kind: 'user' as const } : { kind: 'bridge' as const, name: 'xenbr0' });
  const chosen = options.net ?? (network.kind === 'user' ? 'user' : 'dhcp');
  if (!isGuestNet(chosen)) throw new GuestSpecError(`guest ${name}: network setting "${chosen}" must be user, dhcp or static:ADDRESS/PREFIX:GATEWAY[:DNS]`);
  const net = chosen.startsWith('static:') ? staticFor(chosen, index) : chosen;
  // The root image is the guest's first disk: vda on virtio, xvda on Xen's block frontend.
  const rootDevice = options.hypervisor.startsWith('xen') ? '/dev/xvda' : '/dev/vda';
  const pins = options.pinCpus;
  const cmdline = [
    // A Xen PV guest's console is the hypervisor's (hvc0); the others' a serial port.
    // panic=-1: a guest whose kernel panics reboots at once, and libvirt ends it (on_reboot destroy), so a failed boot shows.
    options.hypervisor === 'xen-pv' ? 'console=hvc0' : 'console=ttyS0', 'quiet', 'panic=-1', `ecgfaas.vm=${name}`, `ecgfaas.worker=${name}-w1`,
    image !== undefined ? `ecgfaas.root=disk:${rootDevice}` : 'ecgfaas.root=9p:hostroot', `ecgfaas.net=${net}`,
    ...(options.cmdline !== undefined ? [options.cmdline] : []),
  ].join(' ');
  const vcpus = Math.max(1, Math.ceil(options.vcpus));
  return {
    name, hypervisor: options.hypervisor, vcpus, memoryMb: options.memoryMb,
    ...(options.vcpus < vcpus ? { cpuShare: options.vcpus } : {}),
    ...(pins !== undefined && pins.length > 0 ? { cpuset: Array.from({ length: vcpus }, (_, vcpu) => pins[(index * vcpus + vcpu) % pins.length] as number) } : {}),
    boot: { kernel: options.kernel, initrd: options.initrd, cmdline },
    ...(image !== undefined ? { disks: [{ file: image, format: 'raw' as const, readonly: true }] } : { shares: [{ source: '/', tag: 'hostroot', readonly: true }] }),
    network,
    // QEMU runs as an unprivileged user unless told otherwise; files under /root (and the 0600 seeded initramfs) need root (Xen's device model is root already).
    ...(options.runAsRoot && qemuFamily ? { runAsRoot: true } : {}),
    ...(options.consoleDir !== undefined ? { consoleLog: `${options.consoleDir}/${name}.console.log` } : {}),
  };
}

/** A URL on the host's loopback as a guest on QEMU's user-mode network reaches it (the host is 10.0.2.2 there). */
export function asSeenFromGuest(url: string): string {
  return url.replace(/\/\/(127\.0\.0\.1|localhost)(?=[:/]|$)/, '//10.0.2.2');
}
