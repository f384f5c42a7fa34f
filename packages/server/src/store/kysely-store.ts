// The store, written once over Kysely for both databases. Each transition is one guarded
// UPDATE whose WHERE clause carries its precondition; the row count says whether it happened.
// What differs between SQLite and PostgreSQL (row locking for claims, how wake-ups cross
// processes) is left to the two subclasses.
import { EventEmitter } from 'node:events';
import { Migrator, sql, type CompiledQuery, type Kysely, type SelectQueryBuilder, type Transaction, type UpdateQueryBuilder } from 'kysely';
import type { Progress } from '@drover/protocol';
import { CodeMigrationProvider, type Dialect } from './migrations.js';
import { QueryTemplate } from './query-template.js';
import type { Database, JobRow, OutboxRow, UserRow } from './schema.js';
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

export const FINISHED_STATUSES = ['completed', 'failed', 'canceled'] as const;
const INSERT_CHUNK = 200;

/** The precondition of every holder-only transition: the job is running and this machine holds it. */
function heldBy(ref: { userId: string; jobId: string; machineId: string }) {
  return <O>(qb: UpdateQueryBuilder<Database, 'jobs', 'jobs', O>) =>
    qb
      .where('id', '=', ref.jobId)
      .where('user_id', '=', ref.userId)
      .where('status', '=', 'running')
      .where('machine_id', '=', ref.machineId);
}

interface CandidateRow {
  id: string;
  status: string;
  machine_id: string | null;
  attempt: number;
}

/** The webhook events a transition can owe, with the body Kelpie sends. */
type WebhookEvent = 'running' | 'completed' | 'failed' | 'canceled';

export abstract class KyselyStore implements Store {
  abstract readonly kind: Dialect;
  protected readonly work = new EventEmitter();
  /** ms of lease per second of heartbeat_interval (lease timeout = factor × heartbeat_interval) */
  protected readonly leaseMsPerIntervalSecond: number;

  constructor(
    readonly db: Kysely<Database>,
    readonly leaseFactor: number,
  ) {
    this.leaseMsPerIntervalSecond = Math.round(leaseFactor * 1000);
    this.work.setMaxListeners(0);
  }

  /** The hot statements, compiled once (see QueryTemplate). */
  protected readonly hot = {
    // Orphaned running jobs first (resume work in flight), then pending ones: one statement.
    candidate: new QueryTemplate((userId: string, groupId: string, now: number, machineId: string) =>
      this.db
        .selectFrom(this.candidates('running', userId, groupId, now, machineId).as('orphan'))
        .selectAll()
        .unionAll(this.db.selectFrom(this.candidates('pending', userId, groupId, now, machineId).as('fresh')).selectAll())
        .orderBy('rank')
        .limit(1),
    ),
    claim: new QueryTemplate((machineId: string, now: number, id: string) =>
      this.db
        .updateTable('jobs')
        .set((eb) => ({
          status: 'running',
          machine_id: machineId,
          heartbeat: now,
          lease_expires_at: this.leaseExpiry(now),
          started: eb.fn.coalesce('started', sql<number>`cast(${now} as bigint)`),
          attempt: eb('attempt', '+', 1),
        }))
        .where('id', '=', id)
        // still claimable: another claimer may have taken it since it was read
        .where((eb) =>
          eb.or([eb('status', '=', 'pending'), eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<', now)])]),
        )
        .returningAll(),
    ),
    event: new QueryTemplate((jobId: string, at: number, type: string, machineId: string | null, attempt: number) =>
      this.db.insertInto('job_events').values({ job_id: jobId, at, type, machine_id: machineId, attempt }),
    ),
    heartbeat: new QueryTemplate((now: number, userId: string, jobId: string, machineId: string) =>
      this.db
        .updateTable('jobs')
        .set((eb) => ({ heartbeat: now, lease_expires_at: this.leaseExpiry(now), num_heartbeats: eb('num_heartbeats', '+', 1) }))
        .$call(heldBy({ userId, jobId, machineId }))
        .returningAll(),
    ),
    heartbeatWithProgress: new QueryTemplate(
      (now: number, progress: string, userId: string, jobId: string, machineId: string) =>
        this.db
          .updateTable('jobs')
          .set((eb) => ({
            heartbeat: now,
            lease_expires_at: this.leaseExpiry(now),
            num_heartbeats: eb('num_heartbeats', '+', 1),
            progress,
          }))
          .$call(heldBy({ userId, jobId, machineId }))
          .returningAll(),
    ),
    complete: new QueryTemplate((now: number, userId: string, jobId: string, machineId: string) =>
      this.db
        .updateTable('jobs')
        .set({ status: 'completed', completed: now, lease_expires_at: 0 })
        .$call(heldBy({ userId, jobId, machineId }))
        .returningAll(),
    ),
  };

  /** The oldest claimable job of one kind: running with a lapsed lease, or pending; never a banned one. */
  private candidates(status: 'running' | 'pending', userId: string, groupId: string, now: number, machineId: string) {
    return this.db
      .selectFrom('jobs')
      .select(['id', 'status', 'machine_id', 'attempt', sql<number>`${sql.lit(status === 'running' ? 0 : 1)}`.as('rank')])
      .where('user_id', '=', userId)
      .where('container_group_id', '=', groupId)
      .where('status', '=', status)
      // running: lapsed (no heartbeat for longer than the lease timeout); pending: never leased
      .$if(status === 'running', (qb) => qb.where('lease_expires_at', '<', now))
      .$if(status === 'pending', (qb) => qb.where('lease_expires_at', '=', 0))
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('job_bans')
              .select('job_bans.job_id')
              .whereRef('job_bans.job_id', '=', 'jobs.id')
              .where('job_bans.machine_id', '=', machineId),
          ),
        ),
      )
      .orderBy('created')
      .orderBy('seq')
      .limit(1);
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
  protected async transition<T>(fn: (trx: Transaction<Database>, signals: WorkSignal[]) => Promise<T>): Promise<T> {
    const signals: WorkSignal[] = [];
    const result = await this.db.transaction().execute(async (trx) => {
      const value = await fn(trx, signals);
      if (signals.length > 0) await this.publishInTransaction(trx, signals);
      return value;
    });
    if (signals.length > 0) this.publishAfterCommit(signals);
    return result;
  }

