/**
 * What the long-running commands (worker, gateway, up, demo) share: a pino logger on stderr (stdout
 * stays for machine-readable output), S3 settings from the environment or an embedded store, and
 * a graceful shutdown on SIGINT/SIGTERM.
 */
import { pino, type Logger } from 'pino';

export function createLogger(name: string, level = process.env.ECGFAAS_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/**
 * Resolves with the signal once SIGINT or SIGTERM arrives (or `signal` aborts). A second signal while
 * shutting down exits at once, as users expect from a second Ctrl-C.
 */
export function untilSignal(abort?: AbortSignal): Promise<NodeJS.Signals | 'abort'> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) process.exit(130);
      received = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    abort?.addEventListener('abort', () => resolve('abort'), { once: true });
  });
}

/** An AbortController aborted by the first SIGINT/SIGTERM: for jobs that end by themselves but may be interrupted. */
export function abortOnSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let count = 0;
  const onSignal = () => {
    count += 1;
    if (count > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
