/**
 * The README's main job, as a user runs it: `ecgfaas demo --json` as a child process, on the
 * embedded defaults, replaying the shipped excerpt. Shorter than the default 30 s to keep CI quick.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive } from './support/processes.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
let store: string | null = null;

afterAll(async () => {
  if (store !== null) await rm(store, { recursive: true, force: true });
});


describe('ecgfaas demo', () => {
  it('runs the whole pipeline, loses nothing, writes episodes and a report, and leaves no process behind', async () => {
    store = await mkdtemp(path.join(tmpdir(), 'ecgfaas-demo-'));
    const reports = path.join(store, 'reports');
    const child = spawn(process.execPath, [path.join(root, 'bin', 'ecgfaas.js'), 'demo', '--json', '--monitors', '4', '--duration', '10', '--store', store], {
      cwd: store, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, err.slice(-2000)).toBe(0);
    const summary = JSON.parse(out) as {
      runId: string; packets: { sent: number; accepted: number; processed: number; lost: number };
      episodes: { written: number }; roundTripMs: { mean: number; p50: number; p99: number; max: number }; deadlineMissRate: number;
      workers: Array<{ pid: number; hypervisor: string }>; report: string;
    };
    expect(summary.packets.sent).toBe(40);
    expect(summary.packets.accepted).toBe(40);
    expect(summary.packets.processed).toBe(40);
    expect(summary.packets.lost).toBe(0);
    expect(summary.episodes.written).toBeGreaterThanOrEqual(1);
    expect(summary.roundTripMs.p50).toBeGreaterThan(0);
    expect(summary.deadlineMissRate).toBeGreaterThanOrEqual(0);
    expect(summary.deadlineMissRate).toBeLessThanOrEqual(1);
    expect(summary.workers).toHaveLength(2);
    for (const worker of summary.workers) expect(alive(worker.pid), `worker ${worker.pid} still running`).toBe(false);
    // The report was saved under reports/<run>/ (relative to the working directory).
    expect(await readdir(path.join(reports, summary.runId))).toEqual(expect.arrayContaining(['report.json', 'report.txt']));
  }, 180_000);
});
