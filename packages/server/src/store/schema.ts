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

export interface Database {
  users: UsersTable;
  tokens: TokensTable;
  jobs: JobsTable;
  job_bans: JobBansTable;
  job_events: JobEventsTable;
  webhook_outbox: WebhookOutboxTable;
}

export type JobRow = Selectable<JobsTable>;
export type NewJobRow = Insertable<JobsTable>;
export type UserRow = Selectable<UsersTable>;
export type EventRow = Selectable<JobEventsTable>;
export type OutboxRow = Selectable<WebhookOutboxTable>;
