// What a transition needs of its store, and the steps transitions share: the events log, and
// telling the caller why a guarded write matched nothing.
import type { CompiledQuery, Kysely, Transaction } from 'kysely';
import { FINISHED_STATUSES } from '../conditions.js';
import { QueryTemplate } from '../query-template.js';
import type { Database, JobRow } from '../schema.js';
import type { Outcome, WorkSignal } from '../types.js';

/** A transition's body: its statements in one transaction, collecting the work signals it owes. */
export type TransitionBody<T> = (trx: Transaction<Database>, signals: WorkSignal[]) => Promise<T>;

export interface StoreContext {
  readonly db: Kysely<Database>;
  /** ms of lease per second of heartbeat_interval (lease timeout = lease factor × heartbeat_interval) */
  readonly leaseMsPerIntervalSecond: number;
  /** Run `fn` in a transaction (SQLite: in the group commit), then publish the work signals it collected. */
  transaction<T>(fn: TransitionBody<T>): Promise<T>;
  /**
   * Run one statement on its own: a hot one (claim, heartbeat, completion) or a one-statement
   * PostgreSQL form. PostgreSQL runs it as a named prepared statement, with `asyncCommit` on
   * connections with synchronous_commit off; SQLite in the group commit.
   */
  executeHot<R>(query: CompiledQuery<R>, opts?: { asyncCommit?: boolean }): Promise<R[]>;
  getJob(userId: string, jobId: string): Promise<JobRow | undefined>;
  /** The store keeps `job_counts` (SQLite): read counts by status there instead of counting jobs. */
  readonly jobCounts: boolean;
}

const event = new QueryTemplate((s: StoreContext, jobId: string, at: number, type: string, machineId: string | null, attempt: number) =>
  s.db.insertInto('job_events').values({ job_id: jobId, at, type, machine_id: machineId, attempt }),
);

/** Append to the job's events log (`GET /jobs/:id/events`), in the transition's transaction. */
export async function addEvent(
  s: StoreContext,
  trx: Transaction<Database>,
  job: Pick<JobRow, 'id' | 'attempt'>,
  type: string,
  machineId: string | null,
  at: number,
  reason?: string,
): Promise<void> {
  if (reason === undefined) await trx.executeQuery(event.bind(s, job.id, at, type, machineId, job.attempt));
  else await trx.insertInto('job_events').values({ job_id: job.id, at, type, machine_id: machineId, attempt: job.attempt, reason }).execute();
}

/** The outcome of a transition: applied, or (it matched no row) why not. */
export async function outcome(
  s: StoreContext,
  applied: JobRow | undefined,
  ref: { userId: string; jobId: string },
  isRepeat: (job: JobRow) => Promise<boolean> | boolean,
): Promise<Outcome> {
  if (applied) return { kind: 'applied', job: applied };
  const job = await s.getJob(ref.userId, ref.jobId);
  if (!job) return { kind: 'not_found' };
  if (await isRepeat(job)) return { kind: 'repeat', job };
  if ((FINISHED_STATUSES as readonly string[]).includes(job.status)) return { kind: 'finished', job };
  return { kind: 'not_holder', job };
}