  private leaseExpiry(now: number) {
    return sql<number>`cast(${now} as bigint) + heartbeat_interval * ${this.leaseMsPerIntervalSecond}`;
  }

  private async addEvent(
    trx: Transaction<Database>,
    job: Pick<JobRow, 'id' | 'attempt'>,
    type: string,
    machineId: string | null,
    at: number,
    reason?: string,
  ): Promise<void> {
    if (reason === undefined) await trx.executeQuery(this.hot.event.bind(job.id, at, type, machineId, job.attempt));
    else await trx.insertInto('job_events').values({ job_id: job.id, at, type, machine_id: machineId, attempt: job.attempt, reason }).execute();
  }

  private async oweWebhook(trx: Transaction<Database>, job: JobRow, event: WebhookEvent, now: number): Promise<void> {
    if (!job.webhook) return;
    const body = JSON.stringify({
      status: event,
      job_id: job.id,
      machine_id: job.machine_id,
      container_group_id: job.container_group_id,
    });
    await trx
      .insertInto('webhook_outbox')
      .values({
        user_id: job.user_id,
        job_id: job.id,
        url: job.webhook,
        event,
        body,
        state: 'pending',
        attempts: 0,
        next_attempt_at: now,
        locked_until: 0,
        created: now,
      })
      .execute();
  }

  async createJobs(userId: string, jobs: NewJob[], now: number): Promise<JobRow[]> {
    return this.transition(async (trx, signals) => {
      const rows: JobRow[] = [];
      for (let i = 0; i < jobs.length; i += INSERT_CHUNK) {
        const chunk = jobs.slice(i, i + INSERT_CHUNK).map(({ id, definition: d }) => {
          const { container_group_id, max_failures, heartbeat_interval, webhook, ...spec } = d;
          return {
            id,
            user_id: userId,
            container_group_id,
            status: 'pending',
            created: now,
            started: null,
            completed: null,
            canceled: null,
            failed: null,
            heartbeat: null,
            lease_expires_at: 0,
            num_failures: 0,
            num_heartbeats: 0,
            machine_id: null,
            attempt: 0,
            max_failures,
            heartbeat_interval,
            webhook: webhook ?? null,
            progress: null,
            spec: JSON.stringify(spec),
          };
        });
        rows.push(...(await trx.insertInto('jobs').values(chunk).returningAll().execute()));
        await trx
          .insertInto('job_events')
          .values(chunk.map((j) => ({ job_id: j.id, at: now, type: 'created', machine_id: null, attempt: 0 })))
          .execute();
      }
      const perGroup = new Map<string, number>();
      for (const r of rows) perGroup.set(r.container_group_id, (perGroup.get(r.container_group_id) ?? 0) + 1);
      for (const [groupId, count] of perGroup) signals.push({ userId, groupId, count });
      return rows;
    });
  }

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

