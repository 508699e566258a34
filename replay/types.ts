import type { Distribution } from './stats.js';

export interface ReplayOptions {
  /** Base URL of the gateway, e.g. http://127.0.0.1:3000 (a path prefix is kept). */
  gateway: string;
  monitors: number;
  /** Seconds of sending; 0 = one pass over each monitor's record. */
  durationS: number;
  /** Directory of WFDB records (MIT-BIH format). */
  dataDir: string;
  /** Candidate records; default every record with a header in dataDir. */
  records?: readonly string[] | undefined;
  /** Default 1. */
  seed?: number | undefined;
  /** 2 (default): the record's two leads; 1: the primary lead (MLII). */
  leads?: 1 | 2 | undefined;
  /** Default 1000. */
  deadlineMs?: number | undefined;
  /** Ask the gateway to hold the answer until the result (`?wait=1`); default true. */
  wait?: boolean | undefined;
  /** HTTP connections to the gateway (no pipelining); default min(2 × monitors, 256). */
  connections?: number | undefined;
  /**
   * ms between a monitor's sends (default 1000: real time). Shorter compresses time: every packet is
   * still one second of ECG, and durationS counts packets per monitor.
   */
  packetPeriodMs?: number | undefined;
  /** Writes one NDJSON line per packet. */
  roundtripsFile?: string | undefined;
  /** First session name of every monitor; default `r<seed>`. */
  sessionPrefix?: string | undefined;
  /** How long to wait for outstanding answers once sending stops; default deadlineMs + 500 (so the gateway's own 202 at its deadline is still counted by status). */
  drainMs?: number | undefined;
  /** Client-side limit on one request (headers and body each); default max(10 s, 5 × deadlineMs). */
  requestTimeoutMs?: number | undefined;
  /** onProgress period; default 250 ms. */
  progressIntervalMs?: number | undefined;
}

export interface ReplayHooks {
  onProgress?(progress: ReplayProgress): void;
  /** Aborting stops sending, waits up to drainMs for outstanding answers, and returns the summary. */
  signal?: AbortSignal | undefined;
}

export interface ReplayProgress extends PacketCounts {
  elapsedMs: number;
  deadlineMisses: number;
  outstanding: number;
  /** Live p99 of round trips so far (log-bucket estimate, within 1 %). */
  p99Ms: number | null;
  done: boolean;
}

export interface PacketCounts {
  planned: number;
  sent: number;
  /** 2xx answers: results, 202s and duplicates. */
  accepted: number;
  /** 4xx, 5xx (429 included) and transport errors. */
  failed: number;
  duplicates: number;
  rejected429: number;
  /** No answer before the replay ended (still outstanding after the drain). */
  unanswered: number;
}

export interface ReplaySummary {
  gateway: string;
  monitors: number;
  /** Planned seconds of sending (the longest monitor's packets with --duration 0). */
  durationS: number;
  /** Wall time from the first scheduled send to the end of the drain. */
  elapsedS: number;
  seed: number;
  /** Candidate records. */
  records: string[];
  monitorsPerRecord: Record<string, number>;
  leads: 1 | 2;
  wait: boolean;
  deadlineMs: number;
  connections: number;
  packets: PacketCounts;
  /**
   * Send to receipt of the classification (200 with a result); with wait off, send to the 202.
   * Null fields when no packet got one.
   */
  roundTripMs: Distribution;
  /** Packets without a result within deadlineMs: slow results, 202s, duplicates, failures, unanswered. */
  deadlineMisses: number;
  /** deadlineMisses / sent (0 when nothing was sent). */
  deadlineMissRate: number;
  /** Answers by HTTP status; "error" for transport errors, "none" for unanswered. */
  statusCounts: Record<string, number>;
  /** Failures by code: the gateway's `code` for 4xx/5xx answers (HTTP_<status> without one), the transport's (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, …) for errors. */
  errorCodes: Record<string, number>;
  requestsPerSecond: number;
  /** How late sends left against their schedule (log-bucket estimate): the generator kept up when small. */
  sendLagMs: { p99: number | null; max: number | null };
  /** Most requests seen waiting for a free connection in the client; raise --connections when large. */
  clientQueuedMax: number;
  /** True when stopped by the abort signal before the schedule ended. */
  aborted: boolean;
}

/** One line of --roundtrips. */
export interface RoundTripLine {
  invocationId: string | null;
  monitorId: string;
  session: string;
  seq: number;
  /** When the send was due, ms after the replay's start (its place in time, for analyses by time block). */
  dueMs: number;
  roundTripMs: number | null;
  /** HTTP status, or "error" (transport error) or "none" (unanswered). */
  status: number | 'error' | 'none';
  miss: boolean;
}
