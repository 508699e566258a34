import { EcgFaasError } from '../contracts/errors.js';

/** Codes: S3_CONFIG (missing or malformed S3 settings), S3_START (the embedded store did not start). */
export class StorageError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'StorageError';
  }
}
