// What the dashboard reads beyond single jobs: container groups at a glance, jobs by status over
// time, and handovers (a job taken over by a new attempt, and how much work that attempt redid).
// All of it is scoped to one user, like every job query.
import { sql, type Expression, type SelectQueryBuilder } from 'kysely';
import { JOB_STATUSES, type JobStatus } from '@drover/protocol';
import { claimableAs, leaseLive } from './conditions.js';
import type { Database, HandoverRow, JobRow } from './schema.js';
import type { StoreContext } from './transitions/context.js';

export interface GroupSummaryRow {
  container_group_id: string;
  jobs: Record<JobStatus, number>;
  queue_depth: number;
  running_machines: number;
  banned_machines: number;
  /** epoch ms of the stalest heartbeat among running jobs held by a machine */
  oldest_heartbeat: number | null;
}

const zeroCounts = (): Record<JobStatus, number> => Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;

/** The user's jobs by group and status now (SQLite: from job_counts; PostgreSQL: counted), of one group or all. */
function countsByGroup(s: StoreContext, userId: string, groupId?: string): Promise<{ container_group_id: string; status: string; n: unknown }[]> {
  return s.jobCounts
    ? s.db
        .selectFrom('job_counts')
        .select(['container_group_id', 'status', 'n'])
        .where('user_id', '=', userId)
        .where('n', '>', 0)
        .$if(groupId !== undefined, (qb) => qb.where('container_group_id', '=', groupId!))
        .execute()
    : s.db
        .selectFrom('jobs')
        .select(['container_group_id', 'status', (eb) => eb.fn.countAll().as('n')])
        .where('user_id', '=', userId)
        .$if(groupId !== undefined, (qb) => qb.where('container_group_id', '=', groupId!))
        .groupBy(['container_group_id', 'status'])
        .execute();
}

/**
 * Every group of the user (or only `groupId`), by name. The counts by status come first (SQLite:
 * from job_counts; PostgreSQL: counted); the running jobs are then read group by group through the
 * claim index, so nothing here reads the user's finished jobs one by one.
 */
export async function groupSummaries(s: StoreContext, userId: string, now: number, groupId?: string): Promise<GroupSummaryRow[]> {
  const counts = await countsByGroup(s, userId, groupId);
  const groups = new Map<string, GroupSummaryRow>();
  const group = (id: string) => {
    let g = groups.get(id);
    if (!g) {
      g = { container_group_id: id, jobs: zeroCounts(), queue_depth: 0, running_machines: 0, banned_machines: 0, oldest_heartbeat: null };
      groups.set(id, g);
    }
    return g;
  };
  for (const r of counts) group(r.container_group_id).jobs[r.status as JobStatus] = Number(r.n);
  const withRunning = [...groups.values()].filter((g) => g.jobs.running > 0).map((g) => g.container_group_id);
  const [running, banned] = await Promise.all([
    withRunning.length === 0
      ? []
      : s.db
          .selectFrom('jobs')
          .select([
            'container_group_id',
            (eb) => eb.fn.sum<number>(eb.case().when(claimableAs('orphan', now)).then(1).else(0).end()).as('orphans'),
            (eb) => eb.fn.count(eb.case().when(leaseLive(now)).then(eb.ref('machine_id')).end()).distinct().as('live'),
            (eb) => eb.fn.min(eb.case().when('machine_id', 'is not', null).then(eb.ref('heartbeat')).end()).as('oldest'),
          ])
          .where('user_id', '=', userId)
          .where('container_group_id', 'in', withRunning)
          .where('status', '=', 'running')
          .groupBy('container_group_id')
          .execute(),
    // From the bans to their jobs (SQLite takes a CROSS JOIN's order as written): the other way
    // round, SQLite reads every job of the user to look for its bans.
    s.db
      .selectFrom('job_bans')
      .crossJoin('jobs')
      .whereRef('jobs.id', '=', 'job_bans.job_id')
      .select(['jobs.container_group_id', (eb) => eb.fn.count('job_bans.machine_id').distinct().as('n')])
      .where('jobs.user_id', '=', userId)
      .$if(groupId !== undefined, (qb) => qb.where('jobs.container_group_id', '=', groupId!))
      .groupBy('jobs.container_group_id')
      .execute(),
  ]);
  // A pending job has no lease (claimableAs('pending')): every one of them is in the queue.
  for (const g of groups.values()) g.queue_depth = g.jobs.pending;
  for (const r of running) {
    const g = group(r.container_group_id);
    g.queue_depth += Number(r.orphans ?? 0);
    g.running_machines = Number(r.live ?? 0);
    g.oldest_heartbeat = r.oldest == null ? null : Number(r.oldest);
  }
  for (const r of banned) group(r.container_group_id).banned_machines = Number(r.n);
  return [...groups.values()].sort((a, b) => (a.container_group_id < b.container_group_id ? -1 : 1));
}