  async claimJob({ userId, machineId, groupId, now }: ClaimRequest): Promise<JobRow | undefined> {
    // (PostgreSQL replaces this with one statement that locks its candidate, SKIP LOCKED.)
    // The guarded UPDATE below makes a lost race harmless; a few retries cover another
    // connection taking the candidate between our SELECT and UPDATE.
    for (let tries = 0; tries < 8; tries++) {
      const result = await this.transition(async (trx, _signals) => {
        // Orphaned running jobs first: resume work in flight before starting new work.
        const [candidate] = (await trx.executeQuery(this.hot.candidate.bind<CandidateRow>(userId, groupId, now, machineId))).rows;
        if (!candidate) return null;

        const [claimed] = (await trx.executeQuery(this.hot.claim.bind<JobRow>(machineId, now, candidate.id))).rows;
        if (!claimed) return undefined;

        if (candidate.status === 'running' && candidate.machine_id !== null) {
          await this.addEvent(trx, candidate, 'lease_expired', candidate.machine_id, now);
        }
        await this.addEvent(trx, claimed, 'claimed', machineId, now);
        await this.oweWebhook(trx, claimed, 'running', now);
        return claimed;
      });
      if (result !== undefined) return result ?? undefined;
    }
    return undefined;
  }

  /** Classify a transition that matched no row. */
  protected async explain(userId: string, jobId: string, isRepeat: (job: JobRow) => Promise<boolean> | boolean): Promise<Outcome> {
    const job = await this.getJob(userId, jobId);
    if (!job) return { kind: 'not_found' };
    if (await isRepeat(job)) return { kind: 'repeat', job };
    if ((FINISHED_STATUSES as readonly string[]).includes(job.status)) return { kind: 'finished', job };
    return { kind: 'not_holder', job };
  }

  /**
   * Run one of the hot statements (claim, heartbeat, completion). PostgreSQL runs them as named
   * prepared statements, heartbeats with asynchronous commit; here, plainly.
   */
  protected async executeHot<R>(query: CompiledQuery<R>, _opts: { asyncCommit?: boolean } = {}): Promise<R[]> {
    return (await this.db.executeQuery(query)).rows;
  }

  async heartbeat({ userId, jobId, machineId, now, progress }: MachineRef & { progress?: Progress }): Promise<Outcome> {
    const [job] = await this.executeHot(
      progress
        ? this.hot.heartbeatWithProgress.bind<JobRow>(now, JSON.stringify(progress), userId, jobId, machineId)
        : this.hot.heartbeat.bind<JobRow>(now, userId, jobId, machineId),
      // A heartbeat lost in a database crash only makes its lease look a few ms older.
      { asyncCommit: true },
    );
    if (job) return { kind: 'applied', job };
    return this.explain(userId, jobId, () => false);
  }

  async completeJob({ userId, jobId, machineId, now }: MachineRef): Promise<Outcome> {
    const job = await this.transition(async (trx) => {
      const [done] = (await trx.executeQuery(this.hot.complete.bind<JobRow>(now, userId, jobId, machineId))).rows;
      if (done) {
        await this.addEvent(trx, done, 'completed', machineId, now);
        await this.oweWebhook(trx, done, 'completed', now);
      }
      return done;
    });
    if (job) return { kind: 'applied', job };
    return this.explain(userId, jobId, (j) => j.status === 'completed' && j.machine_id === machineId);
  }

  async failJob({ userId, jobId, machineId, now, reason }: MachineRef & { reason?: string }): Promise<Outcome> {
    const job = await this.transition(async (trx, signals) => {
      const final = sql<boolean>`num_failures + 1 >= max_failures`;
      const failed = await trx
        .updateTable('jobs')
        .set({
          num_failures: sql<number>`num_failures + 1`,
          status: sql<string>`case when ${final} then 'failed' else 'running' end`,
          failed: sql<number | null>`case when ${final} then cast(${now} as bigint) else failed end`,
          // A failed-back job is held by nobody; a finally failed one keeps its last machine.
          machine_id: sql<string | null>`case when ${final} then machine_id else null end`,
          lease_expires_at: 0,
        })
        .$call(heldBy({ userId, jobId, machineId }))
        .returningAll()
        .executeTakeFirst();
      if (!failed) return undefined;
      await trx.insertInto('job_bans').values({ job_id: jobId, machine_id: machineId, created: now }).execute();
      await this.addEvent(trx, failed, 'failed_attempt', machineId, now, reason);
      if (failed.status === 'failed') {
        await this.addEvent(trx, failed, 'failed', machineId, now, reason);
        await this.oweWebhook(trx, { ...failed, machine_id: machineId }, 'failed', now);
      } else {
        signals.push({ userId, groupId: failed.container_group_id, count: 1 });
      }
      return failed;
    });
    if (job) return { kind: 'applied', job };
    // A machine that already reported a failure is banned from the job, so it can never hold it
    // again: any later report of its own is that same failure repeated, also the one that failed
    // the job for good (which keeps that machine's id), and changes nothing.
    return this.explain(userId, jobId, async (j) => {
      const ban = await this.db
        .selectFrom('job_bans')
        .select('job_id')
        .where('job_id', '=', j.id)
        .where('machine_id', '=', machineId)
        .executeTakeFirst();
      return ban !== undefined;
    });
  }

