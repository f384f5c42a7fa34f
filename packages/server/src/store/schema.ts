// The database schema as a TypeScript type (Kysely): a renamed column breaks the build.
// Times are epoch milliseconds in both stores, so lease arithmetic is plain integer SQL.
import type { Generated, Insertable, Selectable } from 'kysely';

export interface UsersTable {
  id: string;
  username: string;
  created: number;
  admin: number; // 0 | 1 (SQLite has no boolean)
  webhook_secret: string;
}

export interface TokensTable {
  id: string;
  user_id: string;
  /** hex SHA-256 of the token's secret part; the token itself is never stored */
  secret_hash: string;
  created: number;
}

export interface JobsTable {
  seq: Generated<number>;
  id: string;
  user_id: string;
  container_group_id: string;
  status: string;
  created: number;
  started: number | null;
  completed: number | null;
  canceled: number | null;
  failed: number | null;
  heartbeat: number | null;
  /** 0 = no live lease (never claimed, released, or failed back); otherwise when the holder's lease lapses */
  lease_expires_at: number;
  num_failures: number;
  num_heartbeats: number;
  machine_id: string | null;
  attempt: number;
  max_failures: number;
  heartbeat_interval: number;
  webhook: string | null;
  /** JSON of the last heartbeat's progress */
  progress: string | null;
  /** JSON of the rest of the definition: command, arguments, environment, compression, sync, legacy fields */
  spec: string;
}

export interface JobBansTable {
  job_id: string;
  machine_id: string;
  created: number;
}

export interface JobEventsTable {
  id: Generated<number>;
  job_id: string;
  at: number;
  type: string;
  machine_id: string | null;
  attempt: number;
  /** failed_attempt / failed: the worker's reason, when it gave one. */
  reason: string | null;
}

export interface WebhookOutboxTable {
  id: Generated<number>;
  user_id: string;
  job_id: string;
  url: string;
  event: string;
  body: string;
  /** pending | delivered | dead */
  state: string;
  attempts: number;
  next_attempt_at: number;
  /** a sender owns the row until then (several coordinators may share one database) */
  locked_until: number;
  last_error: string | null;
  created: number;
  delivered_at: number | null;
}

/** One attempt's log (Drover): how much of its output is kept, and the last line stored. */
export interface JobLogAttemptsTable {
  job_id: string;
  attempt: number;
  /** the machine that ran the attempt (the one that may ship its lines) */
  machine_id: string;
  /** bytes kept (UTF-8 text + 1 per line) */
  bytes: number;
  lines: number;
  /** lines not kept: over the cap, or dropped by the worker's full buffer */
  dropped: number;
  /** 1 once the attempt reached the cap */
  truncated: number;
  /** the highest seq stored (-1: none): a retried batch's lines at or below it are not stored twice */
  last_seq: number;
  updated: number;
}

export interface JobLogLinesTable {
  job_id: string;
  attempt: number;
  seq: number;
  at: number;
  /** stdout | stderr */
  stream: string;
  text: string;
}

/** A job taken over by a new attempt (Drover): why, and how much work the new attempt did again. */
export interface JobHandoversTable {
  job_id: string;
  /** the attempt that took the job over */
  attempt: number;
  user_id: string;
  container_group_id: string;
  at: number;
  /** lease_expired | released | failed_attempt */
  cause: string;
  from_machine: string | null;
  to_machine: string;
  /** the last progress fraction the previous attempt reported */
  progress_before: number | null;
  /** the first progress fraction the new attempt reported */
  progress_resumed: number | null;
}

/** A scaling rule (Kelpie's /scaling-rules), one per (user, container group). */
export interface ScalingRulesTable {
  user_id: string;
  container_group_id: string;
  created: number;
  updated: number;
  min_replicas: number;
  max_replicas: number;
  idle_threshold_seconds: number;
  jobs_per_replica: number;
  cooldown_seconds: number;
  /** saladcloud | local | none */
  provider: string;
  org_name: string | null;
  project_name: string | null;
  /** SaladCloud's name of the group; found by id on the first decision when the user gave none */
  container_group_name: string | null;
  enabled: number; // 0 | 1
  disabled_reason: string | null;
  // What the autoscaler last saw and did (written with its decisions, fenced by the lease).
  replicas: number | null;
  provider_status: string | null;
  evaluated: number | null;
  /** when the provider was last asked to change the group (cooldown) */
  last_change: number | null;
  /** starts asked for in a row without the group reaching running (start backoff) */
  start_attempts: number;
  last_start: number | null;
}

export interface ScalingDecisionsTable {
  id: Generated<number>;
  user_id: string;
  container_group_id: string;
  at: number;
  trigger: string;
  provider: string;
  pending: number;
  running: number;
  recently_ended: number;
  desired: number;
  from_replicas: number | null;
  to_replicas: number | null;
  action: string;
  /** applied | unchanged | error | pending (being carried out) | interrupted (its coordinator died) */
  outcome: string;
  reason: string;
  error: string | null;
  coordinator: string;
}

/**
 * Who may act on a group's scaling right now: one row per (user, group), held until `expires_at`.
 * `fence` goes up with every new holder, so a holder that lost the lease cannot write its results.
 */
export interface ScalingLeasesTable {
  user_id: string;
  container_group_id: string;
  holder: string;
  expires_at: number;
  fence: number;
}

export interface GroupPollsTable {
  user_id: string;
  container_group_id: string;
  /** ms: the newest GET /work for the group (written at most once a minute per coordinator) */
  last_poll: number;
}

/**
 * SQLite only: how many of a user's jobs of a group are in each status, kept by triggers on `jobs`
 * (migration 0007), so the dashboard's and /metrics' counts do not scan every job ever run on a
 * database whose queries block the event loop. PostgreSQL counts the jobs themselves: its queries
 * run beside the event loop, and counter rows would serialize the claims of a group.
 */
export interface JobCountsTable {
  user_id: string;
  container_group_id: string;
  status: string;
  n: number;
}

export interface Database {
  users: UsersTable;
  job_counts: JobCountsTable;
  group_polls: GroupPollsTable;
  tokens: TokensTable;
  jobs: JobsTable;
  job_bans: JobBansTable;
  job_events: JobEventsTable;
  webhook_outbox: WebhookOutboxTable;
  job_log_attempts: JobLogAttemptsTable;
  job_log_lines: JobLogLinesTable;
  job_handovers: JobHandoversTable;
  scaling_rules: ScalingRulesTable;
  scaling_decisions: ScalingDecisionsTable;
  scaling_leases: ScalingLeasesTable;
}

export type JobRow = Selectable<JobsTable>;
export type NewJobRow = Insertable<JobsTable>;
export type UserRow = Selectable<UsersTable>;
export type EventRow = Selectable<JobEventsTable>;
export type OutboxRow = Selectable<WebhookOutboxTable>;
export type LogAttemptRow = Selectable<JobLogAttemptsTable>;
export type LogLineRow = Selectable<JobLogLinesTable>;
export type HandoverRow = Selectable<JobHandoversTable>;
export type ScalingRuleRow = Selectable<ScalingRulesTable>;
export type ScalingDecisionRow = Selectable<ScalingDecisionsTable>;
