// The store contract. Every job transition is one named function whose precondition
// (holder, status) is checked inside the write itself, never by a read followed by a write.
import type { JobDefinition, JobStatus, Progress } from '@drover/protocol';
import type { EventRow, JobRow, OutboxRow, UserRow } from './schema.js';

export type { EventRow, JobRow, OutboxRow, UserRow } from './schema.js';

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
  completeJob(ref: MachineRef): Promise<Outcome>;
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

  createUser(user: UserRow): Promise<void>;
  getUser(id: string): Promise<UserRow | undefined>;
  getUserByName(username: string): Promise<UserRow | undefined>;
  findAdmin(): Promise<UserRow | undefined>;
  createToken(token: { id: string; user_id: string; secret_hash: string; created: number }): Promise<void>;
  getToken(id: string): Promise<TokenRecord | undefined>;

  /** Lease up to `limit` due webhook deliveries to this sender until `lockUntil`. */
  takeDueWebhooks(now: number, limit: number, lockUntil: number): Promise<OutboxRow[]>;
  markWebhookDelivered(id: number, now: number): Promise<void>;
  markWebhookFailed(id: number, attempts: number, error: string, nextAttemptAt: number | null): Promise<void>;
  /** Earliest next_attempt_at of pending deliveries, to sleep until then. */
  nextWebhookDue(): Promise<number | undefined>;
  getWebhookDeliveries(jobId: string): Promise<OutboxRow[]>;
}
