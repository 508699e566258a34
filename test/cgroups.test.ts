/**
 * Local "VM" confinement with real cgroups (v1 here, v2 on most production hosts): a CPU quota
 * holds a busy process to its share, and the freezer stops and resumes it. Needs write access to
 * the cgroup filesystem (root): skipped, and said so, where that is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuGroup, detectCgroups } from '../deploy/cgroups.js';

const version = detectCgroups();
const writable = (() => {
  if (version === null) return false;
  try {
    accessSync(version === 'v2' ? '/sys/fs/cgroup' : path.join('/sys/fs/cgroup', 'cpu'), constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();

let child: ChildProcess | null = null;
let group: CpuGroup | null = null;

afterAll(async () => {
  child?.kill('SIGKILL');
  await sleep(100);
  await group?.thaw().catch(() => undefined);
  await sleep(100);
  await group?.remove().catch(() => undefined);
});

async function coresOver(ms: number): Promise<number> {
  const before = await (group as CpuGroup).cpuSeconds();
  await sleep(ms);
  return ((await (group as CpuGroup).cpuSeconds()) - before) / (ms / 1000);
}

describe.skipIf(!writable)(`cgroup confinement (${version ?? 'no cgroups'})`, () => {
  it('holds a busy process to a quarter of a core, freezes it to nothing, and lets it go on when thawed', async () => {
    group = await CpuGroup.create(`test-${process.pid}`, { cpus: 0.25, memoryMb: 256 });
    child = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    await group.add(child.pid as number);
    expect(await group.pids()).toContain(child.pid);
    const confined = await coresOver(2000);
    expect(confined).toBeGreaterThan(0.05);
    expect(confined).toBeLessThan(0.35);
    await group.freeze();
    await sleep(200);
    expect(await coresOver(1000)).toBeLessThan(0.02);
    await group.thaw();
    expect(await coresOver(1000)).toBeGreaterThan(0.05);
    await group.setLimits({ cpus: 1 });
    expect(await coresOver(1500)).toBeGreaterThan(0.3);
  });
});