  async releaseJob({ userId, jobId, machineId, now }: MachineRef): Promise<Outcome> {
    const job = await this.transition(async (trx, signals) => {
      const released = await trx
        .updateTable('jobs')
        .set({ machine_id: null, lease_expires_at: 0 })
        .$call(heldBy({ userId, jobId, machineId }))
        .returningAll()
        .executeTakeFirst();
      if (!released) return undefined;
      await this.addEvent(trx, released, 'released', machineId, now);
      signals.push({ userId, groupId: released.container_group_id, count: 1 });
      return released;
    });
    if (job) return { kind: 'applied', job };
    // A repeat is this machine releasing the attempt it already released (nobody has claimed the job
    // since); anyone else, e.g. a machine that failed the job back, never held this orphan.
    return this.explain(userId, jobId, async (j) => {
      if (j.status !== 'running' || j.machine_id !== null) return false;
      const released = await this.db
        .selectFrom('job_events')
        .select('id')
        .where('job_id', '=', j.id)
        .where('type', '=', 'released')
        .where('machine_id', '=', machineId)
        .where('attempt', '=', j.attempt)
        .executeTakeFirst();
      return released !== undefined;
    });
  }

  async cancelJob(userId: string, jobId: string, now: number): Promise<Outcome> {
    const job = await this.transition(async (trx) => {
      const canceled = await trx
        .updateTable('jobs')
        .set({ status: 'canceled', canceled: now, lease_expires_at: 0 })
        .where('id', '=', jobId)
        .where('user_id', '=', userId)
        .where('status', 'in', ['pending', 'running'])
        .returningAll()
        .executeTakeFirst();
      if (canceled) {
        await this.addEvent(trx, canceled, 'canceled', canceled.machine_id, now);
        await this.oweWebhook(trx, canceled, 'canceled', now);
      }
      return canceled;
    });
    if (job) return { kind: 'applied', job };
    return this.explain(userId, jobId, (j) => j.status === 'canceled');
  }

  async purgeGroup(userId: string, groupId: string, now: number): Promise<number> {
    return this.transition(async (trx) => {
      const canceled = await trx
        .updateTable('jobs')
        .set({ status: 'canceled', canceled: now, lease_expires_at: 0 })
        .where('user_id', '=', userId)
        .where('container_group_id', '=', groupId)
        .where('status', '=', 'running')
        .returningAll()
        .execute();
      for (const job of canceled) {
        await this.addEvent(trx, job, 'canceled', job.machine_id, now);
        await this.oweWebhook(trx, job, 'canceled', now);
      }
      const deleted = await trx
        .deleteFrom('jobs')
        .where('user_id', '=', userId)
        .where('container_group_id', '=', groupId)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      return canceled.length + Number(deleted.numDeletedRows);
    });
  }

  async clearJobs(): Promise<void> {
    await this.db.deleteFrom('jobs').execute();
  }

  async hasClaimableWork(userId: string, groupId: string, now: number): Promise<boolean> {
    const row = await this.db
      .selectFrom('jobs')
      .select('id')
      .where('user_id', '=', userId)
      .where('container_group_id', '=', groupId)
      .where((eb) =>
        eb.or([eb('status', '=', 'pending'), eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<', now)])]),
      )
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  async graceLeasesAfterStart(now: number): Promise<number> {
    // The last moment this coordinator (or a replica) is known to have been serving.
    const row = await this.db.selectFrom('jobs').select((eb) => eb.fn.max('heartbeat').as('last')).where('status', '=', 'running').executeTakeFirst();
    const last = row?.last == null ? 0 : Number(row.last);
    if (last === 0) return 0;
    const result = await this.db
      .updateTable('jobs')
      .set({ lease_expires_at: this.leaseExpiry(now) })
      .where('status', '=', 'running')
      .where('lease_expires_at', '>', last) // still live when the coordinator was last heard of
      .where('lease_expires_at', '<', this.leaseExpiry(now))
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async nextLeaseExpiry(userId: string, groupId: string, now: number): Promise<number | undefined> {
    const row = await this.db
      .selectFrom('jobs')
      .select((eb) => eb.fn.min('lease_expires_at').as('next'))
      .where('user_id', '=', userId)
      .where('container_group_id', '=', groupId)
      .where('status', '=', 'running')
      .where('lease_expires_at', '>=', now)
      .executeTakeFirst();
    return row?.next == null ? undefined : Number(row.next);
  }

  async countJobsByStatus(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('jobs')
      .select(['status', (eb) => eb.fn.countAll().as('n')])
      .groupBy('status')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

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
