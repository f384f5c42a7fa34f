// Where a worker's jobs come from, and how it holds one. A JobRun (job-run.ts) sees only these
// two interfaces, so a source other than the coordinator's HTTP API (an SQS queue) plugs in without
// touching the phases of a job.
import type { Job, LogBatch, LogBatchResponse, Progress } from '@drover/protocol';

/** A batch of the attempt's output, as the worker's log shipper sends it. */
export type LogShipment = Pick<LogBatch, 'attempt' | 'lines' | 'dropped'>;

/** One claimed attempt of a job: the lease this worker holds on it, and how to end it. */
export interface JobLease {
  readonly job: Job;
  /** performance.now() when the request that got this job was sent: the lease is proven from then. */
  readonly claimedAt: number;
  /** After this long without a renewal the source may hand the job to another node (ms). */
  readonly leaseMs: number;
  /**
   * Renews the lease, carrying the app's progress. Resolves with the job's status as the source sees
   * it: `running` while this worker holds it; anything else (`canceled`, `completed`, `deleted`, …)
   * means it no longer does. Rejects when the source cannot be reached (the caller tries again).
   */
  heartbeat(progress?: Progress): Promise<string>;
  /** The attempt succeeded: its outputs are stored. `progress`: what the app last reported. */
  complete(progress?: Progress): Promise<void>;
  /** The attempt failed; `reason` says why (kept in the job's events where the source can). */
  fail(reason?: string): Promise<void>;
  /** This node is going away: hand the job back without counting a failure. */
  release(): Promise<void>;
  /**
   * Optional: keeps a batch of the attempt's output lines where the job's owner can read them (a
   * source without it gets none shipped). Rejects with ReportRefusedError when the source will not
   * take them (then no more are sent), with another error when it cannot be reached (sent again).
   */
  shipLogs?(batch: LogShipment): Promise<LogBatchResponse>;
}

/** A report the source refused for good (not a transport error): retrying will not help. */
export class ReportRefusedError extends Error {
  override name = 'ReportRefusedError';
}

/** The source refuses this worker's credentials (a wrong or revoked API key): retrying will not help for long. */
export class AccessDeniedError extends Error {
  override name = 'AccessDeniedError';
}

export interface ClaimOptions {
  /** Wait up to this long for a job, where the source can wait (long-poll). */
  waitS: number;
  signal: AbortSignal;
}

export interface JobSource {
  /** Where the jobs come from, for the start-up log line. */
  readonly description: string;
  /** Whether a claim waits for work (long-poll) rather than answering at once. */
  readonly waits: boolean;
  /** One claim: a lease, or undefined when there is no job now (the caller paces its claims). */
  claim(o: ClaimOptions): Promise<JobLease | undefined>;
}
