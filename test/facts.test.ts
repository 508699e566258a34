import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import {
  CpuSampler,
  HYPERVISOR_KINDS,
  HostFactsSchema,
  classifyHypervisor,
  collectHostFacts,
  cpuDeltaFromProcStat,
  gatherHypervisorEvidence,
  hypervisorFlag,
  packageVersion,
  type HypervisorEvidence,
  type HypervisorKind,
} from '../worker/facts/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Evidence with every source unreadable, overridden per case. */
function evidence(overrides: Partial<Omit<HypervisorEvidence, 'dmi'>> & { dmi?: Partial<HypervisorEvidence['dmi']> } = {}): HypervisorEvidence {
  const { dmi, ...rest } = overrides;
  return {
    systemdDetectVirt: null,
    xenHypervisorType: null,
    xenGuestType: null,
    procXen: false,
    xenCapabilities: null,
    cpuinfoHypervisorFlag: null,
    clocksources: null,
    acpiOem: null,
    ...rest,
    dmi: { sysVendor: null, productName: null, biosVendor: null, biosVersion: null, ...dmi },
  };
}

const qemuDmi = { sysVendor: 'QEMU', productName: 'Standard PC (Q35 + ICH9, 2009)', biosVendor: 'SeaBIOS', biosVersion: '1.16.3-debian-1.16.3-2' };
const bareClocks = ['tsc', 'hpet', 'acpi_pm'];

