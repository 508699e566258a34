/**
 * Every error the gateway answers with, by code: one table, so docs/API.md, the OpenAPI document
 * and the tests agree. Bodies are `{statusCode, code, error, message}`.
 */
import { EcgFaasError } from '../contracts/errors.js';

export const GATEWAY_ERRORS = {
  INVALID_PACKET: { status: 400, description: 'The JSON body does not match the packet schema (wrong types, missing or unknown fields, too many samples or leads).' },
  BAD_JSON: { status: 400, description: 'The body is not valid JSON (NaN and Infinity are not JSON).' },
  BAD_BINARY_PACKET: { status: 400, description: 'The binary body does not follow the documented layout.' },
  INVALID_MONITOR_ID: { status: 400, description: 'The monitor id is not 1-64 of [A-Za-z0-9_-].' },
  INVALID_QUERY: { status: 400, description: 'A query parameter is malformed.' },
  NOT_FOUND: { status: 404, description: 'No such route, or the invocation is unknown or its result expired.' },
  PAYLOAD_TOO_LARGE: { status: 413, description: 'The body is larger than one packet can be.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'Content-Type is neither application/json nor application/octet-stream.' },
  UNSUPPORTED_SAMPLE_RATE: { status: 422, description: 'Only 360 Hz is supported for now.' },
  LEAD_LENGTH_MISMATCH: { status: 422, description: 'The leads of a packet have different numbers of samples.' },
  SAMPLE_OUT_OF_RANGE: { status: 422, description: 'A sample is not representable: ADC samples must be integers in int16 range; mV samples within ±32.767 mV.' },
  MONITOR_RATE_LIMITED: { status: 429, description: 'This monitor sends faster than its limit; retry after Retry-After seconds.' },
  QUEUE_FULL: { status: 429, description: 'The gateway or the monitor\'s queue holds more packets than its limit; retry after Retry-After seconds.' },
  REDIS_UNAVAILABLE: { status: 503, description: 'The queue (Redis) is unreachable: the packet was NOT accepted; retry.' },
  NO_WORKERS: { status: 503, description: 'No live worker can take this monitor yet; retry.' },
  NO_CAPACITY: { status: 503, description: 'The placement policy has no room for a new monitor (the message says which rules excluded each worker); retry after Retry-After, or add capacity.' },
  SHUTTING_DOWN: { status: 503, description: 'The gateway is shutting down; retry on another.' },
  INTERNAL: { status: 500, description: 'An unexpected error (logged with the request id).' },
} as const;

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS;

export class GatewayError extends EcgFaasError {
  readonly statusCode: number;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(code, message, options);
    this.name = 'GatewayError';
    this.statusCode = GATEWAY_ERRORS[code].status;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}
