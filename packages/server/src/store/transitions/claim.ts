// Claim: hand one claimable job to a machine. Orphans first (resume work in flight), then pending
// jobs, oldest created first within each; never a job the machine is banned from. The claim sets
// status running, machine_id, heartbeat now, started if unset, and attempt + 1; taking a lapsed
// lease records `lease_expired` for the machine that lost it, then `claimed`.
import { expressionBuilder, sql } from 'kysely';
import { claimable, claimableAs, leaseExpiry, type ClaimableKind } from '../conditions.js';
import { QueryTemplate } from '../query-template.js';
import type { Database, JobRow } from '../schema.js';
import type { ClaimRequest } from '../types.js';
import { addEvent, type StoreContext } from './context.js';
import { oweWebhook, oweWebhookFrom } from './owe-webhook.js';

const jobs = expressionBuilder<Database, 'jobs'>();

/** The oldest job of one claimable kind in the group that this machine is not banned from. */
function candidate(s: StoreContext, kind: ClaimableKind, userId: string, groupId: string, now: number, machineId: string) {
  return s.db
    .selectFrom('jobs')
    .where('user_id', '=', userId)
    .where('container_group_id', '=', groupId)
    .where(claimableAs(kind, now))
    .where(
      jobs.not(
        jobs.exists(
          jobs
            .selectFrom('job_bans')
            .select('job_bans.job_id')
            .whereRef('job_bans.job_id', '=', 'jobs.id')
            .where('job_bans.machine_id', '=', machineId),
        ),
      ),
    )
    .orderBy('created')
    .orderBy('seq')
    .limit(sql.lit(1));
}

/** What a claim writes to the job it takes. */
function takeLease(s: StoreContext, machineId: string, now: number) {
  return {
    status: 'running',
    machine_id: machineId,
    heartbeat: now,
    lease_expires_at: leaseExpiry(s.leaseMsPerIntervalSecond, now),
    started: sql<number>`coalesce(started, cast(${now} as bigint))`,
    attempt: sql<number>`attempt + 1`,
  };
}

// ---- portable (SQLite; any Kysely dialect) ----

interface CandidateRow {
  id: string;
  status: string;
  machine_id: string | null;
  attempt: number;
}

const RANK: Record<ClaimableKind, number> = { orphan: 0, pending: 1 };

/** Both kinds' oldest candidate in one statement, the orphan first. */
const pickCandidate = new QueryTemplate((s: StoreContext, userId: string, groupId: string, now: number, machineId: string) => {
  const of = (kind: ClaimableKind) =>
    candidate(s, kind, userId, groupId, now, machineId).select(['id', 'status', 'machine_id', 'attempt', sql<number>`${sql.lit(RANK[kind])}`.as('rank')]);
  return s.db.selectFrom(of('orphan').as('orphan')).selectAll().unionAll(s.db.selectFrom(of('pending').as('fresh')).selectAll()).orderBy('rank').limit(1);
});

/** Take the candidate, if it is still claimable: another claimer may have taken it since it was read. */
const take = new QueryTemplate((s: StoreContext, machineId: string, now: number, id: string) =>
  s.db.updateTable('jobs').set(takeLease(s, machineId, now)).where('id', '=', id).where(claimable(now)).returningAll(),
);

/**
 * Read a candidate and take it with a guarded UPDATE in one transaction. The guard makes a lost
 * race harmless; a few tries cover another connection taking the candidate in between.
 */
export async function portable(s: StoreContext, { userId, machineId, groupId, now }: ClaimRequest): Promise<JobRow | undefined> {
  for (let tries = 0; tries < 8; tries++) {
    const result = await s.transaction(async (trx) => {
      const [found] = (await trx.executeQuery(pickCandidate.bind<CandidateRow>(s, userId, groupId, now, machineId))).rows;
      if (!found) return null;

      const [claimed] = (await trx.executeQuery(take.bind<JobRow>(s, machineId, now, found.id))).rows;
      if (!claimed) return undefined;

      if (found.status === 'running' && found.machine_id !== null) {
        await addEvent(s, trx, found, 'lease_expired', found.machine_id, now);
      }
      await addEvent(s, trx, claimed, 'claimed', machineId, now);
      await oweWebhook(trx, claimed, 'running', now);
      return claimed;
    });
    if (result !== undefined) return result ?? undefined;
  }
  return undefined;
}

// ---- PostgreSQL ----

interface Candidate {
  id: string;
  prev_status: string;
  prev_machine: string | null;
  prev_attempt: number;
}

/**
 * The whole claim in one statement, one round trip instead of six: lock the candidate (orphans
 * first, SKIP LOCKED, so concurrent claimers never wait on one row), take it, and write its
 * events and webhook in the same statement.
 */
const claimInOneStatement = new QueryTemplate((s: StoreContext, userId: string, groupId: string, now: number, machineId: string) => {
  const locked = (kind: ClaimableKind) => candidate(s, kind, userId, groupId, now, machineId).select('id').forUpdate().skipLocked();
  const claimed = s.db
    .withTables<{ candidate: Candidate }>()
    .updateTable('jobs')
    .set(takeLease(s, machineId, now))
    .from('candidate')
    .whereRef('jobs.id', '=', 'candidate.id')
    .where(claimable(now))
    .returningAll('jobs')
    .returning(['candidate.prev_status', 'candidate.prev_machine', 'candidate.prev_attempt']);
  return sql`
    with candidate as (
      select id, status as prev_status, machine_id as prev_machine, attempt as prev_attempt from jobs
      where id = coalesce(${locked('orphan')}, ${locked('pending')})
    ), claimed as (${claimed}), events as (
      insert into job_events (job_id, at, type, machine_id, attempt)
      select job_id, ${now}, type, machine_id, attempt from (
        select 1 as ord, id as job_id, 'lease_expired' as type, prev_machine as machine_id, prev_attempt as attempt
        from claimed where prev_status = 'running' and prev_machine is not null
        union all
        select 2, id, 'claimed', machine_id, attempt from claimed
      ) e order by ord
    ), owed as (${oweWebhookFrom('claimed', 'running', now)})
    select * from claimed`;
});

export async function postgres(s: StoreContext, { userId, machineId, groupId, now }: ClaimRequest): Promise<JobRow | undefined> {
  const [row] = await s.executeHot(claimInOneStatement.bind<JobRow & Candidate>(s, userId, groupId, now, machineId));
  if (!row) return undefined;
  const { prev_status: _s, prev_machine: _m, prev_attempt: _a, ...job } = row;
  return job;
}
