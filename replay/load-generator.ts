/**
 * The open-loop load generator: one timer walks the precomputed schedule and sends every packet
 * that is due, whatever the state of earlier requests, exactly as real monitors would (a slow
 * gateway gets more concurrent requests, not fewer packets). Answers are counted as they come.
 *
 * Life cycle: `new` → `start()` (file, pool, GET /healthz probe) → sending → drain → `finished()`
 * resolves with the summary; `close()` (idempotent, awaited) releases the pool and the file and
 * may be called at any time.
 */
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { Pool, type Dispatcher } from 'undici';
import { BINARY_CONTENT_TYPE } from '../contracts/packet-binary.js';
import { ReplayError } from './errors.js';
import { sendTimeMs, type PlannedMonitor, type PlannedSession, type SchedulePlan } from './schedule.js';
import type { RecordSource } from './source.js';
import { distribution, LogHistogram, SampleStore } from './stats.js';
import type { PacketCounts, ReplayProgress, ReplaySummary, RoundTripLine } from './types.js';

export interface LoadGeneratorConfig {
  gateway: URL;
  plan: SchedulePlan;
  /** A source for every record the plan uses. */
  sources: ReadonlyMap<string, RecordSource>;
  deadlineMs: number;
  wait: boolean;
  connections: number;
  drainMs: number;
  requestTimeoutMs: number;
  roundtripsFile?: string | undefined;
  /** Gap between start() returning and the first scheduled second; default 20 ms. */
  startDelayMs?: number | undefined;
}

/** What the generator knows; runReplay adds seed, records and the other run metadata. */
export type LoadResult = Omit<ReplaySummary, 'gateway' | 'monitors' | 'durationS' | 'seed' | 'records' | 'monitorsPerRecord' | 'leads' | 'wait' | 'deadlineMs' | 'connections'>;

interface MonitorState {
  plan: PlannedMonitor;
  source: RecordSource;
  path: string;
  sessionBytes: Buffer[];
  segment: number;
}

type State = 'new' | 'starting' | 'sending' | 'draining' | 'done';

const HEADERS = { 'content-type': BINARY_CONTENT_TYPE };
const PROBE_TIMEOUT_MS = 5000;
const QUEUE_SAMPLE_MS = 100;
// After destroying the pool, in-flight handlers settle within a tick or two; don't hang on a stray one.
const SETTLE_AFTER_DESTROY_MS = 1000;

export class LoadGenerator {
  private readonly config: LoadGeneratorConfig;
  private readonly monitors: MonitorState[];
  private state: State = 'new';
  private pool: Pool | undefined;
  private file: WriteStream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private t0 = 0;
  private startedAt = 0;
  private sendStoppedAt: number | undefined;
  private k = 0;
  private pos = 0;
  private stopRequested = false;
  private aborted = false;
  private destroying = false;
  private finalized = false;
  private closing: Promise<void> | undefined;
  private idleWaiter: (() => void) | undefined;
  private resolveFinished!: (result: LoadResult) => void;
  private readonly finishedPromise: Promise<LoadResult>;
  private lastQueueSample = 0;
  /** A write error of the --roundtrips file; close() reports it. */
  private fileError: Error | undefined;

  private readonly counts: PacketCounts;
  private outstanding = 0;
  private misses = 0;
  private readonly statusCounts: Record<string, number> = {};
  private readonly errorCodes: Record<string, number> = {};
  private readonly roundTrips = new SampleStore();
  private readonly liveRoundTrips = new LogHistogram();
  private readonly lag = new LogHistogram();
  private clientQueuedMax = 0;

  constructor(config: LoadGeneratorConfig) {
    this.config = config;
    const base = config.gateway.pathname.replace(/\/+$/, '');
    const query = config.wait ? '?wait=1' : '';
    this.monitors = config.plan.monitors.map((plan) => {
      const source = config.sources.get(plan.record);
      if (source === undefined) throw new ReplayError('REPLAY_STATE', `no source for record ${plan.record}`);
      return {
        plan,
        source,
        path: `${base}/v1/monitors/${encodeURIComponent(plan.monitorId)}/packets${query}`,
        sessionBytes: plan.sessions.map((s) => Buffer.from(s.session, 'latin1')),
        segment: 0,
      };
    });
    this.counts = { planned: config.plan.totalPackets, sent: 0, accepted: 0, failed: 0, duplicates: 0, rejected429: 0, unanswered: 0 };
    this.finishedPromise = new Promise((resolve) => {
      this.resolveFinished = resolve;
    });
  }

