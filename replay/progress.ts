/**
 * The live progress bar of `ecgfaas replay`, on stderr so stdout stays clean for --json. Kept out of
 * runReplay, which in-process callers (demo, bench) drive without a terminal.
 */
import cliProgress from 'cli-progress';
import type { ReplayProgress } from './types.js';

export interface ProgressDisplay {
  update(progress: ReplayProgress): void;
  stop(): void;
}

export function createProgressBar(planned: number, stream: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  const bar = new cliProgress.SingleBar({
    stream,
    format: 'replay [{bar}] {value}/{total} sent | accepted {accepted} | failed {failed} | misses {misses} | p99 {p99} ms | in flight {outstanding}',
    barsize: 24,
    hideCursor: true,
    clearOnComplete: false,
    fps: 5,
  }, cliProgress.Presets.shades_classic);
  const payload = (p?: ReplayProgress) => ({
    accepted: p?.accepted ?? 0,
    failed: p?.failed ?? 0,
    misses: p?.deadlineMisses ?? 0,
    p99: p?.p99Ms == null ? '-' : p.p99Ms.toFixed(1),
    outstanding: p?.outstanding ?? 0,
  });
  bar.start(planned, 0, payload());
  let stopped = false;
  return {
    update(p) {
      if (!stopped) bar.update(p.sent, payload(p));
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
