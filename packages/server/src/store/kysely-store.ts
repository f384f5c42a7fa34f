// The store, written once over Kysely for both databases. Each transition is one function in
// transitions/ (a guarded write whose WHERE clause carries its precondition; the row count says
// whether it happened); this class wires them to the Store interface and holds the reads, the
// accounts and the webhook outbox. What differs between SQLite and PostgreSQL (the group commit,
// row locking, prepared statements, how wake-ups cross processes) is left to the two subclasses.
import { EventEmitter } from 'node:events';
import { Migrator, sql, type CompiledQuery, type Kysely, type SelectQueryBuilder, type Transaction } from 'kysely';
import type { JobStatus, LogBatch, Progress } from '@drover/protocol';
import { claimable, claimableAs, leaseLive } from './conditions.js';
import * as logs from './logs.js';
import * as overview from './overview.js';
import { CodeMigrationProvider, type Dialect } from './migrations.js';
import { ScalingStore } from './scaling.js';
import type { Database, HandoverRow, JobRow, OutboxRow, UserRow } from './schema.js';
import * as cancel from './transitions/cancel.js';
import * as claim from './transitions/claim.js';
import * as complete from './transitions/complete.js';
import type { StoreContext, TransitionBody } from './transitions/context.js';
import * as fail from './transitions/fail.js';
import * as grace from './transitions/grace.js';
import * as heartbeat from './transitions/heartbeat.js';
import * as purge from './transitions/purge.js';
import * as release from './transitions/release.js';
import * as submit from './transitions/submit.js';
import type {
  ClaimRequest,
  ListJobsFilter,
  MachineRef,
  NewJob,
  Outcome,
  Store,
  TokenRecord,
  WorkSignal,
} from './types.js';

export abstract class KyselyStore implements Store {
  abstract readonly kind: Dialect;
  protected readonly work = new EventEmitter();
  /** What the transitions use of this store (see transitions/context.ts). */
  protected readonly ctx: StoreContext;

  private scalingStore: ScalingStore | undefined;
  /** Autoscaling's tables (store/scaling.ts). */
  get scaling(): ScalingStore {
    return (this.scalingStore ??= new ScalingStore(this.db, this.kind));
  }

  /**
   * SQLite: count jobs by status from the jobs themselves, as PostgreSQL does, instead of from
   * `job_counts` (bench:group-reads sets it to compare the two on one database).
   */
  countByScan = false;

  constructor(
    readonly db: Kysely<Database>,
    readonly leaseFactor: number,
  ) {
    this.work.setMaxListeners(0);
    const jobCounts = () => this.kind === 'sqlite' && !this.countByScan;
    this.ctx = {
      db,
      leaseMsPerIntervalSecond: Math.round(leaseFactor * 1000),
      transaction: (fn) => this.transition(fn),
      executeHot: (query, opts) => this.executeHot(query, opts),
      getJob: (userId, jobId) => this.getJob(userId, jobId),
      get jobCounts() {
        return jobCounts();
      },
    };
  }

  /** Make the signals reach every process, inside the transaction (delivered on commit) … */
  protected abstract publishInTransaction(trx: Transaction<Database>, signals: WorkSignal[]): Promise<void>;
  /** … or in this process after commit. */
  protected abstract publishAfterCommit(signals: WorkSignal[]): void;

  async migrate(): Promise<void> {
    await this.migrateWith(this.db);
  }

