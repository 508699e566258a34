import { EcgFaasError } from '../contracts/errors.js';

/** Errors of the scheduler: policy files, inventories, placements. */
export class SchedulerError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'SchedulerError';
  }
}
