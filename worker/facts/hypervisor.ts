/**
 * Which hypervisor this worker runs under, detected from the system (never claimed by a flag),
 * so benchmark results are labelled with what was actually measured.
 *
 * Split in two: `gatherHypervisorEvidence()` reads what the system exposes (each source may be
 * missing), and the pure `classifyHypervisor()` turns that evidence into a kind.
 *
 * Where the CPUID hypervisor signature comes from: Node cannot execute CPUID, and the kernel does
 * not export leaf 0x40000000 anywhere readable without root (dmesg's "Hypervisor detected" line
 * may be restricted or rotated out, so it is not used). `systemd-detect-virt` does execute CPUID
 * (after its DMI checks), so its answer is our window onto the signature. The kernel's list of
 * clock sources is a second, independent window: `kvm-clock` is only registered when the guest
 * found KVM's paravirtual interface (it cannot exist under QEMU's TCG emulation), and `xen` only
 * under Xen.
 */
import { execFile } from 'node:child_process';
import { exists, readTrimmed } from './files.js';
import { open } from 'node:fs/promises';

export const HYPERVISOR_KINDS = ['none', 'kvm', 'qemu', 'xen-pv', 'xen-hvm', 'other'] as const;
export type HypervisorKind = (typeof HYPERVISOR_KINDS)[number];

export interface DmiEvidence {
  sysVendor: string | null;
  productName: string | null;
  biosVendor: string | null;
  biosVersion: string | null;
}

/** Raw observations; `null` means "could not be read", which is different from "absent/false". */
export interface HypervisorEvidence {
  /** Trimmed output of `systemd-detect-virt --vm` ("none" on bare metal); null if it is not installed, failed or timed out. */
  systemdDetectVirt: string | null;
  /** /sys/hypervisor/type ("xen" under Xen). */
  xenHypervisorType: string | null;
  /** /sys/hypervisor/guest_type ("PV", "HVM" or "PVH"; kernels >= 4.15). */
  xenGuestType: string | null;
  /** Whether /proc/xen exists (xenfs). */
  procXen: boolean;
  /** /proc/xen/capabilities ("control_d" in dom0). */
  xenCapabilities: string | null;
  dmi: DmiEvidence;
  /** The `hypervisor` flag of /proc/cpuinfo (CPUID.1:ECX bit 31); null when there is no x86 flags line. */
  cpuinfoHypervisorFlag: boolean | null;
  /** /sys/devices/system/clocksource/clocksource0/available_clocksource, split. */
  clocksources: string[] | null;
  /** OEM ID and OEM table ID of the ACPI FACP header (e.g. "FIRECK FCVM" under Firecracker); root only, so often null. */
  acpiOem: string | null;
}

export interface HypervisorInfo {
  kind: HypervisorKind;
  /** Human-readable reasons: the deciding rule first, then what was observed. */
  evidence: string[];
  /** The specific product or VMM when known (e.g. "vmware", "firecracker", "amazon"). */
  detail: string | null;
}

const SYSTEMD_TIMEOUT_MS = 3000;

export async function gatherHypervisorEvidence(): Promise<HypervisorEvidence> {
  const dmi = (name: string) => readTrimmed(`/sys/class/dmi/id/${name}`);
  const [systemdDetectVirt, xenHypervisorType, xenGuestType, procXen, xenCapabilities, sysVendor, productName, biosVendor, biosVersion, cpuinfo, clocksourceText, acpiOem] =
    await Promise.all([
      runSystemdDetectVirt(),
      readTrimmed('/sys/hypervisor/type'),
      readTrimmed('/sys/hypervisor/guest_type'),
      exists('/proc/xen'),
      readTrimmed('/proc/xen/capabilities'),
      dmi('sys_vendor'),
      dmi('product_name'),
      dmi('bios_vendor'),
      dmi('bios_version'),
      readTrimmed('/proc/cpuinfo'),
      readTrimmed('/sys/devices/system/clocksource/clocksource0/available_clocksource'),
      readAcpiOem('/sys/firmware/acpi/tables/FACP'),
    ]);
  return {
    systemdDetectVirt,
    xenHypervisorType,
    xenGuestType,
    procXen,
    xenCapabilities,
    dmi: { sysVendor, productName, biosVendor, biosVersion },
    cpuinfoHypervisorFlag: cpuinfo === null ? null : hypervisorFlag(cpuinfo),
    clocksources: clocksourceText === null ? null : clocksourceText.split(/\s+/).filter((s) => s !== ''),
    acpiOem,
  };
}

