import { EcgFaasError } from '../../contracts/errors.js';

/**
 * Codes: FN_WRONG_MONITOR, FN_SAMPLE_RATE, FN_PACKET_LENGTH, FN_BAD_GAIN, FN_BAD_SAMPLE,
 * FN_LEADS_CHANGED (a monitor's lead set must stay the same), FN_BAD_CHECKPOINT, FN_MODEL_MISMATCH
 * (a checkpoint resumed with another model than it was made with).
 */
export class FunctionError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'FunctionError';
  }
}
