/**
 * What the scheduler did and why, as events in a Redis stream (`<prefix>:scheduler-events`), for
 * reports, `ecgfaas scheduler --events` and `ecgfaas placement explain`. Every move of a monitor,
 * every VM paused or resumed and every interference found or cleared is one event with its reason.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../queue/keys.js';

export type SchedulerEventType =
  | 'vm-paused' | 'vm-shut-down' | 'vm-resumed'
  /** A VM placement asked for is up (deploy/scale-out.ts), or could not be made. */
  | 'vm-scaled-out' | 'scale-out-failed'
  /** A monitor's route changed; its handover began (scheduler/moves.ts). */
  | 'monitor-moved'
  /** The slot it left ran its last packet; the new slot runs it from here. */
  | 'handover-done'
  /** A move the scheduler wanted and could not make (no room, a handover in progress). */
  | 'move-refused'
  /** A silent monitor gave its place back. */
  | 'monitor-released'
  | 'interference-detected' | 'interference-cleared'
  /** A while after moving monitors away from interference: whether their latency got better. */
  | 'interference-verified';

export interface SchedulerEvent {
  /** Redis-clock ms. */
  at: number;
  type: SchedulerEventType;
  reason: string;
  vm?: string;
  monitor?: string;
  /** Slots (worker queues) and VMs of a move. */
  from?: string | null;
  to?: string | null;
  fromVm?: string | null;
  toVm?: string | null;
  moveId?: string;
  /** Numbers behind the event (latency before and after, thresholds). */
  details?: Record<string, unknown>;
}

const EVENTS_MAX = 10_000;

export async function appendSchedulerEvents(redis: Redis, keys: RedisKeys, events: readonly SchedulerEvent[]): Promise<void> {
  if (events.length === 0) return;
  const pipeline = redis.pipeline();
  for (const event of events) pipeline.xadd(keys.schedulerEvents, 'MAXLEN', '~', String(EVENTS_MAX), '*', 'e', JSON.stringify(event));
  await pipeline.exec();
}

/** The latest scheduler events, oldest first. */
export async function readSchedulerEvents(redis: Redis, keys: RedisKeys, count = 100): Promise<SchedulerEvent[]> {
  const entries = await redis.xrevrange(keys.schedulerEvents, '+', '-', 'COUNT', count);
  return entries.reverse().map(([, fields]) => JSON.parse(fields[1] as string) as SchedulerEvent);
}
