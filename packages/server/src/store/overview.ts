// What the dashboard reads beyond single jobs: container groups at a glance, jobs by status over
// time, and handovers (a job taken over by a new attempt, and how much work that attempt redid).
// All of it is scoped to one user, like every job query.
import { sql } from 'kysely';
import { JOB_STATUSES, type JobStatus } from '@drover/protocol';
import { claimableAs, leaseLive } from './conditions.js';
import type { HandoverRow, JobRow } from './schema.js';
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

/**
 * Every group of the user (or only `groupId`), by name. The counts by status come first (SQLite:
 * from job_counts; PostgreSQL: counted); the running jobs are then read group by group through the
 * claim index, so nothing here reads the user's finished jobs one by one.
 */
export async function groupSummaries(s: StoreContext, userId: string, now: number, groupId?: string): Promise<GroupSummaryRow[]> {
  const counts = s.jobCounts
    ? await s.db
        .selectFrom('job_counts')
        .select(['container_group_id', 'status', 'n'])
        .where('user_id', '=', userId)
        .where('n', '>', 0)
        .$if(groupId !== undefined, (qb) => qb.where('container_group_id', '=', groupId!))
        .execute()
    : await s.db
        .selectFrom('jobs')
        .select(['container_group_id', 'status', (eb) => eb.fn.countAll().as('n')])
        .where('user_id', '=', userId)
        .$if(groupId !== undefined, (qb) => qb.where('container_group_id', '=', groupId!))
        .groupBy(['container_group_id', 'status'])
        .execute();
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

/**
 * How many of the user's jobs were in each status at the end of each of `buckets` intervals of
 * `stepMs` ending at `end`. Read from the jobs' own timestamps (created, started, and the one
 * final one): one grouped count per timestamp column, summed up here.
 */
export async function jobHistory(s: StoreContext, userId: string, o: { end: number; stepMs: number; buckets: number; groupId?: string }) {
  const stepMs = Math.max(1, Math.round(o.stepMs));
  const from = Math.round(o.end) - stepMs * o.buckets;
  // Bucket i holds times in (from + i·step, from + (i+1)·step]; -1: at or before `from`. The two
  // numbers are written into the SQL (integers computed here), so that both databases divide
  // integers by an integer: a bound parameter may arrive as a float.
  const lit = (n: number) => sql.lit(n);
  const bucketOf = (col: 'created' | 'started' | 'completed' | 'failed' | 'canceled') =>
    sql<number>`case when ${sql.ref(col)} <= ${lit(from)} then -1 else (${sql.ref(col)} - ${lit(from + 1)}) / ${lit(stepMs)} end`;
  const columns = ['created', 'started', 'completed', 'failed', 'canceled'] as const;
  const counted = await Promise.all(
    columns.map((col) =>
      s.db
        .selectFrom('jobs')
        .select([bucketOf(col).as('b'), (eb) => eb.fn.countAll().as('n')])
        .where('user_id', '=', userId)
        .$if(o.groupId !== undefined, (qb) => qb.where('container_group_id', '=', o.groupId!))
        .where(col, 'is not', null)
        .where(col, '<=', Math.round(o.end))
        .groupBy('b')
        .execute(),
    ),
  );
  // Ended jobs that never started (canceled while pending) leave pending, not running.
  const unstartedEnds = await s.db
    .selectFrom('jobs')
    .select([bucketOf('canceled').as('b'), (eb) => eb.fn.countAll().as('n')])
    .where('user_id', '=', userId)
    .$if(o.groupId !== undefined, (qb) => qb.where('container_group_id', '=', o.groupId!))
    .where('started', 'is', null)
    .where('canceled', 'is not', null)
    .where('canceled', '<=', Math.round(o.end))
    .groupBy('b')
    .execute();
  const cumulative = (rows: { b: number; n: unknown }[]) => {
    const per = new Array<number>(o.buckets).fill(0);
    let before = 0;
    for (const r of rows) {
      const b = Number(r.b);
      if (b < 0) before += Number(r.n);
      else if (b < o.buckets) per[b]! += Number(r.n);
    }
    let total = before;
    return per.map((n) => (total += n));
  };
  const [created, started, completed, failed, canceled] = counted.map(cumulative) as number[][];
  const canceledUnstarted = cumulative(unstartedEnds);
  const series = zeroSeries(o.buckets);
  for (let i = 0; i < o.buckets; i++) {
    const ended = completed![i]! + failed![i]! + canceled![i]!;
    const endedStarted = ended - canceledUnstarted[i]!;
    series.completed[i] = completed![i]!;
    series.failed[i] = failed![i]!;
    series.canceled[i] = canceled![i]!;
    series.running[i] = started![i]! - endedStarted;
    series.pending[i] = created![i]! - started![i]! - canceledUnstarted[i]!;
  }
  const times = Array.from({ length: o.buckets }, (_, i) => from + (i + 1) * stepMs);
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
