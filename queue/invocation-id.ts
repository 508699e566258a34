import { createHash } from 'node:crypto';

/**
 * The invocation id is a function of (monitor, session, seq): a packet sent again gets the same id
 * without a lookup, and a worker that sees the packet twice (a retried job, a duplicate that raced
 * past the gateway's check) writes its effects under the same keys, so they exist once.
 */
export function invocationIdOf(monitorId: string, session: string | undefined, seq: number): string {
  return createHash('sha256').update(`${monitorId}\u0000${session ?? ''}\u0000${seq}`).digest('base64url').slice(0, 22);
}