const cases: Array<[name: string, input: HypervisorEvidence, kind: HypervisorKind, detail?: string | null]> = [
  ['bare metal per systemd', evidence({ systemdDetectVirt: 'none', cpuinfoHypervisorFlag: false, clocksources: bareClocks, dmi: { sysVendor: 'Dell Inc.', productName: 'PowerEdge R640' } }), 'none', null],
  ['bare metal without systemd', evidence({ cpuinfoHypervisorFlag: false, clocksources: bareClocks, dmi: { sysVendor: 'Dell Inc.' } }), 'none'],
  ['nothing readable', evidence(), 'none'],
  ['Surface laptop (Microsoft DMI, no hypervisor flag)', evidence({ cpuinfoHypervisorFlag: false, dmi: { sysVendor: 'Microsoft Corporation', productName: 'Surface Pro 9' } }), 'none'],
  ['KVM per systemd', evidence({ systemdDetectVirt: 'kvm', cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock', 'tsc'], dmi: qemuDmi }), 'kvm'],
  ['KVM without systemd: QEMU DMI + kvm-clock', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock', 'tsc', 'acpi_pm'], dmi: qemuDmi }), 'kvm'],
  ['KVM without systemd or clock sources: Standard PC + flag', evidence({ cpuinfoHypervisorFlag: true, dmi: qemuDmi }), 'kvm'],
  ['old QEMU-KVM product name', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['tsc'], dmi: { sysVendor: 'Red Hat', productName: 'KVM' } }), 'kvm'],
  ['KVM with hidden signature but kvm-clock', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock', 'tsc'] }), 'kvm', null],
  ['QEMU TCG per systemd', evidence({ systemdDetectVirt: 'qemu', cpuinfoHypervisorFlag: true, clocksources: bareClocks, dmi: qemuDmi }), 'qemu'],
  ['QEMU TCG without systemd: QEMU DMI, no kvm-clock', evidence({ cpuinfoHypervisorFlag: true, clocksources: bareClocks, dmi: qemuDmi }), 'qemu'],
  ['systemd says qemu but kvm-clock exists (impossible under TCG)', evidence({ systemdDetectVirt: 'qemu', clocksources: ['kvm-clock'], dmi: qemuDmi }), 'kvm'],
  ['Xen PV', evidence({ systemdDetectVirt: 'xen', xenHypervisorType: 'xen', xenGuestType: 'PV', procXen: true, xenCapabilities: '', cpuinfoHypervisorFlag: true, clocksources: ['xen', 'tsc'] }), 'xen-pv', null],
  ['Xen PV on an old kernel (no guest_type, no DMI)', evidence({ xenHypervisorType: 'xen', procXen: true, xenCapabilities: '', clocksources: ['xen'] }), 'xen-pv'],
  ['Xen dom0', evidence({ systemdDetectVirt: 'none', xenHypervisorType: 'xen', xenGuestType: 'PV', procXen: true, xenCapabilities: 'control_d' }), 'xen-pv', 'dom0'],
  ['Xen HVM', evidence({ systemdDetectVirt: 'xen', xenHypervisorType: 'xen', xenGuestType: 'HVM', cpuinfoHypervisorFlag: true, dmi: { sysVendor: 'Xen', productName: 'HVM domU', biosVendor: 'Xen' } }), 'xen-hvm', 'hvm'],
  ['Xen PVH', evidence({ systemdDetectVirt: 'xen', xenHypervisorType: 'xen', xenGuestType: 'PVH', cpuinfoHypervisorFlag: true }), 'xen-hvm', 'pvh'],
  ['Xen HVM seen only through DMI', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['tsc'], dmi: { sysVendor: 'Xen', productName: 'HVM domU', biosVersion: '4.11.amazon' } }), 'xen-hvm'],
  ['Xen HVM with Viridian (systemd says microsoft)', evidence({ systemdDetectVirt: 'microsoft', cpuinfoHypervisorFlag: true, dmi: { sysVendor: 'Xen', productName: 'HVM domU' } }), 'xen-hvm'],
  ['Xen HVM whose DMI systemd took for kvm', evidence({ systemdDetectVirt: 'kvm', cpuinfoHypervisorFlag: true, dmi: { productName: 'Xen HVM domU' } }), 'xen-hvm'],
  ['VMware per systemd', evidence({ systemdDetectVirt: 'vmware', cpuinfoHypervisorFlag: true, dmi: { sysVendor: 'VMware, Inc.' } }), 'other', 'vmware'],
  ['VMware without systemd', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['tsc', 'hpet'], dmi: { sysVendor: 'VMware, Inc.', productName: 'VMware Virtual Platform' } }), 'other', 'vmware'],
  ['Hyper-V', evidence({ systemdDetectVirt: 'microsoft', cpuinfoHypervisorFlag: true, clocksources: ['hyperv_clocksource_tsc_page', 'tsc'] }), 'other', 'microsoft'],
  ['Hyper-V without systemd', evidence({ cpuinfoHypervisorFlag: true, dmi: { sysVendor: 'Microsoft Corporation', productName: 'Virtual Machine' } }), 'other', 'microsoft'],
  ['VirtualBox with its KVM paravirt provider', evidence({ systemdDetectVirt: 'oracle', cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock', 'tsc'] }), 'other', 'oracle'],
  ['VirtualBox without systemd', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock'], dmi: { sysVendor: 'innotek GmbH', productName: 'VirtualBox' } }), 'other', 'oracle'],
  ['AWS Nitro (KVM-based)', evidence({ systemdDetectVirt: 'amazon', cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock', 'tsc'], dmi: { sysVendor: 'Amazon EC2' } }), 'kvm', 'amazon'],
  ['AWS Nitro without systemd', evidence({ cpuinfoHypervisorFlag: true, dmi: { sysVendor: 'Amazon EC2', productName: 'm6i.large' } }), 'kvm', 'amazon'],
  ['Google Compute Engine (KVM-based)', evidence({ systemdDetectVirt: 'google', cpuinfoHypervisorFlag: true }), 'kvm', 'google'],
  ['bhyve', evidence({ systemdDetectVirt: 'bhyve', cpuinfoHypervisorFlag: true, clocksources: ['tsc', 'hpet'] }), 'other', 'bhyve'],
  ['Firecracker under PVM (CPUID says bhyve, kvm-clock in use)', evidence({ systemdDetectVirt: 'bhyve', cpuinfoHypervisorFlag: true, clocksources: ['kvm-clock'], acpiOem: 'FIRECK FCVM' }), 'kvm', 'firecracker'],
  ['Firecracker without systemd (ACPI OEM only)', evidence({ cpuinfoHypervisorFlag: true, acpiOem: 'FIRECK FCVM' }), 'kvm', 'firecracker'],
  ['unidentified hypervisor', evidence({ systemdDetectVirt: 'vm-other', cpuinfoHypervisorFlag: true, clocksources: ['tsc'] }), 'other', 'vm-other'],
  ['hypervisor flag only', evidence({ cpuinfoHypervisorFlag: true, clocksources: ['tsc'] }), 'other', 'unknown'],
  ['systemd says none but the flag is set', evidence({ systemdDetectVirt: 'none', cpuinfoHypervisorFlag: true }), 'other'],
];

describe('classifyHypervisor (pure)', () => {
  it.each(cases)('%s → %s', (_name, input, kind, detail) => {
    const result = classifyHypervisor(input);
    expect(result.kind).toBe(kind);
    if (detail !== undefined) expect(result.detail).toBe(detail);
    expect(result.evidence.length).toBeGreaterThan(1);
    expect(result.evidence.every((line) => typeof line === 'string' && line.length > 0)).toBe(true);
  });

  it('covers every kind', () => {
    expect(new Set(cases.map(([, , kind]) => kind))).toEqual(new Set(HYPERVISOR_KINDS));
  });

  it('reads the hypervisor flag from x86 flags lines only', () => {
    expect(hypervisorFlag('processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n')).toBe(true);
    expect(hypervisorFlag('processor\t: 0\nflags\t\t: fpu vme lahf_lm\n')).toBe(false);
    expect(hypervisorFlag('flags\t\t: fpu not_hypervisor\n')).toBe(false);
    expect(hypervisorFlag('processor\t: 0\nFeatures\t: fp asimd evtstrm\n')).toBeNull();
  });
});

describe('detectHypervisor on this machine', () => {
  it('returns a kind consistent with systemd-detect-virt and the kernel clock sources', async () => {
    const gathered = await gatherHypervisorEvidence();
    const result = classifyHypervisor(gathered);
    console.info(`hypervisor: ${result.kind} (${result.detail ?? '-'}); ${result.evidence.join('; ')}`);
    expect(HYPERVISOR_KINDS).toContain(result.kind);

    const sd = gathered.systemdDetectVirt;
    const kvmClock = gathered.clocksources?.includes('kvm-clock') ?? false;
    const xen = result.kind === 'xen-pv' || result.kind === 'xen-hvm';
    if (sd !== null) {
      // What systemd's answer allows, restated independently of the classifier.
      const allowed: Record<string, HypervisorKind[]> = {
        none: gathered.cpuinfoHypervisorFlag === true ? ['other', 'kvm'] : ['none'],
        kvm: ['kvm', 'xen-hvm'],
        qemu: kvmClock ? ['kvm'] : ['qemu'],
        xen: ['xen-pv', 'xen-hvm'],
        amazon: ['kvm'],
        google: ['kvm'],
      };
      const fallback: HypervisorKind[] = kvmClock || gathered.acpiOem !== null ? ['other', 'kvm', 'xen-hvm'] : ['other', 'xen-hvm'];
      expect(allowed[sd] ?? fallback).toContain(result.kind);
      expect(result.evidence).toContain(`systemd-detect-virt --vm: ${sd}`);
    }
    // kvm-clock exists only where KVM's paravirtual interface does (VirtualBox can imitate it).
    if (kvmClock && !xen && sd !== 'oracle') expect(result.kind).toBe('kvm');
    if (gathered.cpuinfoHypervisorFlag === true) expect(result.kind).not.toBe('none');
  });
});

describe('collectHostFacts', () => {
  it('matches HostFactsSchema and the installed packages', async () => {
    const facts = await collectHostFacts();
    const errors = [...Value.Errors(HostFactsSchema, facts)].map((e) => `${e.path}: ${e.message}`);
    expect(errors).toEqual([]);
    expect(Value.Check(HostFactsSchema, facts)).toBe(true);

    expect(facts.node).toBe(process.version);
    expect(facts.vcpus).toBeGreaterThanOrEqual(1);
    expect(facts.memoryBytes).toBeGreaterThan(0);
    for (const name of ['onnxruntime-node', 'bullmq', 'ioredis', 'fastify', '@aws-sdk/client-s3'] as const) {
      const installed = JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
      expect(facts.packages[name]).toBe(installed.version);
    }
    if (existsSync('/etc/os-release')) expect(facts.os).toMatch(/\S/);

    const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    expect(facts.cgroupVersion).toBe(v2 ? 'v2' : existsSync('/sys/fs/cgroup/cpu') ? 'v1' : facts.cgroupVersion);
    if (facts.cpuQuotaCores !== null) expect(facts.cpuQuotaCores).toBeGreaterThan(0);
  });

  it('finds versions of packages that do not export package.json, and null for missing ones', async () => {
    // @sinclair/typebox has an exports map without ./package.json: the walk-up fallback is needed.
    const typebox = JSON.parse(await readFile(path.join(root, 'node_modules/@sinclair/typebox/package.json'), 'utf8')) as { version: string };
    expect(packageVersion('@sinclair/typebox')).toBe(typebox.version);
    expect(packageVersion('no-such-package-ecgfaas')).toBeNull();
  });
});

describe('cpuDeltaFromProcStat', () => {
  const stat = (cpu: number[], cores: number[][]) =>
    [`cpu  ${cpu.join(' ')}`, ...cores.map((c, i) => `cpu${i} ${c.join(' ')}`), 'intr 1 2 3', 'ctxt 42', 'btime 1700000000'].join('\n') + '\n';

  it('does the arithmetic on a hand-written pair', () => {
    //                 user nice sys idle iowait irq softirq steal guest guest_nice
    const before = stat([100, 0, 50, 800, 10, 0, 0, 40, 0, 0], [[], []]);
    const after = stat([200, 0, 100, 1000, 20, 0, 0, 80, 30, 0], [[], []]);
    // busy 100+50 = 150, idle 200+10 = 210, steal 40, total 400; guest (30) is already inside user.
    const d = cpuDeltaFromProcStat(before, after);
    expect(d).toMatchObject({ cores: 2, busyTicks: 150, idleTicks: 210, stealTicks: 40, totalTicks: 400 });
    expect(d.hostCpuPct).toBeCloseTo((150 / 400) * 200, 10);
    expect(d.stealPct).toBeCloseTo((40 / 400) * 200, 10);
  });

  it('maxes at 100 % per core and handles idle, resets and short lines', () => {
    const full = cpuDeltaFromProcStat(stat([0, 0, 0, 0], [[], [], [], []]), stat([300, 50, 50, 0], [[], [], [], []]));
    expect(full.hostCpuPct).toBe(400);
    const idle = cpuDeltaFromProcStat(stat([5, 0, 5, 100], [[]]), stat([5, 0, 5, 200], [[]]));
    expect(idle.hostCpuPct).toBe(0);
    const same = cpuDeltaFromProcStat(stat([5, 0, 5, 100], [[]]), stat([5, 0, 5, 100], [[]]));
    expect(same).toMatchObject({ totalTicks: 0, hostCpuPct: 0, stealPct: 0 });
    const reset = cpuDeltaFromProcStat(stat([500, 0, 500, 900], [[]]), stat([5, 0, 5, 1000], [[]]));
    expect(reset).toMatchObject({ busyTicks: 0, hostCpuPct: 0 });
  });

  it('rejects text that is not /proc/stat', () => {
    expect(() => cpuDeltaFromProcStat('hello', 'world')).toThrow(expect.objectContaining({ code: 'PROC_STAT_PARSE' }));
    expect(() => cpuDeltaFromProcStat('cpu  1 2 x 4\n', 'cpu  1 2 3 4\n')).toThrow(expect.objectContaining({ code: 'PROC_STAT_PARSE' }));
  });

  it.runIf(existsSync('/proc/stat'))('reads two real /proc/stat snapshots 200 ms apart, one core kept busy', async () => {
    const before = await readFile('/proc/stat', 'utf8');
    const until = performance.now() + 200;
    let spins = 0;
    while (performance.now() < until) spins++;
    const after = await readFile('/proc/stat', 'utf8');
    expect(spins).toBeGreaterThan(0);
    const d = cpuDeltaFromProcStat(before, after);
    expect(d.cores).toBe(after.split('\n').filter((l) => /^cpu\d+\s/.test(l)).length);
    expect(d.totalTicks).toBeGreaterThan(0);
    expect(d.hostCpuPct).toBeGreaterThanOrEqual(0);
    expect(d.hostCpuPct + d.stealPct).toBeLessThanOrEqual(d.cores * 100 + 1e-9);
    // One core spun the whole time: it was either running us (busy) or stolen; tick granularity
    // (10 ms) and the other files running in parallel leave a wide margin.
    expect(d.hostCpuPct + d.stealPct).toBeGreaterThan(50);
  });
});

describe('CpuSampler', () => {
  it('samples periodically into a bounded ring and closes idempotently', async () => {
    const sampler = new CpuSampler({ intervalMs: 40, capacity: 3 });
    expect(sampler.latest()).toBeNull();
    sampler.start();
    sampler.start(); // idempotent
    const deadline = performance.now() + 5000;
    while (sampler.samples().length < 3 && performance.now() < deadline) {
      // Burn some CPU between timer turns so processCpuPct is visibly non-zero.
      const until = performance.now() + 15;
      while (performance.now() < until);
      await sleep(5);
    }
    await sleep(200); // let the ring wrap
    const samples = sampler.samples();
    expect(samples.length).toBe(3);
    expect(sampler.latest()).toEqual(samples[2]);
    for (let i = 1; i < samples.length; i++) expect(samples[i]!.at).toBeGreaterThanOrEqual(samples[i - 1]!.at);
    for (const s of samples) {
      expect(s.intervalMs).toBeGreaterThan(0);
      expect(s.processCpuPct).toBeGreaterThanOrEqual(0);
      expect(s.hostCores).toBeGreaterThanOrEqual(1);
      if (existsSync('/proc/stat')) {
        expect(s.hostCpuPct).not.toBeNull();
        expect(s.hostCpuPct!).toBeLessThanOrEqual(s.hostCores * 100 + 1e-9);
        expect(s.stealPct!).toBeGreaterThanOrEqual(0);
      }
    }

    await Promise.all([sampler.close(), sampler.close()]);
    await sampler.close();
    const last = sampler.latest();
    await sleep(150);
    expect(sampler.latest()).toBe(last); // no samples after close
    expect(() => sampler.start()).toThrow(expect.objectContaining({ code: 'CPU_SAMPLER_CLOSED' }));
  });

  it('accounts for this process\'s CPU time like process.cpuUsage does', async () => {
    const usageAtStart = process.cpuUsage();
    const sampler = new CpuSampler({ intervalMs: 100 });
    sampler.start();
    // Spin in slices so the timer still fires.
    const until = performance.now() + 600;
    while (performance.now() < until) {
      const slice = performance.now() + 20;
      while (performance.now() < slice);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const usage = process.cpuUsage(usageAtStart);
    await sampler.close();
    const samples = sampler.samples();
    expect(samples.length).toBeGreaterThanOrEqual(2);
    // CPU ms the samples account for must fit inside what the process used over the whole test and
    // cover most of it (the tail after the last tick is not sampled). Holds however loaded the box is.
    const sampledCpuMs = samples.reduce((sum, s) => sum + (s.processCpuPct * s.intervalMs) / 100, 0);
    const totalCpuMs = (usage.user + usage.system) / 1000;
    expect(sampledCpuMs).toBeLessThanOrEqual(totalCpuMs + 1);
    expect(sampledCpuMs).toBeGreaterThan(totalCpuMs * 0.4);
  });

  it('does not keep the process alive (unref’d timer)', async () => {
    const directory = await mkdtemp(path.join(tmpdir(), 'ecgfaas-sampler-'));
    try {
      const script = path.join(directory, 'keepalive.ts');
      const modulePath = path.join(root, 'worker/facts/cpu-sampler.ts');
      await writeFile(script, `import { CpuSampler } from ${JSON.stringify(modulePath)};\nnew CpuSampler({ intervalMs: 50 }).start();\n`);
      const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: 'ignore' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      clearTimeout(timer);
      expect(signal).toBeNull();
      expect(code).toBe(0);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
