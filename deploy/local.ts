/**
 * The `local` deploy driver: platform processes (workers, gateways) as child processes of this one,
 * on this machine. Each child prints one JSON line `{"event":"ready",...}` on stdout when it is
 * ready; its logs go to stderr (passed through, or to a file). `stop()` sends SIGTERM and waits,
 * escalating to SIGKILL after a grace period; `kill()` is the crash a test needs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { EcgFaasError } from '../contracts/errors.js';
import type { RedisKeys } from '../queue/keys.js';
import { withScripts } from '../queue/scripts.js';

export const CLI_ENTRY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ecgfaas.js');

export interface LocalProcessOptions {
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Where the child's stderr (its pino logs) goes: a file path, 'inherit', or 'ignore' (default). */
  logs?: string | 'inherit' | 'ignore';
  readyTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** The child exited without stop() being asked (a crash, or kill()): a supervisor's cue. */
  onCrash?: (exit: { code: number | null; signal: NodeJS.Signals | null; pid: number | null }) => void;
}

export class LocalProcess<Ready extends Record<string, unknown> = Record<string, unknown>> {
  readonly #options: LocalProcessOptions;
  #child: ChildProcess | null = null;
  #exited: Promise<number | null> | null = null;
  #log: WriteStream | null = null;
  #stopping = false;
  ready: Ready | null = null;

  constructor(options: LocalProcessOptions) {
    this.#options = options;
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  get running(): boolean {
    return this.#child !== null && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async start(): Promise<Ready> {
    const logs = this.#options.logs ?? 'ignore';
    // ECGFAAS_CHILD_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the children; NODE_OPTIONS refuses such flags.
    const nodeArgs = (process.env.ECGFAAS_CHILD_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
    const child = spawn(process.execPath, [...nodeArgs, CLI_ENTRY, ...this.#options.args], {
      env: { ...process.env, ...this.#options.env },
      stdio: ['ignore', 'pipe', logs === 'inherit' ? 'inherit' : logs === 'ignore' ? 'ignore' : 'pipe'],
    });
    this.#child = child;
    if (logs !== 'inherit' && logs !== 'ignore' && child.stderr !== null) {
      this.#log = createWriteStream(logs, { flags: 'a' });
      child.stderr.pipe(this.#log);
    }
    this.#exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      if (!this.#stopping && this.ready !== null) this.#options.onCrash?.({ code, signal, pid: child.pid ?? null });
      resolve(code);
    }));
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const timeoutMs = this.#options.readyTimeoutMs ?? 60_000;
    const ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => reject(new EcgFaasError('DEPLOY_START_TIMEOUT', `ecgfaas ${this.#options.args[0]} was not ready within ${timeoutMs} ms`)), timeoutMs);
      lines.on('line', (line) => {
        try {
          const event = JSON.parse(line) as Ready & { event?: string };
          if (event.event === 'ready') {
            clearTimeout(timer);
            resolve(event);
          }
        } catch {
          // not our line
        }
      });
      void this.#exited?.then((code) => {
        clearTimeout(timer);
        reject(new EcgFaasError('DEPLOY_START_FAILED', `ecgfaas ${this.#options.args[0]} exited with code ${code} before it was ready${typeof logs === 'string' && logs !== 'ignore' && logs !== 'inherit' ? ` (logs: ${logs})` : ''}`));
      });
    }).catch(async (error: unknown) => {
      await this.kill();
      throw error;
    });
    this.ready = ready;
    return ready;
  }

  /** SIGTERM, wait for a graceful exit, SIGKILL after the grace period. Idempotent. */
  async stop(): Promise<number | null> {
    const child = this.#child;
    if (child === null) return null;
    this.#stopping = true;
    if (this.running) child.kill('SIGTERM');
    const grace = this.#options.stopTimeoutMs ?? 20_000;
    const timer = setTimeout(() => child.kill('SIGKILL'), grace);
    const code = await this.#exited;
    clearTimeout(timer);
    await this.#closeLog();
    return code ?? null;
  }

  /** SIGKILL: no cleanup, as a crash. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    if (this.running) child.kill('SIGKILL');
    await this.#exited;
    await this.#closeLog();
  }

  async #closeLog(): Promise<void> {
    const log = this.#log;
    this.#log = null;
    if (log !== null) {
      // The pipe from the child's stderr may have ended the file stream already: finished() handles both.
      log.end();
      await finished(log).catch(() => {});
    }
  }
}

/**
 * A supervisor saw worker `workerId` die (a LocalProcess's onCrash): its slot leases are freed at
 * once, so a live worker adopts the slots on its next heartbeat instead of after the leases lapse.
 * Resolves to the number of slots freed.
 */
export function declareWorkerDead(redis: Redis, keys: RedisKeys, workerId: string): Promise<number> {
  return withScripts(redis).declareDead(keys.slots, keys.workers, workerId, keys.leasePrefix);
}

/** Asks a worker to stop gracefully through Redis (it reads the request with its next heartbeat, every 2 s). */
export async function requestWorkerStop(redis: Redis, keys: RedisKeys, workerId: string): Promise<void> {
  await redis.hset(keys.worker(workerId), 'stop', '1');
}
