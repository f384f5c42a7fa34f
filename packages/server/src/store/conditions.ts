// The conditions the transitions and the reads share, each written once: which job a machine may
// claim, who holds a job, when a lease lapses. Each is a Kysely expression over `jobs`, so it goes
// into a query builder's `where` and into a raw `sql` statement (PostgreSQL's one-statement forms)
// alike, with its columns unqualified.
import { expressionBuilder, sql, type Expression, type SqlBool } from 'kysely';
import type { Database } from './schema.js';

const jobs = expressionBuilder<Database, 'jobs'>();
// Constants are written into the SQL, not bound: PostgreSQL plans a prepared statement once for
// any parameters, and should know that the claim reads the pending rows with no lease.
const { lit } = sql;

export const FINISHED_STATUSES = ['completed', 'failed', 'canceled'] as const;

/**
 * The two kinds of claimable job, handed out in this order: an orphan (running with no live
 * lease: released, failed back, or no heartbeat for longer than the lease timeout), then a
 * pending job (never leased).
 */
export type ClaimableKind = 'orphan' | 'pending';

/** One kind of claimable job (bans aside). Both are ranges of `jobs_claim_idx`. */
export function claimableAs(kind: ClaimableKind, now: number): Expression<SqlBool> {
  return kind === 'orphan'
    ? jobs.and([jobs('status', '=', lit('running')), jobs('lease_expires_at', '<', now)])
    : jobs.and([jobs('status', '=', lit('pending')), jobs('lease_expires_at', '=', lit(0))]);
}

/** A job some machine may claim at `now` (bans aside). */
export function claimable(now: number): Expression<SqlBool> {
  return jobs.or([claimableAs('orphan', now), claimableAs('pending', now)]);
}

/** A running job whose lease is still live at `now`: it becomes claimable when the lease lapses. */
export function leaseLive(now: number): Expression<SqlBool> {
  return jobs.and([jobs('status', '=', lit('running')), jobs('lease_expires_at', '>=', now)]);
}

/** The precondition of every holder-only transition: the job is running and this machine holds it. */
export function heldBy(ref: { userId: string; jobId: string; machineId: string }): Expression<SqlBool> {
  return jobs.and([
    jobs('id', '=', ref.jobId),
    jobs('user_id', '=', ref.userId),
    jobs('status', '=', lit('running')),
    jobs('machine_id', '=', ref.machineId),
  ]);
}

/** When a lease taken or renewed at `now` lapses: `leaseMsPerIntervalSecond` × the job's heartbeat_interval later. */
export function leaseExpiry(leaseMsPerIntervalSecond: number, now: number) {
  return sql<number>`cast(${now} as bigint) + heartbeat_interval * ${leaseMsPerIntervalSecond}`;
}
