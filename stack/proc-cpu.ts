/** CPU time of other processes, from /proc/<pid>/stat (Linux): for `ecgfaas bench`'s per-process CPU. */
import { readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux ABI Node runs on

/** User + system CPU seconds used so far by the process, or null when it is gone. */
export function cpuSecondsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** Percent of one core used by a set of processes between two readings. */
export class CpuMeter {
  readonly #pids: number[];
  #start: { at: number; seconds: number } | null = null;

  constructor(pids: number[]) {
    this.#pids = pids;
  }

  #total(): number {
    return this.#pids.reduce((sum, pid) => sum + (cpuSecondsOf(pid) ?? 0), 0);
  }

  begin(): void {
    this.#start = { at: performance.now(), seconds: this.#total() };
  }

  percent(): number | null {
    if (this.#start === null || this.#pids.length === 0) return null;
    const elapsed = (performance.now() - this.#start.at) / 1000;
    return elapsed <= 0 ? null : ((this.#total() - this.#start.seconds) / elapsed) * 100;
  }
}
