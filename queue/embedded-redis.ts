/**
 * A redis-server of our own for the demo and the tests: a child process on a free loopback port,
 * with its data directory and the append-only file on, so accepted packets survive a restart.
 * `appendfsync everysec` (Redis's default) can lose up to about one second of writes if the
 * machine (not just the process) dies; `always` fsyncs every write and loses none, at a cost in
 * throughput.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { QueueError } from './errors.js';

export interface EmbeddedRedisOptions {
  /** Data directory (AOF and RDB files); created if missing. */
  directory: string;
  /** 0 (default): a free port. */
  port?: number;
  appendfsync?: 'always' | 'everysec';
  /** The redis-server binary (default: from PATH). */
  binary?: string;
  /** How long to wait for it to accept connections (default 10 s). */
  startTimeoutMs?: number;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

export class EmbeddedRedis {
  readonly #options: Required<EmbeddedRedisOptions>;
  #child: ChildProcess | null = null;
  #url: string | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: EmbeddedRedisOptions) {
    this.#options = { port: 0, appendfsync: 'everysec', binary: 'redis-server', startTimeoutMs: 10_000, ...options };
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  get url(): string | null {
    return this.#url;
  }

  /** Starts redis-server and resolves with its URL once it accepts connections. */
  async start(): Promise<string> {
    if (this.#url !== null) return this.#url;
    const { directory, appendfsync, binary, startTimeoutMs } = this.#options;
    await mkdir(directory, { recursive: true });
    const port = this.#options.port === 0 ? await freePort() : this.#options.port;
    const child = spawn(binary, [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', directory,
      '--appendonly', 'yes', '--appendfsync', appendfsync, '--save', '', '--daemonize', 'no',
      '--protected-mode', 'yes', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000); });
    child.stderr?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000); });
    // Fails the start if the process cannot run or exits early; detached once it is up, so a later
    // exit (on close) does not reject anything.
    let onError: (error: Error) => void = () => {};
    let onExit: (code: number | null) => void = () => {};
    const failed = new Promise<never>((_, reject) => {
      onError = (error) => {
        const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'REDIS_NOT_INSTALLED' : 'REDIS_START';
        reject(new QueueError(code, `cannot run ${binary}: ${error.message}`, { cause: error }));
      };
      onExit = (code) => reject(new QueueError('REDIS_START', `redis-server exited with code ${String(code)} before accepting connections: ${output.trim()}`));
    });
    child.once('error', onError);
    child.once('exit', onExit);
    try {
      await Promise.race([waitForPort(port, startTimeoutMs), failed]);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    } finally {
      child.off('error', onError);
      child.off('exit', onExit);
    }
    this.#child = child;
    this.#url = `redis://127.0.0.1:${port}`;
    return this.#url;
  }

  /** Stops redis-server (SIGTERM: it finishes writing the AOF) and waits for it to exit. Idempotent. */
  close(): Promise<void> {
    return this.#stop('SIGTERM');
  }

  /** Kills redis-server without letting it finish (for fault tests). */
  kill(): Promise<void> {
    return this.#stop('SIGKILL');
  }

  #stop(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    if (child === null) return Promise.resolve();
    this.#closing ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill(signal);
        await exited;
      }
      this.#child = null;
      this.#url = null;
      this.#closing = null;
    })();
    return this.#closing;
  }
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        // A PING answered means the server is ready, not only listening.
        socket.write('PING\r\n');
      });
      socket.once('data', (data) => { socket.destroy(); resolve(data.toString().startsWith('+PONG')); });
      socket.once('error', () => { socket.destroy(); resolve(false); });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new QueueError('REDIS_START', `redis-server did not answer on port ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
