import { EcgFaasError } from '../contracts/errors.js';

/** Codes: REDIS_START (the embedded redis-server did not start), REDIS_NOT_INSTALLED, REDIS_UNREACHABLE (no connection at start-up), and the CLOCK_* codes of clock.ts. */
export class QueueError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'QueueError';
  }
}