export async function detectHypervisor(): Promise<HypervisorInfo> {
  return classifyHypervisor(await gatherHypervisorEvidence());
}

/** Names systemd-detect-virt prints for clouds whose hypervisor is KVM-based (Nitro, GCE). */
const KVM_BASED_CLOUDS: Record<string, string> = { amazon: 'AWS Nitro is KVM-based', google: 'Google Compute Engine is KVM-based' };

/**
 * Pure: evidence → kind. Precedence: Xen signals, then systemd-detect-virt (DMI + CPUID), then the
 * kvm-clock clock source, then DMI strings, then the bare cpuinfo flag.
 *
 * Decisions worth knowing:
 * - `amazon` and `google` (systemd's names for EC2 Nitro and GCE) are classified `kvm`: both run a
 *   KVM-based hypervisor; the cloud is kept in `detail`. Xen-based EC2 instances report `xen`.
 * - A non-KVM CPUID vendor (e.g. bhyve, vm-other, microsoft) together with an available kvm-clock
 *   is classified `kvm`: kvm-clock needs KVM's paravirtual interface, so the signature was masked
 *   or the KVM leaves sit above 0x40000000 (KVM with Hyper-V enlightenments, PVM, sandboxes).
 *   Not for `oracle`: VirtualBox can offer the KVM paravirtual interface itself.
 */