/** The machines holding the group's running jobs, freshest heartbeat first. */
export async function groupMachines(s: StoreContext, userId: string, groupId: string, now: number, limit: number) {
  const rows = await s.db
    .selectFrom('jobs')
    .select(['machine_id', 'id', 'attempt', 'heartbeat', 'lease_expires_at'])
    .where('user_id', '=', userId)
    .where('container_group_id', '=', groupId)
    .where('status', '=', 'running')
    .where('machine_id', 'is not', null)
    .orderBy('heartbeat', 'desc')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ machine_id: r.machine_id!, job_id: r.id, attempt: r.attempt, heartbeat: r.heartbeat, lease_live: r.lease_expires_at >= now }));
}

/** Machines banned from the group's jobs (they failed them), most jobs first. */
export async function bannedMachines(s: StoreContext, userId: string, groupId: string, limit: number) {
  const rows = await s.db
    .selectFrom('job_bans')
    .crossJoin('jobs') // from the bans to their jobs, as in groupSummaries
    .whereRef('jobs.id', '=', 'job_bans.job_id')
    .select(['job_bans.machine_id', (eb) => eb.fn.countAll().as('n'), (eb) => eb.fn.max('job_bans.created').as('last')])
    .where('jobs.user_id', '=', userId)
    .where('jobs.container_group_id', '=', groupId)
    .groupBy('job_bans.machine_id')
    .orderBy('n', 'desc')
    .orderBy('job_bans.machine_id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ machine_id: r.machine_id, jobs: Number(r.n), last: Number(r.last) }));
}

/** The user's jobs by status now, of one group or all. */
async function statusCounts(s: StoreContext, userId: string, groupId?: string): Promise<{ groups: string[]; counts: Record<JobStatus, number> }> {
  const rows = await countsByGroup(s, userId, groupId);
  const counts = zeroCounts();
  for (const r of rows) counts[r.status as JobStatus] += Number(r.n);
  return { groups: [...new Set(rows.map((r) => r.container_group_id))], counts };
}

/**
 * How many of the user's jobs were in each status at the end of each of `buckets` intervals of
 * `stepMs` ending at `end`. Worked back from the jobs by status now, less what happened since each
 * bucket's end, read from the jobs' own timestamps (created, started, and the one final one) after
 * the window's start only: through the list index (created), the claim index (the running jobs'
 * starts) and the ended index (ends, and the starts of the jobs that ended), group by group. So a
 * chart costs the jobs of its window, not every job ever run.
 */
export async function jobHistory(s: StoreContext, userId: string, o: { end: number; stepMs: number; buckets: number; groupId?: string }) {
  const stepMs = Math.max(1, Math.round(o.stepMs));
  const from = Math.round(o.end) - stepMs * o.buckets;
  const { groups, counts: now } = await statusCounts(s, userId, o.groupId);
  const times = Array.from({ length: o.buckets }, (_, i) => from + (i + 1) * stepMs);
  const series = zeroSeries(o.buckets);
  if (groups.length === 0) return { times, series };
  // Bucket i holds times in (from + i·step, from + (i+1)·step]; past `end`, i >= buckets. The two
  // numbers are written into the SQL (integers computed here), so that both databases divide
  // integers by an integer: a bound parameter may arrive as a float.
  const lit = (n: number) => sql.lit(n);
  const bucketOf = (col: Expression<number | null>) => sql<number>`(${col} - ${lit(from + 1)}) / ${lit(stepMs)}`;
  const ended = sql<number>`coalesce(completed, failed, canceled)`;
  const inGroups = (qb: SelectQueryBuilder<Database, 'jobs', object>) =>
    qb.where('user_id', '=', userId).where('container_group_id', 'in', groups);
  const [created, runningStarts, ends] = await Promise.all([
    // jobs_list_idx (user, created): the group's condition is written so that SQLite does not take
    // a (user, group) index instead and read the whole group.
    s.db
      .selectFrom('jobs')
      .select([bucketOf(sql.ref('created')).as('b'), (eb) => eb.fn.countAll().as('n')])
      .where('user_id', '=', userId)
      .$if(o.groupId !== undefined, (qb) => qb.where(sql`container_group_id || ''`, '=', o.groupId!))
      .where('created', '>', from)
      .groupBy('b')
      .execute(),
    inGroups(s.db.selectFrom('jobs'))
      .select([bucketOf(sql.ref('started')).as('b'), (eb) => eb.fn.countAll().as('n')])
      .where('status', '=', 'running')
      .where('started', '>', from)
      .groupBy('b')
      .execute(),
    // One pass over the ended index: the ends by bucket and kind, and the starts of those jobs
    // (-1: started before the window, or never).
    inGroups(s.db.selectFrom('jobs'))
      .select([
        bucketOf(ended).as('b'),
        sql<number>`case when started > ${lit(from)} then ${bucketOf(sql.ref('started'))} else -1 end`.as('sb'),
        (eb) => eb.fn.count('completed').as('completed'),
        (eb) => eb.fn.count('failed').as('failed'),
        (eb) => eb.fn.count('canceled').as('canceled'),
        (eb) => eb.fn.sum<number>(eb.case().when('started', 'is', null).then(1).else(0).end()).as('unstarted'),
      ])
      .where(ended, '>', from)
      .groupBy(['b', 'sb'])
      .execute(),
  ]);
  // after[i]: how many of each event happened after the end of bucket i (in buckets > i).
  const after = (rows: { b: unknown }[], n: (r: never) => unknown) => {
    const per = new Array<number>(o.buckets + 1).fill(0);
    for (const r of rows) per[Math.min(o.buckets, Math.max(0, Number(r.b)))]! += Number(n(r as never) ?? 0);
    const out = new Array<number>(o.buckets).fill(0);
    for (let i = o.buckets - 1, total = per[o.buckets]!; i >= 0; i--) {
      out[i] = total;
      total += per[i]!;
    }
    return out;
  };
  type Ends = (typeof ends)[number];
  const count = (r: { n: unknown }) => r.n;
  const endedStarts = ends.filter((r) => Number(r.sb) >= 0).map((r) => ({ b: r.sb, n: Number(r.completed) + Number(r.failed) + Number(r.canceled) }));
  const createdAfter = after(created, count);
  const startedAfter = after([...runningStarts, ...endedStarts], count);
  const completedAfter = after(ends, (r: Ends) => r.completed);
  const failedAfter = after(ends, (r: Ends) => r.failed);
  const canceledAfter = after(ends, (r: Ends) => r.canceled);
  const unstartedAfter = after(ends, (r: Ends) => r.unstarted);
  for (let i = 0; i < o.buckets; i++) {
    const endedAfter = completedAfter[i]! + failedAfter[i]! + canceledAfter[i]!;
    series.completed[i] = now.completed - completedAfter[i]!;
    series.failed[i] = now.failed - failedAfter[i]!;
    series.canceled[i] = now.canceled - canceledAfter[i]!;
    // A job that started after the bucket's end was pending then; one that ended after it having
    // started was running then; one canceled unstarted after it was pending then.
    series.running[i] = now.running - startedAfter[i]! + (endedAfter - unstartedAfter[i]!);
    series.pending[i] = now.pending - createdAfter[i]! + startedAfter[i]! + unstartedAfter[i]!;
  }
  return { times, series };
}

function zeroSeries(n: number): Record<JobStatus, number[]> {
  return Object.fromEntries(JOB_STATUSES.map((s) => [s, new Array<number>(n).fill(0)])) as Record<JobStatus, number[]>;
}

/**
 * A claim took over a job another attempt had (attempt > 1): record why (the previous attempt's
 * last event: its lease lapsed, it was released, or it failed) and the progress it had reached.
 * Not part of the claim's transaction: a lost row costs a point on a chart, never a job.
 */
export async function recordHandover(s: StoreContext, job: JobRow, now: number): Promise<HandoverRow | undefined> {
  if (job.attempt <= 1 || job.machine_id === null) return undefined;
  const previous = await s.db
    .selectFrom('job_events')
    .select(['type', 'machine_id'])
    .where('job_id', '=', job.id)
    .where('attempt', '=', job.attempt - 1)
    .where('type', 'in', ['lease_expired', 'released', 'failed_attempt'])
    .orderBy('id', 'desc')
    .executeTakeFirst();
  if (!previous) return undefined;
  const fraction = job.progress === null ? null : (JSON.parse(job.progress) as { fraction: number }).fraction;
  const row: HandoverRow = {
    job_id: job.id,
    attempt: job.attempt,
    user_id: job.user_id,
    container_group_id: job.container_group_id,
    at: now,
    cause: previous.type,
    from_machine: previous.machine_id,
    to_machine: job.machine_id,
    progress_before: fraction,
    progress_resumed: null,
  };
  await s.db.insertInto('job_handovers').values(row).onConflict((oc) => oc.columns(['job_id', 'attempt']).doNothing()).execute();
  return row;
}

/**
 * The new attempt's first progress report: where it resumed. Returns the handover's redone
 * fraction when this call recorded it (the first report), else undefined.
 */
export async function recordResume(s: StoreContext, jobId: string, attempt: number, fraction: number): Promise<number | undefined> {
  const updated = await s.db
    .updateTable('job_handovers')
    .set({ progress_resumed: fraction })
    .where('job_id', '=', jobId)
    .where('attempt', '=', attempt)
    .where('progress_resumed', 'is', null)
    .returning(['progress_before'])
    .executeTakeFirst();
  if (!updated) return undefined;
  return updated.progress_before === null ? undefined : Math.max(0, updated.progress_before - fraction);
}

export async function listHandovers(s: StoreContext, userId: string, o: { limit: number; groupId?: string; jobId?: string }): Promise<HandoverRow[]> {
  return s.db
    .selectFrom('job_handovers')
    .selectAll()
    .where('user_id', '=', userId)
    .$if(o.groupId !== undefined, (qb) => qb.where('container_group_id', '=', o.groupId!))
    .$if(o.jobId !== undefined, (qb) => qb.where('job_id', '=', o.jobId!))
    .orderBy('at', 'desc')
    .orderBy('attempt', 'desc')
    .limit(o.limit)
    .execute();
}
