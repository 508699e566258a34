/**
 * Every Redis key and channel the platform uses, in one place, under one prefix (default `ecgfaas`),
 * so several deployments (and every test run) can share a Redis without touching each other's data.
 */
export interface KeyOptions {
  prefix?: string;
}

export class RedisKeys {
  readonly prefix: string;

  constructor(prefix = 'ecgfaas') {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) throw new RangeError(`key prefix "${prefix}" must be 1-64 of [A-Za-z0-9_.-]`);
    this.prefix = prefix;
  }

  /** BullMQ's own prefix: its keys live under `<prefix>:q:<queue>:...`. */
  get bullPrefix(): string {
    return `${this.prefix}:q`;
  }

  /** The queue of one worker slot. A worker process owns one slot and may adopt orphaned ones. */
  queueName(slot: string): string {
    return `slot.${slot}`;
  }

  /** Hash monitorId → slot: which queue a monitor's packets go to (the scheduler will own it). */
  get assignments(): string {
    return `${this.prefix}:assign`;
  }

  /** Hash slot → number of monitors assigned to it. */
  get slotLoad(): string {
    return `${this.prefix}:slot-load`;
  }

  /** Sorted set slot → last heartbeat of its owner (ms, Redis clock). */
  get slots(): string {
    return `${this.prefix}:slots`;
  }

  /** String: the worker that currently owns a slot (with a TTL refreshed by its heartbeats). */
  slotLease(slot: string): string {
    return `${this.leasePrefix}${slot}`;
  }

  /** What every slot lease key starts with. */
  get leasePrefix(): string {
    return `${this.prefix}:lease:`;
  }

  /** Hash: a worker's facts (JSON) and counters, refreshed on each heartbeat, expiring when it dies. */
  worker(workerId: string): string {
    return `${this.prefix}:worker:${workerId}`;
  }

  /** String (JSON): the scheduler's last placement decision for a monitor (`ecgfaas placement explain`). */
  placement(monitorId: string): string {
    return `${this.prefix}:placement:${monitorId}`;
  }

  /** String: held while a gateway reads the inventory, plans and writes one placement. */
  get placementLock(): string {
    return `${this.prefix}:placement-lock`;
  }

  /** String (JSON): a VM the deploy driver manages (deploy/vms.ts). */
  vm(name: string): string {
    return `${this.prefix}:vm:${name}`;
  }

  /** Stream: the scheduler's actions with their reasons (scheduler/control.ts). */
  get schedulerEvents(): string {
    return `${this.prefix}:scheduler-events`;
  }

  /** Set of VM names the deploy drivers manage. */
  get vms(): string {
    return `${this.prefix}:vms`;
  }

  /**
   * String (JSON): a monitor's handover in progress (scheduler/moves.ts): the slot it leaves, until
   * that slot's worker has run every packet queued for it there. Meanwhile its new slot parks them.
   */
  move(monitorId: string): string {
    return `${this.prefix}:move:${monitorId}`;
  }

  /** List: packets a monitor's new slot received while its handover was in progress, in arrival order. */
  park(monitorId: string): string {
    return `${this.prefix}:park:${monitorId}`;
  }

  /** Pub/sub channel: routes changed (JSON `{id, monitors}`); every gateway forgets them, then acknowledges. */
  get routesChannel(): string {
    return `${this.prefix}:routes`;
  }

  /** Set: the gateways that acknowledged one route change. */
  routeAck(changeId: string): string {
    return `${this.prefix}:route-ack:${changeId}`;
  }

  /** Sorted set gatewayId → last heartbeat (ms): whom a route change waits for. */
  get gateways(): string {
    return `${this.prefix}:gateways`;
  }

  /** Hash monitorId → Redis-clock ms of its last packet committed: a silent monitor releases its slot (scheduler/control.ts). */
  get lastSeen(): string {
    return `${this.prefix}:last-seen`;
  }

  /** Hash VM → JSON: VMs placement asked a deploy driver for and that have no worker heartbeating yet (deploy/scale-out.ts). */
  get scaleOutPending(): string {
    return `${this.prefix}:scale-out`;
  }

  /** Sorted set "driver@host" → last heartbeat (ms): deploy drivers that serve scale-out requests. */
  get drivers(): string {
    return `${this.prefix}:drivers`;
  }

  /** Hash VM → JSON: VMs the interference detector took out of placement, with why and since when. */
  get quarantine(): string {
    return `${this.prefix}:quarantine`;
  }

  /** Sorted set workerId → last heartbeat (ms). */
  get workers(): string {
    return `${this.prefix}:workers`;
  }

  /** Bitmap of accepted seqs of one (monitor, session), in chunks of 65,536 seqs. */
  dedup(monitorId: string, session: string, seq: number): { key: string; bit: number } {
    const chunk = Math.floor(seq / 65536);
    return { key: `${this.prefix}:dd:${monitorId}:${session}:${chunk}`, bit: seq % 65536 };
  }

  /** An invocation's result (JSON), kept for the result TTL. */
  result(invocationId: string): string {
    return `${this.prefix}:res:${invocationId}`;
  }

  /** A monitor's last function checkpoint, and the packets processed since (list of encoded packets). */
  checkpoint(monitorId: string): string {
    return `${this.prefix}:ck:${monitorId}`;
  }

  replayLog(monitorId: string): string {
    return `${this.prefix}:log:${monitorId}`;
  }

  /** List: episode writes committed by a slot's jobs and not yet stored in S3, in commit order. */
  outbox(slot: string): string {
    return `${this.prefix}:outbox:${slot}`;
  }

  /** Pub/sub channel carrying every batch of results to the gateways (waiting requests, SSE). */
  get resultsChannel(): string {
    return `${this.prefix}:results`;
  }

  /** The run every new invocation is attributed to (set by whoever starts a run: demo, bench, up). */
  get currentRun(): string {
    return `${this.prefix}:run`;
  }
}