  /** Opens the connection pool, checks the gateway answers HTTP at all, opens --roundtrips, and starts the clock. */
  async start(): Promise<void> {
    if (this.state !== 'new' || this.closing !== undefined) throw new ReplayError('REPLAY_STATE', 'start() may be called once, before close()');
    this.state = 'starting';
    const { gateway, connections, roundtripsFile } = this.config;
    if (roundtripsFile !== undefined) {
      const file = createWriteStream(roundtripsFile);
      file.on('error', (error) => {
        this.fileError ??= error;
      });
      this.file = file;
      try {
        await once(file, 'open');
      } catch (error) {
        this.file = undefined;
        throw new ReplayError('REPLAY_IO', `cannot write the round trips to ${roundtripsFile}: ${(error as Error).message}`, { cause: error });
      }
    }
    const pool = new Pool(gateway.origin, { connections, keepAliveTimeout: 30_000, connect: { timeout: PROBE_TIMEOUT_MS } });
    this.pool = pool;
    await this.probe(pool);
    // Open every connection before the clock starts: hundreds of TCP handshakes (and undici's parser
    // set-up per socket) inside the first scheduled second would show up as client-made latency.
    // Best effort: a gateway that refuses extra connections still gets its load, queued here.
    await Promise.allSettled(Array.from({ length: connections - 1 }, () => this.probe(pool)));
    if (this.closing !== undefined) return; // closed while starting
    this.startedAt = performance.now();
    this.t0 = this.startedAt + (this.config.startDelayMs ?? 20);
    this.state = 'sending';
    if (this.stopRequested) {
      this.aborted = true;
      this.stopSending();
    } else {
      this.tick();
    }
  }

  /** Resolves when every packet was sent (or sending was stopped) and the answers drained. */
  finished(): Promise<LoadResult> {
    return this.finishedPromise;
  }

  /** Stops sending now (Ctrl-C); outstanding answers are awaited for up to drainMs. */
  stop(): void {
    this.stopRequested = true;
    if (this.state === 'sending') {
      this.aborted = this.k < this.config.plan.spanS;
      this.stopSending();
    }
  }

  progress(): ReplayProgress {
    return {
      elapsedMs: this.state === 'new' || this.state === 'starting' ? 0 : Math.max(0, performance.now() - this.t0),
      ...this.counts,
      deadlineMisses: this.misses,
      outstanding: this.outstanding,
      p99Ms: this.liveRoundTrips.quantile(0.99),
      done: this.state === 'done',
    };
  }

