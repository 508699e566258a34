/**
 * Every error the platform raises on purpose carries a stable machine-readable `code`
 * (like fastify's FST_ERR_* codes), so callers, HTTP answers and CLI exits can branch on it
 * without parsing messages.
 */
export class EcgFaasError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'EcgFaasError';
  }
}

export function isEcgFaasError(value: unknown): value is EcgFaasError {
  return value instanceof EcgFaasError;
}
