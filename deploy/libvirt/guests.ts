/**
 * The guests `ecgfaas deploy --driver libvirt` makes, from its flags: one GuestSpec per VM. A guest
 * boots a kernel (default: the host's, `/boot/vmlinuz`) with the platform's initramfs, which starts
 * the worker by itself; what the worker needs to know (its VM, its worker id) is on the kernel
 * command line, under `ecgfaas.*`. KVM and QEMU guests see the host's root file system read-only
 * over 9p (tag `hostroot`), so the worker runs this very checkout; Xen guests take a disk image.
 */
import type { GuestHypervisor, GuestSpec } from './domain.js';

export interface GuestOptions {
  hypervisor: GuestHypervisor;
  vms: number;
  namePrefix: string;
  vcpus: number;
  memoryMb: number;
  kernel: string;
  initrd: string;
  /** Appended to the kernel command line. */
  cmdline?: string;
  /** Boot this disk image instead of a kernel. */
  disk?: string;
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

/** The index-th guest, named `name` (its pinned CPUs follow from the index). */
export function guestSpec(name: string, index: number, options: Omit<GuestOptions, 'vms' | 'namePrefix'>): GuestSpec {
  const sharesRoot = options.hypervisor === 'kvm' || options.hypervisor === 'qemu';
  {
    const pins = options.pinCpus;
    const cmdline = [
      // A Xen PV guest's console is the hypervisor's (hvc0); the others' a serial port.
      // panic=-1: a guest whose kernel panics reboots at once, and libvirt ends it (on_reboot destroy), so a failed boot shows.
      options.hypervisor === 'xen-pv' ? 'console=hvc0' : 'console=ttyS0', 'quiet', 'panic=-1', `ecgfaas.vm=${name}`, `ecgfaas.worker=${name}-w1`, ...(sharesRoot && options.disk === undefined ? ['ecgfaas.root=9p:hostroot'] : []),
      ...(options.cmdline !== undefined ? [options.cmdline] : []),
    ].join(' ');
    return {
      name, hypervisor: options.hypervisor, vcpus: options.vcpus, memoryMb: options.memoryMb,
      ...(pins !== undefined && pins.length > 0 ? { cpuset: Array.from({ length: options.vcpus }, (_, vcpu) => pins[(index * options.vcpus + vcpu) % pins.length] as number) } : {}),
      boot: options.disk !== undefined ? { disk: options.disk } : { kernel: options.kernel, initrd: options.initrd, cmdline },
      ...(sharesRoot && options.disk === undefined ? { shares: [{ source: '/', tag: 'hostroot', readonly: true }] } : {}),
      // QEMU's user-mode network needs no set-up on the host (the guest reaches it at 10.0.2.2); Xen has none: its bridge.
      network: options.network ?? (sharesRoot ? { kind: 'user' } : { kind: 'bridge', name: 'xenbr0' }),
      // QEMU runs as an unprivileged user unless told otherwise; files under /root need root (Xen's device model is root already).
      ...(options.runAsRoot && sharesRoot ? { runAsRoot: true } : {}),
      ...(options.consoleDir !== undefined ? { consoleLog: `${options.consoleDir}/${name}.console.log` } : {}),
    };
  }
}

/** A URL on the host's loopback as a guest on QEMU's user-mode network reaches it (the host is 10.0.2.2 there). */
export function asSeenFromGuest(url: string): string {
  return url.replace(/\/\/(127\.0\.0\.1|localhost)(?=[:/]|$)/, '//10.0.2.2');
}
