// The store contract. Every job transition is one named function whose precondition
// (holder, status) is checked inside the write itself, never by a read followed by a write.
import type { JobDefinition, JobStatus, Progress } from '@drover/protocol';
import type { LogBatch } from '@drover/protocol';
import type { AppendLogsOutcome, AppendLogsRef, LogRead, ReadLogsQuery } from './logs.js';
import type { GroupSummaryRow } from './overview.js';
import type { EventRow, HandoverRow, JobRow, OutboxRow, UserRow } from './schema.js';
import type { ScalingStore } from './scaling.js';

export type { EventRow, HandoverRow, JobRow, LogAttemptRow, LogLineRow, OutboxRow, ScalingDecisionRow, ScalingRuleRow, UserRow } from './schema.js';
export type * from './scaling.js';
export type { AppendLogsOutcome, AppendLogsRef, LogCapState, LogRead, ReadLogsQuery } from './logs.js';
export type { GroupSummaryRow } from './overview.js';

/** A job definition with defaults applied, as the store keeps it. */
export interface NewJob {
  id: string;
  definition: Required<Pick<JobDefinition, 'command' | 'arguments' | 'environment' | 'container_group_id' | 'max_failures' | 'heartbeat_interval' | 'compression'>> &
    JobDefinition;
}

/** The result of a guarded transition, for the scheduler to turn into an HTTP answer. */
export type Outcome =
  | { kind: 'applied'; job: JobRow }
  /** the same request was already applied; nothing changed */
  | { kind: 'repeat'; job: JobRow }
  /** the caller does not hold the job (another machine does, or none) */
  | { kind: 'not_holder'; job: JobRow }
  /** the job is completed, failed or canceled */
  | { kind: 'finished'; job: JobRow }
  | { kind: 'not_found' };

export interface MachineRef {
  userId: string;
  jobId: string;
  machineId: string;
  now: number;
}

export interface ClaimRequest {
  userId: string;
  machineId: string;
  groupId: string;
  now: number;
}

export interface ListJobsFilter {
  userId: string;
  status?: JobStatus;
  groupId?: string;
  limit: number;
  offset: number;
  asc: boolean;
}

export interface TokenRecord {
  secret_hash: string;
  user: UserRow;
}

/** Which (user, container group) may have a newly claimable job. */
export interface WorkSignal {
  userId: string;
  groupId: string;
  /** how many jobs became claimable: wake that many waiters (absent: every waiter) */
  count?: number;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** A lease lapses after leaseFactor × the job's heartbeat_interval without a heartbeat. */
  readonly leaseFactor: number;

  migrate(): Promise<void>;
  close(): Promise<void>;
  ping(): Promise<void>;

  /** Insert jobs all-or-nothing. */
  createJobs(userId: string, jobs: NewJob[], now: number): Promise<JobRow[]>;
  getJob(userId: string, jobId: string): Promise<JobRow | undefined>;
  listJobs(filter: ListJobsFilter): Promise<JobRow[]>;
  listEvents(userId: string, jobId: string): Promise<EventRow[] | undefined>;

  /**
   * After a start: every running job whose lease was still live when the coordinator was last heard
   * of (its newest heartbeat) gets one whole lease from `now`, so the nodes that kept running it
   * through the outage can heartbeat again before anyone else may take it. Leases that had lapsed
   * before the outage (dead nodes) stay lapsed. Returns how many leases were extended.
   */
  graceLeasesAfterStart(now: number): Promise<number>;

  /** Atomically hand one claimable job to the machine: orphaned running jobs first, then pending, oldest first. */
  claimJob(req: ClaimRequest): Promise<JobRow | undefined>;
  heartbeat(ref: MachineRef & { progress?: Progress }): Promise<Outcome>;
  /** With the app's last progress when the report carries it. */
  completeJob(ref: MachineRef & { progress?: Progress }): Promise<Outcome>;
  /** `reason`: why the attempt failed, as the worker says (kept on the failed_attempt and failed events). */
  failJob(ref: MachineRef & { reason?: string }): Promise<Outcome>;
  releaseJob(ref: MachineRef): Promise<Outcome>;
  cancelJob(userId: string, jobId: string, now: number): Promise<Outcome>;
  /** Delete the group's pending jobs and cancel its running ones; returns how many jobs that touched. */
  purgeGroup(userId: string, groupId: string, now: number): Promise<number>;
  /** Admin: delete every job of every user. */
  clearJobs(): Promise<void>;