export function classifyHypervisor(evidence: HypervisorEvidence): HypervisorInfo {
  const observed = observations(evidence);
  const decide = (kind: HypervisorKind, reason: string, detail: string | null = null): HypervisorInfo => ({
    kind,
    evidence: [reason, ...observed],
    detail,
  });

  const sd = evidence.systemdDetectVirt?.toLowerCase() ?? null;
  const { sysVendor, productName, biosVendor, biosVersion } = evidence.dmi;
  const dmiText = [sysVendor, productName, biosVendor, biosVersion].filter((s) => s !== null).join(' | ');
  const dmiAny = dmiText !== '';
  const kvmClock = evidence.clocksources?.includes('kvm-clock') ?? false;
  const xenClock = evidence.clocksources?.includes('xen') ?? false;
  const flag = evidence.cpuinfoHypervisorFlag;
  const vmm = vmmFromAcpi(evidence.acpiOem);

  // Xen first: its HVM guests can look like other things (DMI from QEMU's device model, Viridian
  // enlightenments that make the CPUID vendor read "Microsoft Hv").
  const xenSignals = [
    evidence.xenHypervisorType?.toLowerCase() === 'xen' ? '/sys/hypervisor/type is xen' : null,
    sd === 'xen' ? 'systemd-detect-virt says xen' : null,
    evidence.procXen ? '/proc/xen exists' : null,
    xenClock ? 'the xen clocksource is available' : null,
    /\bxen\b/i.test(dmiText) ? 'DMI mentions Xen' : null,
  ].filter((s): s is string => s !== null);
  if (xenSignals.length > 0) {
    const dom0 = evidence.xenCapabilities?.includes('control_d') === true ? 'dom0' : null;
    const guestType = evidence.xenGuestType?.toUpperCase() ?? null;
    const why = xenSignals.join(', ');
    if (guestType === 'PV') return decide('xen-pv', `Xen (${why}); guest_type PV`, dom0);
    if (guestType === 'HVM' || guestType === 'PVH') return decide('xen-hvm', `Xen (${why}); guest_type ${guestType}`, dom0 ?? guestType.toLowerCase());
    if (dmiAny) return decide('xen-hvm', `Xen (${why}); no guest_type, but firmware DMI tables exist, which PV guests lack`, dom0);
    if (evidence.xenCapabilities !== null || evidence.procXen || sd === 'xen') {
      return decide('xen-pv', `Xen (${why}); no guest_type and no DMI tables, as in a PV guest (PVH cannot be ruled out)`, dom0);
    }
    return decide('xen-hvm', `Xen (${why}); guest type unknown`, dom0);
  }

  if (sd !== null) {
    if (sd === 'kvm') return decide('kvm', 'systemd-detect-virt says kvm (KVM CPUID signature or KVM DMI)', vmm);
    if (sd === 'qemu') {
      // kvm-clock cannot exist under TCG, so it wins over a DMI-based "qemu".
      if (kvmClock) return decide('kvm', 'systemd-detect-virt says qemu, but kvm-clock is available, which TCG cannot provide', vmm);
      return decide('qemu', 'systemd-detect-virt says qemu (QEMU without KVM: TCG emulation)', vmm);
    }
    const cloud = KVM_BASED_CLOUDS[sd];
    if (cloud !== undefined) return decide('kvm', `systemd-detect-virt says ${sd}; ${cloud}`, sd);
    if (sd === 'none') {
      if (flag !== true && !kvmClock) return decide('none', 'systemd-detect-virt says none and nothing else points to a hypervisor');
      // Contradicted (flag or kvm-clock present): fall through to the heuristics below.
    } else {
      if (kvmClock && sd !== 'oracle') {
        return decide('kvm', `systemd-detect-virt says ${sd}, but kvm-clock is available, which needs KVM's paravirtual interface (the CPUID vendor is masked or not KVM's first leaf)`, vmm);
      }
      if (vmm !== null) return decide('kvm', `systemd-detect-virt says ${sd}, but the ACPI tables come from ${vmm}, which only runs on KVM`, vmm);
      return decide('other', `systemd-detect-virt says ${sd}`, sd);
    }
  }

  // Without a (usable) systemd answer: firmware strings and clock sources.
  if (vmm !== null) return decide('kvm', `ACPI tables come from ${vmm}, which only runs on KVM`, vmm);
  // DMI vendor names alone also match bare-metal machines (Microsoft Surface, Google Chromebooks),
  // so they only count when the CPU does not deny running under a hypervisor.
  if (dmiAny && flag !== false) {
    const vendor = dmiVendor(dmiText);
    if (vendor !== null) {
      if (vendor.kind === 'qemu-like') {
        if (/\bKVM\b/.test(productName ?? '') || kvmClock) {
          return decide('kvm', `DMI shows a QEMU machine (${dmiText}) and KVM (${kvmClock ? 'kvm-clock available' : 'product name KVM'})`, null);
        }
        if (evidence.clocksources !== null) {
          return decide('qemu', `DMI shows a QEMU machine (${dmiText}) with no KVM signature (no kvm-clock): TCG emulation`, null);
        }
        // No clock-source list to tell KVM from TCG: fall back to the weaker product + flag rule.
        if (flag === true && /Standard PC|KVM/.test(productName ?? '')) {
          return decide('kvm', `DMI shows a QEMU "${productName ?? ''}" machine and the hypervisor flag is set (KVM assumed; clock sources unreadable)`, null);
        }
        return decide('qemu', `DMI shows a QEMU machine (${dmiText}) and no KVM signature`, null);
      }
      if (vendor.kind === 'kvm') return decide('kvm', `DMI shows ${vendor.name} (${dmiText}), a KVM-based platform`, vendor.name);
      return decide('other', `DMI shows ${vendor.name} (${dmiText})`, vendor.name);
    }
  }
  if (kvmClock) return decide('kvm', 'kvm-clock is available, which needs KVM\'s paravirtual interface', null);
  if (flag === true) return decide('other', 'the CPU hypervisor flag is set but no known hypervisor is identified', 'unknown');
  if (sd === 'none') return decide('none', 'systemd-detect-virt says none');
  return decide('none', 'no hypervisor evidence found');
}

type DmiVendor = { kind: 'qemu-like' | 'kvm' | 'other'; name: string };