  protected async migrateWith(db: Kysely<Database>): Promise<void> {
    const migrator = new Migrator({ db, provider: new CodeMigrationProvider(this.kind) });
    const { error, results } = await migrator.migrateToLatest();
    const failed = results?.find((r) => r.status === 'Error');
    if (error || failed) {
      throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${String((error as Error)?.message ?? error)}`);
    }
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  onWork(listener: (signal: WorkSignal) => void): () => void {
    this.work.on('work', listener);
    return () => this.work.off('work', listener);
  }

  /** Run a transition in a transaction, then publish the work signals it collected. */
  protected async transition<T>(fn: TransitionBody<T>): Promise<T> {
    const signals: WorkSignal[] = [];
    const result = await this.db.transaction().execute(async (trx) => {
      const value = await fn(trx, signals);
      if (signals.length > 0) await this.publishInTransaction(trx, signals);
      return value;
    });
    if (signals.length > 0) this.publishAfterCommit(signals);
    return result;
  }

  /**
   * Run one of the hot statements (claim, heartbeat, completion). PostgreSQL runs them as named
   * prepared statements, heartbeats with asynchronous commit; here, plainly.
   */
  protected async executeHot<R>(query: CompiledQuery<R>, _opts: { asyncCommit?: boolean } = {}): Promise<R[]> {
    return (await this.db.executeQuery(query)).rows;
  }

  // ---- transitions (transitions/*.ts) ----

  createJobs(userId: string, jobs: NewJob[], now: number): Promise<JobRow[]> {
    return submit.portable(this.ctx, userId, jobs, now);
  }

  claimJob(req: ClaimRequest): Promise<JobRow | undefined> {
    return claim.portable(this.ctx, req);
  }

  heartbeat(ref: MachineRef & { progress?: Progress }): Promise<Outcome> {
    return heartbeat.portable(this.ctx, ref);
  }

  completeJob(ref: MachineRef & { progress?: Progress }): Promise<Outcome> {
    return complete.portable(this.ctx, ref);
  }

  failJob(ref: MachineRef & { reason?: string }): Promise<Outcome> {
    return fail.portable(this.ctx, ref);
  }

  releaseJob(ref: MachineRef): Promise<Outcome> {
    return release.portable(this.ctx, ref);
  }

  cancelJob(userId: string, jobId: string, now: number): Promise<Outcome> {
    return cancel.portable(this.ctx, userId, jobId, now);
  }

  purgeGroup(userId: string, groupId: string, now: number): Promise<number> {
    return purge.portable(this.ctx, userId, groupId, now);
  }

  graceLeasesAfterStart(now: number): Promise<number> {
    return grace.portable(this.ctx, now);
  }

  async clearJobs(): Promise<void> {
    await this.db.deleteFrom('jobs').execute();
  }

  // ---- reads ----

  async getJob(userId: string, jobId: string): Promise<JobRow | undefined> {
    return this.db
      .selectFrom('jobs')
      .selectAll()
      .where('id', '=', jobId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
  }

  async listJobs(f: ListJobsFilter): Promise<JobRow[]> {
    const dir = f.asc ? 'asc' : 'desc';
    return this.db
      .selectFrom('jobs')
      .selectAll()
      .where('user_id', '=', f.userId)
      .$if(f.status !== undefined, (qb) => qb.where('status', '=', f.status!))
      .$if(f.groupId !== undefined, (qb) => qb.where('container_group_id', '=', f.groupId!))
      .orderBy('created', dir)
      .orderBy('seq', dir)
      .limit(f.limit)
      .offset(f.offset)
      .execute();
  }

  async listEvents(userId: string, jobId: string) {
    const job = await this.getJob(userId, jobId);
    if (!job) return undefined;
    return this.db.selectFrom('job_events').selectAll().where('job_id', '=', jobId).orderBy('id').execute();
  }

  async hasClaimableWork(userId: string, groupId: string, now: number): Promise<boolean> {
    // One range of the claim index per kind, as the claim reads them: written as one OR, the
    // planner may take any (user, group) index and read the group's finished jobs to get there.
    for (const kind of ['pending', 'orphan'] as const) {
      const row = await this.db
        .selectFrom('jobs')
        .select('id')
        .where('user_id', '=', userId)
        .where('container_group_id', '=', groupId)
        .where(claimableAs(kind, now))
        .limit(1)
        .executeTakeFirst();
      if (row) return true;
    }
    return false;
  }

  async nextLeaseExpiry(userId: string, groupId: string, now: number): Promise<number | undefined> {
    const row = await this.db
      .selectFrom('jobs')
      .select((eb) => eb.fn.min('lease_expires_at').as('next'))
      .where('user_id', '=', userId)
      .where('container_group_id', '=', groupId)
      .where(leaseLive(now))
      .executeTakeFirst();
    return row?.next == null ? undefined : Number(row.next);
  }

  async countJobsByStatus(): Promise<Record<string, number>> {
    const rows = this.ctx.jobCounts
      ? await this.db.selectFrom('job_counts').select(['status', (eb) => eb.fn.sum<number>('n').as('n')]).where('n', '>', 0).groupBy('status').execute()
      : await this.db.selectFrom('jobs').select(['status', (eb) => eb.fn.countAll().as('n')]).groupBy('status').execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  async groupGauges(now: number) {
    type Gauge = { container_group_id: string; queue_depth: number; running: number; oldest_heartbeat: number | null };
    if (!this.ctx.jobCounts) {
      const rows = await this.db
        .selectFrom('jobs')
        .select([
          'container_group_id',
          (eb) => eb.fn.sum<number>(eb.case().when(claimable(now)).then(1).else(0).end()).as('queued'),
          (eb) => eb.fn.sum<number>(eb.case().when(leaseLive(now)).then(1).else(0).end()).as('running'),
          (eb) => eb.fn.min(eb.case().when(leaseLive(now)).then(eb.ref('heartbeat')).end()).as('oldest'),
        ])
        .where('status', 'in', ['pending', 'running'])
        .groupBy('container_group_id')
        .execute();
      return rows.map((r): Gauge => ({
        container_group_id: r.container_group_id,
        queue_depth: Number(r.queued ?? 0),
        running: Number(r.running ?? 0),
        oldest_heartbeat: r.oldest == null ? null : Number(r.oldest),
      }));
    }
    // SQLite: the pending jobs are counted in job_counts (a pending job has no lease: all of them
    // are claimable); the running ones are read by the claim index, group by group.
    const [pending, running] = await Promise.all([
      this.db
        .selectFrom('job_counts')
        .select(['container_group_id', (eb) => eb.fn.sum<number>('n').as('n')])
        .where('status', '=', 'pending')
        .where('n', '>', 0)
        .groupBy('container_group_id')
        .execute(),
      // CROSS JOIN: SQLite keeps the order as written, counts first, then the claim index.
      this.db
        .selectFrom('job_counts as c')
        .crossJoin('jobs as j')
        .whereRef('j.user_id', '=', 'c.user_id')
        .whereRef('j.container_group_id', '=', 'c.container_group_id')
        .whereRef('j.status', '=', 'c.status')
        .select([
          'c.container_group_id',
          (eb) => eb.fn.sum<number>(eb.case().when('j.lease_expires_at', '<', now).then(1).else(0).end()).as('orphans'),
          (eb) => eb.fn.sum<number>(eb.case().when('j.lease_expires_at', '>=', now).then(1).else(0).end()).as('live'),
          (eb) => eb.fn.min(eb.case().when('j.lease_expires_at', '>=', now).then(eb.ref('j.heartbeat')).end()).as('oldest'),
        ])
        .where('c.status', '=', 'running')
        .where('c.n', '>', 0)
        .groupBy('c.container_group_id')
        .execute(),
    ]);
    const gauges = new Map<string, Gauge>();
    const gauge = (id: string) => {
      let g = gauges.get(id);
      if (!g) gauges.set(id, (g = { container_group_id: id, queue_depth: 0, running: 0, oldest_heartbeat: null }));
      return g;
    };
    for (const r of pending) gauge(r.container_group_id).queue_depth += Number(r.n);
    for (const r of running) {
      const g = gauge(r.container_group_id);
      g.queue_depth += Number(r.orphans ?? 0);
      g.running = Number(r.live ?? 0);
      g.oldest_heartbeat = r.oldest == null ? null : Number(r.oldest);
    }
    return [...gauges.values()];
  }

  async webhookBacklog(): Promise<number> {
    const row = await this.db.selectFrom('webhook_outbox').select((eb) => eb.fn.countAll().as('n')).where('state', '=', 'pending').executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  // ---- job logs (logs.ts) ----

  appendLogs(ref: logs.AppendLogsRef, batch: Pick<LogBatch, 'attempt' | 'lines' | 'dropped'>): Promise<logs.AppendLogsOutcome> {
    return logs.appendLogs(this.ctx, ref, batch);
  }

  readLogs(userId: string, jobId: string, q: logs.ReadLogsQuery): Promise<logs.LogRead | undefined> {
    return logs.readLogs(this.ctx, userId, jobId, q);
  }

  // ---- the dashboard's reads (overview.ts) ----

  groupSummaries(userId: string, now: number, groupId?: string): Promise<overview.GroupSummaryRow[]> {
    return overview.groupSummaries(this.ctx, userId, now, groupId);
  }

  groupMachines(userId: string, groupId: string, now: number, limit: number) {
    return overview.groupMachines(this.ctx, userId, groupId, now, limit);
  }

  bannedMachines(userId: string, groupId: string, limit: number) {
    return overview.bannedMachines(this.ctx, userId, groupId, limit);
  }

  jobHistory(userId: string, o: { end: number; stepMs: number; buckets: number; groupId?: string }): Promise<{ times: number[]; series: Record<JobStatus, number[]> }> {
    return overview.jobHistory(this.ctx, userId, o);
  }

  recordHandover(job: JobRow, now: number): Promise<HandoverRow | undefined> {
    return overview.recordHandover(this.ctx, job, now);
  }

  recordResume(jobId: string, attempt: number, fraction: number): Promise<number | undefined> {
    return overview.recordResume(this.ctx, jobId, attempt, fraction);
  }

  listHandovers(userId: string, o: { limit: number; groupId?: string; jobId?: string }): Promise<HandoverRow[]> {
    return overview.listHandovers(this.ctx, userId, o);
  }

  // ---- accounts ----

  async createUser(user: UserRow): Promise<void> {
    await this.db.insertInto('users').values(user).execute();
  }

  async getUser(id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async getUserByName(username: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
  }

  async findAdmin(): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('admin', '=', 1).orderBy('created').executeTakeFirst();
  }

  async createToken(token: { id: string; user_id: string; secret_hash: string; created: number }): Promise<void> {
    await this.db.insertInto('tokens').values(token).execute();
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const row = await this.db
      .selectFrom('tokens')
      .innerJoin('users', 'users.id', 'tokens.user_id')
      .select([
        'tokens.secret_hash',
        'users.id',
        'users.username',
        'users.created',
        'users.admin',
        'users.webhook_secret',
      ])
      .where('tokens.id', '=', id)
      .executeTakeFirst();
    if (!row) return undefined;
    const { secret_hash, ...user } = row;
    return { secret_hash, user };
  }

  async listTokens(userId: string): Promise<{ id: string; created: number }[]> {
    const rows = await this.db.selectFrom('tokens').select(['id', 'created']).where('user_id', '=', userId).orderBy('created').orderBy('id').execute();
    return rows.map((r) => ({ id: r.id, created: Number(r.created) }));
  }

  async deleteToken(id: string): Promise<boolean> {
    const r = await this.db.deleteFrom('tokens').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async deleteUser(id: string): Promise<{ kind: 'deleted' } | { kind: 'not_found' } | { kind: 'admin' } | { kind: 'active'; jobs: number }> {
    return this.db.transaction().execute(async (trx) => {
      const user = await trx.selectFrom('users').select(['admin']).where('id', '=', id).executeTakeFirst();
      if (!user) return { kind: 'not_found' as const };
      if (user.admin === 1) return { kind: 'admin' as const };
      const { n } = await trx
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('user_id', '=', id)
        .where('status', 'in', ['pending', 'running'])
        .executeTakeFirstOrThrow();
      if (Number(n) > 0) return { kind: 'active' as const, jobs: Number(n) };
      // The tables without a foreign key to the user first; tokens, jobs (their events and bans),
      // scaling rules (their decisions) and group polls follow the user by ON DELETE CASCADE.
      await trx.deleteFrom('webhook_outbox').where('user_id', '=', id).execute();
      await trx.deleteFrom('scaling_leases').where('user_id', '=', id).execute();
      await trx.deleteFrom('users').where('id', '=', id).execute();
      return { kind: 'deleted' as const };
    });
  }

  async recordPoll(userId: string, groupId: string, now: number): Promise<void> {
    await this.db
      .insertInto('group_polls')
      .values({ user_id: userId, container_group_id: groupId, last_poll: now })
      .onConflict((oc) => oc.columns(['user_id', 'container_group_id']).doUpdateSet({ last_poll: (eb) => eb.fn('max', [eb.ref('group_polls.last_poll'), eb.val(now)]) }))
      .execute();
  }

  async lastPoll(userId: string, groupId: string): Promise<number | undefined> {
    const row = await this.db.selectFrom('group_polls').select('last_poll').where('user_id', '=', userId).where('container_group_id', '=', groupId).executeTakeFirst();
    return row ? Number(row.last_poll) : undefined;
  }

  // ---- the webhook outbox, sender's side (transitions/owe-webhook.ts writes it) ----

  async takeDueWebhooks(now: number, limit: number, lockUntil: number): Promise<OutboxRow[]> {
    return this.db.transaction().execute(async (trx) => {
      const due = await this.lockOutbox(
        trx
          .selectFrom('webhook_outbox')
          .select('id')
          .where('state', '=', 'pending')
          .where('next_attempt_at', '<=', now)
          .where('locked_until', '<=', now)
          .orderBy('next_attempt_at')
          .limit(limit),
      ).execute();
      if (due.length === 0) return [];
      return trx
        .updateTable('webhook_outbox')
        .set({ locked_until: lockUntil })
        .where(
          'id',
          'in',
          due.map((d) => d.id),
        )
        .returningAll()
        .execute();
    });
  }

  protected abstract lockOutbox<O>(
    qb: SelectQueryBuilder<Database, 'webhook_outbox', O>,
  ): SelectQueryBuilder<Database, 'webhook_outbox', O>;

  async markWebhookDelivered(id: number, now: number): Promise<void> {
    await this.db
      .updateTable('webhook_outbox')
      .set((eb) => ({ state: 'delivered', delivered_at: now, attempts: eb('attempts', '+', 1), locked_until: 0 }))
      .where('id', '=', id)
      .execute();
  }

  async markWebhookFailed(id: number, attempts: number, error: string, nextAttemptAt: number | null): Promise<void> {
    await this.db
      .updateTable('webhook_outbox')
      .set({
        attempts,
        last_error: error.slice(0, 1000),
        state: nextAttemptAt === null ? 'dead' : 'pending',
        next_attempt_at: nextAttemptAt ?? 0,
        locked_until: 0,
      })
      .where('id', '=', id)
      .execute();
  }

  async nextWebhookDue(): Promise<number | undefined> {
    const row = await this.db
      .selectFrom('webhook_outbox')
      .select((eb) => eb.fn.min('next_attempt_at').as('next'))
      .where('state', '=', 'pending')
      .executeTakeFirst();
    return row?.next == null ? undefined : Number(row.next);
  }

  async getWebhookDeliveries(jobId: string): Promise<OutboxRow[]> {
    return this.db.selectFrom('webhook_outbox').selectAll().where('job_id', '=', jobId).orderBy('id').execute();
  }
}
