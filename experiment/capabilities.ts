/**
 * Which approaches this host can run, and why not: a row it cannot run is skipped with the reason
 * (never faked or relabelled). bare and local run anywhere; the libvirt approaches need their
 * hypervisor: kvm hardware virtualisation (/dev/kvm), xen-pv and xen-hvm a Xen dom0, and every
 * libvirt approach virsh, QEMU or Xen's tools and a kernel to boot guests with.
 */
import { access, readFile, readdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { detectCgroups } from '../deploy/cgroups.js';
import { Virsh } from '../deploy/libvirt/index.js';
import type { Approach } from './spec.js';

export type Support = { ok: true; note?: string } | { ok: false; reason: string };

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    try {
      await access(path.join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

async function hasKernel(): Promise<boolean> {
  try {
    return (await readdir('/boot')).some((name) => name.startsWith('vmlinuz-'));
  } catch {
    return false;
  }
}

async function isXenDom0(): Promise<boolean> {
  try {
    return (await readFile('/proc/xen/capabilities', 'utf8')).includes('control_d');
  } catch {
    return false;
  }
}

async function hasKvm(): Promise<boolean> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The libvirt URI a row of this approach uses unless told otherwise. */
export function defaultConnect(approach: Approach): string {
  return approach.startsWith('xen') ? 'xen:///system' : 'qemu:///system';
}

/** Whether `approach` can run here; the reason when not. `connect`: the libvirt URI of its guests. */
export async function approachSupport(approach: Approach, connect = defaultConnect(approach)): Promise<Support> {
  switch (approach) {
    case 'bare':
      return { ok: true };
    case 'local':
      return detectCgroups() === null
        ? { ok: true, note: 'no writable cgroup filesystem here: local VMs run unconfined (their vCPUs are not enforced)' }
        : { ok: true };
    case 'kvm':
      if (!(await hasKvm())) return { ok: false, reason: 'no hardware virtualisation here (/dev/kvm is missing or not usable; this machine is itself a KVM guest without nested virtualisation)' };
      return libvirtTools('qemu-system-x86_64', connect);
    case 'qemu':
      return libvirtTools('qemu-system-x86_64', connect);
    case 'xen-pv':
    case 'xen-hvm':
      if (!(await isXenDom0())) return { ok: false, reason: 'no Xen here (this host is not a Xen dom0: /proc/xen/capabilities does not list control_d)' };
      return libvirtTools('xl', connect);
  }
}

async function libvirtTools(hypervisorBinary: string, connect: string): Promise<Support> {
  const missing = [];
  if (!(await onPath('virsh'))) missing.push('virsh (libvirt-clients)');
  if (!(await onPath(hypervisorBinary))) missing.push(hypervisorBinary);
  if (!(await hasKernel())) missing.push('a kernel in /boot to boot guests with');
  if (missing.length > 0) return { ok: false, reason: `libvirt guests need ${missing.join(', ')}, not installed here (scripts/setup.sh --tests with ECGFAAS_GUEST_TESTS=1 installs them)` };
  const answered = await new Virsh(connect).call(['list']).then(() => null, (error: Error) => error.message);
  if (answered !== null) return { ok: false, reason: `libvirt at ${connect} does not answer (is its daemon running? libvirtd -d): ${answered.split('\n')[0]}` };
  return { ok: true };
}