/** Checked in order; the first match wins (VirtualBox before the generic QEMU/KVM names). */
const DMI_VENDORS: Array<[RegExp, DmiVendor]> = [
  [/VMware/i, { kind: 'other', name: 'vmware' }],
  [/innotek|VirtualBox|Oracle Corporation/i, { kind: 'other', name: 'oracle' }],
  [/Microsoft Corporation.*Virtual Machine|Hyper-V/i, { kind: 'other', name: 'microsoft' }],
  [/Parallels/i, { kind: 'other', name: 'parallels' }],
  [/BHYVE/i, { kind: 'other', name: 'bhyve' }],
  [/Amazon EC2/i, { kind: 'kvm', name: 'amazon' }],
  [/Google Compute Engine/i, { kind: 'kvm', name: 'google' }],
  [/QEMU|Bochs|SeaBIOS|Standard PC|\bKVM\b/i, { kind: 'qemu-like', name: 'qemu' }],
];

function dmiVendor(dmiText: string): DmiVendor | null {
  for (const [pattern, vendor] of DMI_VENDORS) if (pattern.test(dmiText)) return vendor;
  return null;
}

/** VMMs that only run on KVM, recognised by the ACPI OEM ID they write. */
function vmmFromAcpi(acpiOem: string | null): string | null {
  if (acpiOem === null) return null;
  if (/FIRECK|FCVM/.test(acpiOem)) return 'firecracker';
  if (/CLOUDH|CHYPER/.test(acpiOem)) return 'cloud-hypervisor';
  return null;
}

function observations(e: HypervisorEvidence): string[] {
  const out: string[] = [];
  out.push(e.systemdDetectVirt === null ? 'systemd-detect-virt --vm: unavailable' : `systemd-detect-virt --vm: ${e.systemdDetectVirt}`);
  if (e.xenHypervisorType !== null) out.push(`/sys/hypervisor/type: ${e.xenHypervisorType}`);
  if (e.xenGuestType !== null) out.push(`/sys/hypervisor/guest_type: ${e.xenGuestType}`);
  if (e.procXen) out.push('/proc/xen: present');
  if (e.xenCapabilities !== null) out.push(`/proc/xen/capabilities: ${e.xenCapabilities || '(empty)'}`);
  const dmi = Object.entries(e.dmi).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${String(v)}`);
  out.push(dmi.length > 0 ? `DMI: ${dmi.join(', ')}` : 'DMI: unavailable');
  if (e.cpuinfoHypervisorFlag !== null) out.push(`/proc/cpuinfo hypervisor flag: ${e.cpuinfoHypervisorFlag ? 'set' : 'not set'}`);
  if (e.clocksources !== null) out.push(`clock sources: ${e.clocksources.join(' ') || '(none)'}`);
  if (e.acpiOem !== null) out.push(`ACPI OEM: ${e.acpiOem}`);
  return out;
}

/** True if any x86 `flags` line lists `hypervisor`; null when there is no flags line (e.g. ARM). */
export function hypervisorFlag(cpuinfo: string): boolean | null {
  const lines = cpuinfo.split('\n').filter((line) => /^flags\s*:/.test(line));
  if (lines.length === 0) return null;
  return lines.some((line) => /(?:^|\s)hypervisor(?:\s|$)/.test(line.slice(line.indexOf(':') + 1)));
}

function runSystemdDetectVirt(): Promise<string | null> {
  return new Promise((resolve) => {
    try {
      execFile('systemd-detect-virt', ['--vm'], { timeout: SYSTEMD_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout) => {
        const answer = stdout.trim();
        // Exit code 1 with "none" is its way of saying "bare metal"; any other failure is "unknown".
        if (error === null) resolve(answer === '' ? null : answer);
        else if (error.code === 1 && answer === 'none') resolve('none');
        else resolve(null);
      });
    } catch {
      resolve(null);
    }
  });
}


/** OEM ID (bytes 10-15) and OEM table ID (16-23) of an ACPI table header. */
async function readAcpiOem(file: string): Promise<string | null> {
  let handle;
  try {
    handle = await open(file, 'r');
    const header = Buffer.alloc(24);
    const { bytesRead } = await handle.read(header, 0, 24, 0);
    if (bytesRead < 24) return null;
    const clean = (b: Buffer) => b.toString('latin1').replace(/[^\x20-\x7e]/g, '').trim();
    const text = `${clean(header.subarray(10, 16))} ${clean(header.subarray(16, 24))}`.trim();
    return text === '' ? null : text;
  } catch {
    return null;
  } finally {
    await handle?.close();
  }
}