  /** Releases the pool and the file; idempotent. Rejects (REPLAY_IO) when the --roundtrips file could not be written. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state === 'sending' || this.state === 'draining') {
      this.aborted ||= this.k < this.config.plan.spanS;
      this.sendStoppedAt ??= performance.now();
    }
    if (this.pool !== undefined) {
      this.destroying = true;
      await this.pool.destroy();
      await this.whenIdle(SETTLE_AFTER_DESTROY_MS);
    }
    if (this.state === 'sending' || this.state === 'draining') this.finalize();
    if (this.file !== undefined) {
      const file = this.file;
      this.file = undefined;
      if (!file.destroyed) await new Promise<void>((resolve) => file.end(resolve));
    }
    if (this.fileError !== undefined) {
      throw new ReplayError('REPLAY_IO', `writing the round trips to ${this.config.roundtripsFile} failed: ${this.fileError.message}`, { cause: this.fileError });
    }
  }

  private async probe(pool: Pool): Promise<void> {
    // The gateway's cheap liveness route; any HTTP answer (even 404) shows something listens,
    // and only a transport error fails.
    const path = `${this.config.gateway.pathname.replace(/\/+$/, '')}/healthz`;
    try {
      const response = await pool.request({ path, method: 'GET', headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS });
      await response.body.dump();
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new ReplayError('REPLAY_GATEWAY_UNREACHABLE',
        `gateway ${this.config.gateway.href} is unreachable: ${(error as Error).message}${code ? ` (${code})` : ''}`, { cause: error });
    }
  }

  /** Sends everything due by now, then sleeps until the next due send. */
  private readonly tick = (): void => {
    this.timer = undefined;
    if (this.state !== 'sending') return;
    const { order, spanS } = this.config.plan;
    const now = performance.now() - this.t0;
    if (now - this.lastQueueSample >= QUEUE_SAMPLE_MS && this.pool !== undefined) {
      this.lastQueueSample = now;
      this.clientQueuedMax = Math.max(this.clientQueuedMax, this.pool.stats.queued);
    }
    while (this.k < spanS) {
      const monitor = this.monitors[order[this.pos] as number] as MonitorState;
      const due = sendTimeMs(monitor.plan, this.k, this.config.plan.periodMs);
      if (due > now) {
        this.timer = setTimeout(this.tick, Math.ceil(due - now));
        return;
      }
      if (this.k < monitor.plan.packets) this.send(monitor, due);
      if (++this.pos === order.length) {
        this.pos = 0;
        this.k++;
      }
    }
    this.stopSending();
  };

  private send(monitor: MonitorState, dueMs: number): void {
    const pool = this.pool as Pool;
    let session = monitor.plan.sessions[monitor.segment] as PlannedSession;
    if (this.k >= session.firstSend + session.packets) session = monitor.plan.sessions[++monitor.segment] as PlannedSession;
    const seq = this.k - session.firstSend;
    const body = monitor.source.encode(monitor.sessionBytes[monitor.segment] as Buffer, seq, Date.now(), session.firstPacket + seq);
    const started = performance.now();
    this.lag.record(Math.max(0, started - this.t0 - dueMs));
    this.counts.sent++;
    this.outstanding++;
    pool
      .request({ path: monitor.path, method: 'POST', headers: HEADERS, body, headersTimeout: this.config.requestTimeoutMs, bodyTimeout: this.config.requestTimeoutMs })
      .then(
        (response) => this.onResponse(monitor, session.session, seq, dueMs, started, response),
        (error: unknown) => this.onError(monitor, session.session, seq, dueMs, error),
      );
  }

  private async onResponse(monitor: MonitorState, session: string, seq: number, dueMs: number, started: number, response: Dispatcher.ResponseData): Promise<void> {
    let text: string;
    try {
      text = await response.body.text();
    } catch (error) {
      this.onError(monitor, session, seq, dueMs, error);
      return;
    }
    if (this.finalized) return;
    const elapsed = performance.now() - started;
    const status = response.statusCode;
    this.bump(this.statusCounts, String(status));
    let invocationId: string | null = null;
    let duplicate = false;
    if (status >= 200 && status < 300) {
      try {
        const answer = JSON.parse(text) as { invocationId?: unknown; duplicate?: unknown };
        if (typeof answer.invocationId === 'string') invocationId = answer.invocationId;
        duplicate = answer.duplicate === true;
      } catch {
        // A 2xx without JSON still counts by its status; only the id is lost.
      }
    }
    let roundTrip: number | null = null;
    if (status >= 200 && status < 300) {
      this.counts.accepted++;
      if (duplicate) this.counts.duplicates++;
      // With wait, the classification is a 200; a 202 means the gateway's wait ran out first.
      else if (status === 200 || (!this.config.wait && status === 202)) roundTrip = elapsed;
    } else {
      this.counts.failed++;
      if (status === 429) this.counts.rejected429++;
      this.bump(this.errorCodes, errorCodeOf(text) ?? `HTTP_${status}`);
    }
    if (roundTrip !== null) {
      this.roundTrips.push(roundTrip);
      this.liveRoundTrips.record(roundTrip);
    }
    this.complete(monitor, session, seq, dueMs, invocationId, roundTrip, status);
  }

