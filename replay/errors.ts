import { EcgFaasError } from '../contracts/errors.js';

/**
 * Codes: REPLAY_BAD_OPTION (an option is out of range), REPLAY_UNKNOWN_RECORD (a record is not in
 * the data directory), REPLAY_BAD_RECORD (a record cannot be sent as 360 Hz packets),
 * REPLAY_GATEWAY_UNREACHABLE (the start-up probe got no HTTP answer), REPLAY_IO (the --roundtrips
 * file cannot be written), REPLAY_STATE (API misuse).
 */
export class ReplayError extends EcgFaasError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ReplayError';
  }
}
