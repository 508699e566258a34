/**
 * Interference: the detector's arithmetic and hysteresis on worker health as heartbeats carry it,
 * then the whole loop on real local VMs during a replay: interference started inside one VM (a CPU
 * hog in its cgroup where cgroups are writable, else its workers starved by SIGSTOP), detected,
 * the VM quarantined, its monitors moved away without loss, deadline misses back to zero, the moves
 * checked, and all of it in the run's report.
 */
import { describe, expect, it } from 'vitest';
import { detectCgroups } from '../deploy/cgroups.js';
import { runInterferenceExperiment } from '../experiments/interference.js';
import { InterferenceDetector, quantile, type VmWindow, type WorkerSample } from '../scheduler/interference.js';
import { resolvePolicy } from '../scheduler/index.js';
import { CpuGroup } from '../deploy/cgroups.js';
import { SERVICE_BOUNDS_MS, type WorkerHealth } from '../worker/health.js';
import { excerptDir } from './support/data.js';

const settings = resolvePolicy({ interference: { sustainWindows: 2, quarantineS: 10, minPackets: 5 } }).interference;

/** Cumulative health with `served` packets of `ms` each added to `base`. */
function health(base: WorkerHealth | null, served: number, ms: number, probeSlowdown: number | null = 1): WorkerHealth {
  const out: WorkerHealth = base === null
    ? { packets: 0, parked: 0, misses: 0, deadlineMs: 1000, serviceBuckets: new Array<number>(SERVICE_BOUNDS_MS.length + 1).fill(0), queueWaitMsSum: 0, computeMsSum: 0, serviceMsSum: 0, probeSlowdown }
    : { ...base, serviceBuckets: [...base.serviceBuckets], probeSlowdown };
  let bucket = SERVICE_BOUNDS_MS.findIndex((bound) => ms <= bound);
  if (bucket < 0) bucket = SERVICE_BOUNDS_MS.length;
  out.packets += served;
  out.misses += ms > 1000 ? served : 0;
  out.serviceBuckets[bucket] = (out.serviceBuckets[bucket] ?? 0) + served;
  out.serviceMsSum += ms * served;
  return out;
}

describe('interference detector', () => {
  it('interpolates a quantile within its bucket, and stops at the last bound', () => {
    const buckets = new Array<number>(SERVICE_BOUNDS_MS.length + 1).fill(0);
    buckets[1] = 100; // (50, 100]
    expect(quantile(buckets, 0.5)).toBe(75);
    expect(quantile(buckets, 0.95)).toBe(98);
    const over = new Array<number>(SERVICE_BOUNDS_MS.length + 1).fill(0);
    over[SERVICE_BOUNDS_MS.length] = 3;
    expect(quantile(over, 0.95)).toBe(SERVICE_BOUNDS_MS.at(-1));
    expect(quantile(new Array<number>(SERVICE_BOUNDS_MS.length + 1).fill(0), 0.95)).toBeNull();
  });

  it('takes windows as differences of the counters, per VM, and starts over for a restarted worker', () => {
    const detector = new InterferenceDetector(settings);
    const first = health(null, 10, 120);
    detector.windows([{ worker: 'w1', vm: 'vm-1', health: first, backlogAgeMs: 0 }]);
    const [window] = detector.windows([{ worker: 'w1', vm: 'vm-1', health: health(first, 4, 1500), backlogAgeMs: 0 }]);
    expect(window).toMatchObject({ vm: 'vm-1', packets: 4, misses: 4, missRate: 1 });
    const [restarted] = detector.windows([{ worker: 'w1', vm: 'vm-1', health: health(null, 2, 120), backlogAgeMs: 0 }]);
    expect(restarted).toMatchObject({ packets: 2, misses: 0 });
  });

  it('quarantines a VM only after sustained bad windows, and lets it go only after sustained good ones and quarantineS', () => {
    const detector = new InterferenceDetector(settings);
    let cumulative = health(null, 0, 100);
    const pass = (now: number, served: number, ms: number, backlogAgeMs = 0, grace = new Set<string>()) => {
      cumulative = health(cumulative, served, ms);
      const samples: WorkerSample[] = [{ worker: 'w1', vm: 'vm-1', health: cumulative, backlogAgeMs }];
      return detector.observe(now, detector.windows(samples), grace);
    };
    expect(pass(0, 10, 120)).toEqual({ detected: [], cleared: [] });
    expect(pass(2000, 10, 1500).detected, 'one bad window is not enough').toEqual([]);
    expect(pass(4000, 10, 120).detected, 'a good one in between resets the streak').toEqual([]);
    expect(pass(6000, 10, 1500).detected).toEqual([]);
    expect(pass(8000, 0, 0, 3000, new Set(['vm-1'])).detected, 'a VM in grace is not held to a bad window').toEqual([]);
    expect(pass(10_000, 10, 1500).detected).toEqual([]);
    const detected = pass(12_000, 0, 0, 2500).detected;
    expect(detected.map((item) => item.window.vm)).toEqual(['vm-1']);
    expect(detected[0]?.reason).toMatch(/oldest queued packet 2500 ms old/);
    expect(detector.isQuarantined('vm-1')).toBe(true);
    // Hysteresis: below the thresholds but not below half of them is not good.
    expect(pass(14_000, 10, 550).cleared).toEqual([]);
    expect(pass(16_000, 10, 550).cleared).toEqual([]);
    expect(pass(18_000, 10, 120).cleared).toEqual([]);
    expect(pass(20_000, 10, 120).cleared, 'good twice, but quarantineS (10 s) has not passed').toEqual([]);
    expect(pass(22_000, 10, 120).cleared.map((item) => item.window.vm)).toEqual(['vm-1']);
    expect(detector.isQuarantined('vm-1')).toBe(false);
  });

  it('judges a VM without packets by its CPU probe', () => {
    const detector = new InterferenceDetector(settings);
    const idle = (probeSlowdown: number): VmWindow => ({
      vm: 'vm-2', packets: 0, misses: 0, missRate: null, serviceP95Ms: null, meanQueueWaitMs: null, meanComputeMs: null, meanServiceMs: null, backlogAgeMs: 0, probeSlowdown,
    });
    expect(detector.verdict(idle(1.2)).verdict).toBe('good');
    expect(detector.verdict(idle(8)).verdict).toBe('neutral');
  });
});