  /** Whether the group has a job some machine could claim now (pending, or running with no live lease). */
  hasClaimableWork(userId: string, groupId: string, now: number): Promise<boolean>;
  /** Earliest lease expiry at or after `now` among running jobs of the group, for long-poll timers. */
  nextLeaseExpiry(userId: string, groupId: string, now: number): Promise<number | undefined>;
  /** Called (in this process, for every process sharing the database) when jobs may have become claimable. */
  onWork(listener: (signal: WorkSignal) => void): () => void;

  countJobsByStatus(): Promise<Record<string, number>>;

  // ---- job logs (store/logs.ts) ----
  /** Keep a batch of an attempt's output lines, up to `capBytes` per attempt; only the machine that ran the attempt may. */
  appendLogs(ref: AppendLogsRef, batch: Pick<LogBatch, 'attempt' | 'lines' | 'dropped'>): Promise<AppendLogsOutcome>;
  readLogs(userId: string, jobId: string, q: ReadLogsQuery): Promise<LogRead | undefined>;

  // ---- the dashboard's reads (store/overview.ts) ----
  groupSummaries(userId: string, now: number, groupId?: string): Promise<GroupSummaryRow[]>;
  groupMachines(userId: string, groupId: string, now: number, limit: number): Promise<{ machine_id: string; job_id: string; attempt: number; heartbeat: number | null; lease_live: boolean }[]>;
  bannedMachines(userId: string, groupId: string, limit: number): Promise<{ machine_id: string; jobs: number; last: number }[]>;
  /** Jobs in each status at the end of each of `buckets` intervals of `stepMs` ending at `end`. */
  jobHistory(userId: string, o: { end: number; stepMs: number; buckets: number; groupId?: string }): Promise<{ times: number[]; series: Record<JobStatus, number[]> }>;
  /** After a claim of attempt > 1: record the handover (why, from whom, the progress reached). */
  recordHandover(job: JobRow, now: number): Promise<HandoverRow | undefined>;
  /** The new attempt's first progress: returns the redone fraction when this call recorded it. */
  recordResume(jobId: string, attempt: number, fraction: number): Promise<number | undefined>;
  listHandovers(userId: string, o: { limit: number; groupId?: string; jobId?: string }): Promise<HandoverRow[]>;
  /** Every group's queue depth (claimable jobs) and running jobs, whole database (for /metrics). */
  groupGauges(now: number): Promise<{ container_group_id: string; queue_depth: number; running: number; oldest_heartbeat: number | null }[]>;
  /** Webhook deliveries still owed (pending), whole database. */
  webhookBacklog(): Promise<number>;

  createUser(user: UserRow): Promise<void>;
  getUser(id: string): Promise<UserRow | undefined>;
  getUserByName(username: string): Promise<UserRow | undefined>;
  findAdmin(): Promise<UserRow | undefined>;
  createToken(token: { id: string; user_id: string; secret_hash: string; created: number }): Promise<void>;
  getToken(id: string): Promise<TokenRecord | undefined>;
  /** A user's tokens (ids and creation times; never a secret or its hash), oldest first. */
  listTokens(userId: string): Promise<{ id: string; created: number }[]>;
  /** Removes a token; false when there was none with that id. */
  deleteToken(id: string): Promise<boolean>;
  /**
   * Removes a user with its tokens, jobs (with their events and bans), scaling rules and
   * deliveries: refused while the user has pending or running jobs, or is the admin.
   */
  deleteUser(id: string): Promise<{ kind: 'deleted' } | { kind: 'not_found' } | { kind: 'admin' } | { kind: 'active'; jobs: number }>;

  /** A worker of the user asked for the group's work at `now`. */
  recordPoll(userId: string, groupId: string, now: number): Promise<void>;
  /** When a worker of the user last asked for the group's work (ms), if ever. */
  lastPoll(userId: string, groupId: string): Promise<number | undefined>;

  /** Lease up to `limit` due webhook deliveries to this sender until `lockUntil`. */
  takeDueWebhooks(now: number, limit: number, lockUntil: number): Promise<OutboxRow[]>;
  markWebhookDelivered(id: number, now: number): Promise<void>;
  markWebhookFailed(id: number, attempts: number, error: string, nextAttemptAt: number | null): Promise<void>;
  /** Earliest next_attempt_at of pending deliveries, to sleep until then. */
  nextWebhookDue(): Promise<number | undefined>;
  getWebhookDeliveries(jobId: string): Promise<OutboxRow[]>;

  /** Autoscaling: scaling rules, their decisions, per-group leases and the job counts decisions use. */
  readonly scaling: ScalingStore;
}