  private onError(monitor: MonitorState, session: string, seq: number, dueMs: number, error: unknown): void {
    if (this.finalized) return;
    if (this.destroying) {
      // Our own pool shutdown after the drain: the answer never came.
      this.counts.unanswered++;
      this.bump(this.statusCounts, 'none');
      this.complete(monitor, session, seq, dueMs, null, null, 'none');
      return;
    }
    this.counts.failed++;
    this.bump(this.statusCounts, 'error');
    this.bump(this.errorCodes, (error as { code?: string }).code ?? (error as Error).name ?? 'Error');
    this.complete(monitor, session, seq, dueMs, null, null, 'error');
  }

  private complete(monitor: MonitorState, session: string, seq: number, dueMs: number, invocationId: string | null, roundTripMs: number | null, status: RoundTripLine['status']): void {
    const miss = roundTripMs === null || roundTripMs > this.config.deadlineMs;
    if (miss) this.misses++;
    if (this.file !== undefined) {
      const line: RoundTripLine = {
        invocationId, monitorId: monitor.plan.monitorId, session, seq, dueMs: Math.round(dueMs * 1000) / 1000,
        roundTripMs: roundTripMs === null ? null : Math.round(roundTripMs * 1000) / 1000, status, miss,
      };
      this.file.write(`${JSON.stringify(line)}\n`);
    }
    this.outstanding--;
    if (this.outstanding === 0) this.idleWaiter?.();
  }

  private bump(table: Record<string, number>, key: string): void {
    table[key] = (table[key] ?? 0) + 1;
  }

  private stopSending(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.sendStoppedAt = performance.now();
    this.state = 'draining';
    void this.drain();
  }

  private async drain(): Promise<void> {
    await this.whenIdle(this.config.drainMs);
    if (this.state !== 'draining' || this.closing !== undefined) return; // close() finishes instead
    if (this.outstanding > 0 && this.pool !== undefined) {
      this.destroying = true;
      await this.pool.destroy();
      await this.whenIdle(SETTLE_AFTER_DESTROY_MS);
    }
    if (this.state === 'draining') this.finalize();
  }

  /** Resolves when nothing is outstanding or after `timeoutMs`, whichever is first. */
  private whenIdle(timeoutMs: number): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const previous = this.idleWaiter;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiter = () => {
        previous?.();
        done();
      };
    });
  }

  private finalize(): void {
    if (this.finalized) return;
    // Anything still unsettled after the pool was destroyed never got an answer.
    if (this.outstanding > 0) {
      this.counts.unanswered += this.outstanding;
      this.misses += this.outstanding;
      this.statusCounts.none = (this.statusCounts.none ?? 0) + this.outstanding;
      this.outstanding = 0;
    }
    this.finalized = true;
    this.state = 'done';
    const now = performance.now();
    const stoppedAt = this.sendStoppedAt ?? now;
    // A full run spans exactly spanS scheduled seconds; a stopped one, the time until the stop.
    const windowS = this.aborted ? Math.max(0, stoppedAt - this.t0) / 1000 : this.config.plan.spanS;
    const sent = this.counts.sent;
    this.resolveFinished({
      elapsedS: Math.round(Math.max(0, now - this.t0)) / 1000,
      packets: { ...this.counts },
      roundTripMs: distribution(this.roundTrips),
      deadlineMisses: this.misses,
      deadlineMissRate: sent === 0 ? 0 : this.misses / sent,
      statusCounts: { ...this.statusCounts },
      errorCodes: { ...this.errorCodes },
      requestsPerSecond: windowS > 0 ? Math.round((sent / windowS) * 100) / 100 : 0,
      sendLagMs: { p99: round3(this.lag.quantile(0.99)), max: round3(this.lag.max) },
      clientQueuedMax: this.clientQueuedMax,
      aborted: this.aborted,
    });
  }
}

/** The stable `code` of a gateway error body ({statusCode, code, error, message}), if it has one. */
function errorCodeOf(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { code?: unknown };
    return typeof body.code === 'string' ? body.code : undefined;
  } catch {
    return undefined;
  }
}

function round3(value: number | null): number | null {
  return value === null ? null : Math.round(value * 1000) / 1000;
}
