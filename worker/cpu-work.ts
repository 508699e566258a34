/**
 * A fixed amount of CPU work, calibrated once: `--extra-compute-ms` burns the work an idle CPU does
 * in that many ms (not that many ms of wall time, which would finish on time however little CPU the
 * process got, and hide the very interference the scheduler must see), and the health probe times a
 * millisecond of it. Calibration keeps the fastest of several runs, so a busy moment at start-up
 * makes the work smaller, never larger.
 */
export class CpuWork {
  #iterationsPerMs = 0;
  /** Keeps the loop's result alive, so it is not optimised away. */
  #sink = 0;

  /** Iterations an idle CPU runs in a millisecond (calibrated on first use). */
  get iterationsPerMs(): number {
    if (this.#iterationsPerMs === 0) this.#calibrate();
    return this.#iterationsPerMs;
  }

  /** Does `ms` worth of work; returns the wall time it took (ms). */
  burn(ms: number): number {
    if (ms <= 0) return 0;
    return this.run(Math.round(ms * this.iterationsPerMs));
  }

  /** Runs the loop `iterations` times; returns the wall time (ms). */
  run(iterations: number): number {
    const started = performance.now();
    let x = this.#sink;
    for (let index = 0; index < iterations; index++) x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
    this.#sink = x;
    return performance.now() - started;
  }

  #calibrate(): void {
    const iterations = 200_000;
    this.run(iterations); // warm up the JIT
    let best = Number.POSITIVE_INFINITY;
    for (let attempt = 0; attempt < 15; attempt++) best = Math.min(best, this.run(iterations));
    this.#iterationsPerMs = iterations / Math.max(best, 1e-3);
  }
}