// Interference inside one local VM during a replay. A hog needs a cgroup to be "inside" a VM.
let hogPossible = false;
if (detectCgroups() !== null) {
  try {
    const probe = await CpuGroup.create(`probe-${process.pid}`, { cpus: 0.1, memoryMb: 64 });
    await probe.remove();
    hogPossible = true;
  } catch {
    hogPossible = false;
  }
}

describe(`interference during a replay (${hogPossible ? 'a CPU hog in one VM\'s cgroup' : 'one VM\'s workers starved by SIGSTOP: cgroups not writable here'})`, () => {
  it('detects it, moves the monitors away without loss, and deadline misses return to zero', async () => {
    const result = await runInterferenceExperiment({
      vms: 3, vcpus: 0.5, monitors: 4, extraComputeMs: 100, durationS: 60, hogAtS: 15, kind: hogPossible ? 'hog' : 'stutter', hogProcesses: 4,
      dataDir: excerptDir(), intervalMs: 2000, verifyAfterS: 10,
    });
    const moved = result.movedMonitors.monitors;
    expect(moved.length, 'monitors on the VM with interference').toBe(2);
    expect(result.detectedAfterS, 'detected').not.toBeNull();
    expect(result.detectedAfterS as number).toBeLessThan(15);
    expect(result.movedMonitors.hogBeforeMove.misses, 'the interference did hurt').toBeGreaterThan(0);
    // Each of its monitors moved to another VM, and its handover ended.
    const moves = result.events.filter((event) => event.type === 'monitor-moved');
    expect(moves.map((event) => event.monitor).sort()).toEqual([...moved].sort());
    for (const event of moves) expect(event.toVm).not.toBe(result.hoggedVm);
    expect(result.events.filter((event) => event.type === 'handover-done')).toHaveLength(moves.length);
    // Nothing lost, nothing twice, nothing missing.
    expect(result.packets.lost).toBe(0);
    expect(result.packets.processed).toBe(result.packets.accepted);
    expect(result.missingSeqs).toEqual({});
    // Misses back to zero once the handovers are done, for every monitor.
    expect(result.movedMonitors.afterMove.packets).toBeGreaterThan(20);
    expect(result.allMonitorsLast20s.misses).toBe(0);
    // The scheduler checked that it helped, and the report shows the moves with latency before and after.
    const verified = result.events.find((event) => event.type === 'interference-verified');
    expect(verified?.reason).toMatch(/helped/);
    expect(result.moves.map((move) => move.monitor).sort()).toEqual([...moved].sort());
    for (const move of result.moves) {
      expect(move.before.n).toBeGreaterThan(0);
      expect(move.after.n).toBeGreaterThan(0);
    }
    expect(result.reportText).toMatch(/Moves: the moved monitor's service time/);
    expect(result.reportText).toMatch(/interference-detected vm-\d/);
  }, 240_000);
});
