import { EcgFaasError } from '../contracts/errors.js';

/** Errors of experiments: specs (EXPERIMENT_UNREADABLE, EXPERIMENT_INVALID), options, runs. */
export class ExperimentError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ExperimentError';
  }
}
