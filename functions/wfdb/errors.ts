import { EcgFaasError } from '../../contracts/errors.js';

/**
 * Codes: WFDB_NOT_FOUND (a file of the record is missing), WFDB_BAD_HEADER, WFDB_UNSUPPORTED,
 * WFDB_TRUNCATED (a .dat shorter than the header says), WFDB_CHECKSUM (samples disagree with the
 * header's checksum or first value), WFDB_BAD_ANNOTATION (an .atr that does not decode), WFDB_RANGE
 * (a value that the format cannot store).
 */
export class WfdbError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'WfdbError';
  }
}
