// PostgreSQL, for several coordinator processes on one database. Claims lock their candidate
// row with FOR UPDATE SKIP LOCKED; wake-ups travel between processes by LISTEN/NOTIFY.
import { createHash } from 'node:crypto';
import pg from 'pg';
import { Kysely, PostgresDialect, sql, type CompiledQuery, type SelectQueryBuilder, type Transaction } from 'kysely';
import { KyselyStore } from './kysely-store.js';
import type { Database } from './schema.js';
import type { ClaimRequest, MachineRef, Outcome, WorkSignal } from './types.js';
import type { JobRow } from './schema.js';

const CHANNEL = 'drover_work';
/** After losing the LISTEN connection: first retry, and the longest pause between retries. */
const RELISTEN_FIRST_MS = 1000;
const RELISTEN_MAX_MS = 30_000;
const INT8_OID = 20;
// bigint columns hold epoch milliseconds and counters, all well inside Number's exact range.
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/** A CTE step owing the webhook `event` for each row of the CTE `source` that has a webhook URL. */
function oweWebhook(source: 'claimed' | 'done', event: 'running' | 'completed', now: number) {
  return sql`
    insert into webhook_outbox (user_id, job_id, url, event, body, state, attempts, next_attempt_at, locked_until, created)
    select user_id, id, webhook, ${event},
      json_build_object('status', ${event}::text, 'job_id', id, 'machine_id', machine_id, 'container_group_id', container_group_id)::text,
      'pending', 0, ${now}, 0, ${now}
    from ${sql.table(source)} where webhook is not null`;
}

export interface PostgresOptions {
  url: string;
  leaseFactor: number;
  poolSize?: number;
  onError?: (err: Error) => void;
}

export class PostgresStore extends KyselyStore {
  readonly kind = 'postgres' as const;
  private listener: pg.Client | undefined;
  private closed = false;

  private constructor(
    db: Kysely<Database>,
    leaseFactor: number,
    private readonly opts: PostgresOptions,
    private readonly pool: pg.Pool,
    /** connections with synchronous_commit off, for heartbeats only */
    private readonly relaxedPool: pg.Pool,
  ) {
    super(db, leaseFactor);
  }

  static open(opts: PostgresOptions): PostgresStore {
    const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10, types });
    const relaxedPool = new pg.Pool({ connectionString: opts.url, max: 4, types, options: '-c synchronous_commit=off' });
    for (const p of [pool, relaxedPool]) p.on('error', (err) => opts.onError?.(err));
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    return new PostgresStore(db, opts.leaseFactor, opts, pool, relaxedPool);
  }

  /** Hot statements as named prepared statements: parsed and planned once per connection. */
  protected override async executeHot<R>(query: CompiledQuery<R>, opts: { asyncCommit?: boolean } = {}): Promise<R[]> {
    return this.runPrepared(query, opts.asyncCommit ? this.relaxedPool : this.pool);
  }

  private async runPrepared<R>(compiled: CompiledQuery<R>, pool: pg.Pool = this.pool): Promise<R[]> {
    const name = `drover_${createHash('sha1').update(compiled.sql).digest('hex').slice(0, 24)}`;
    const res = await pool.query({ name, text: compiled.sql, values: compiled.parameters as unknown[] });
    return res.rows as R[];
  }

  override async migrate(): Promise<void> {
    // Several replicas may start at once: one migrates, the others wait on the advisory lock.
    await this.db.connection().execute(async (conn) => {
      await sql`select pg_advisory_lock(724201)`.execute(conn);
      try {
        await super.migrateWith(conn);
      } finally {
        await sql`select pg_advisory_unlock(724201)`.execute(conn);
      }
    });
    await this.listen();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.opts.url });
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      try {
        const signals = JSON.parse(msg.payload) as WorkSignal[];
        for (const s of signals) this.work.emit('work', s);
      } catch {
        /* not ours */
      }
    });
    client.on('error', (err) => {
      this.opts.onError?.(err);
      if (this.listener !== client) return; // still connecting: listen() rejects instead
      this.listener = undefined;
      void client.end().catch(() => undefined);
      this.listenAgain(RELISTEN_FIRST_MS);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
  }

  /**
   * The LISTEN connection was lost: connect again after `delayMs`, retrying (with backoff) until
   * it works; then wake the waiters of every group with claimable jobs, since the notifications
   * sent while nobody listened are gone.
   */
  private listenAgain(delayMs: number): void {
    if (this.closed) return;
    setTimeout(() => {
      this.listen().then(
        () => this.wakeClaimable().catch((e: Error) => this.opts.onError?.(e)),
        (e: Error) => {
          this.opts.onError?.(e);
          this.listenAgain(Math.min(delayMs * 2, RELISTEN_MAX_MS));
        },
      );
    }, delayMs).unref();
  }

  private async wakeClaimable(): Promise<void> {
    if (this.closed) return;
    const now = Date.now();
    const groups = await this.db
      .selectFrom('jobs')
      .select(['user_id', 'container_group_id'])
      .distinct()
      .where((eb) =>
        eb.or([eb('status', '=', 'pending'), eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<', now)])]),
      )
      .execute();
    for (const g of groups) this.work.emit('work', { userId: g.user_id, groupId: g.container_group_id });
  }

  override async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => undefined);
    await this.relaxedPool.end().catch(() => undefined);
    await super.close();
  }

  /**
   * The whole claim in one statement, one round trip instead of six: lock the candidate (orphans
   * first, SKIP LOCKED), take it, and write its events and webhook in the same statement.
   */
  override async claimJob({ userId, machineId, groupId, now }: ClaimRequest): Promise<JobRow | undefined> {
    const candidate = (status: 'running' | 'pending') => sql`
      select id from jobs
      where user_id = ${userId} and container_group_id = ${groupId} and status = ${status}
        ${status === 'running' ? sql`and lease_expires_at < ${now}` : sql`and lease_expires_at = 0`}
        and not exists (select 1 from job_bans b where b.job_id = jobs.id and b.machine_id = ${machineId})
      order by created, seq limit 1 for update skip locked`;
    const rows = await this.runPrepared(sql<JobRow & { prev_status: string; prev_machine: string | null; prev_attempt: number }>`
      with candidate as (
        select id, status as prev_status, machine_id as prev_machine, attempt as prev_attempt from jobs
        where id = coalesce((${candidate('running')}), (${candidate('pending')}))
      ), claimed as (
        update jobs set status = 'running', machine_id = ${machineId}, heartbeat = ${now},
          lease_expires_at = cast(${now} as bigint) + heartbeat_interval * ${this.leaseMsPerIntervalSecond},
          started = coalesce(started, cast(${now} as bigint)), attempt = attempt + 1
        from candidate
        where jobs.id = candidate.id
          and (jobs.status = 'pending' or (jobs.status = 'running' and jobs.lease_expires_at < ${now}))
        returning jobs.*, candidate.prev_status, candidate.prev_machine, candidate.prev_attempt
      ), events as (
        insert into job_events (job_id, at, type, machine_id, attempt)
        select job_id, ${now}, type, machine_id, attempt from (
          select 1 as ord, id as job_id, 'lease_expired' as type, prev_machine as machine_id, prev_attempt as attempt
          from claimed where prev_status = 'running' and prev_machine is not null
          union all
          select 2, id, 'claimed', machine_id, attempt from claimed
        ) e order by ord
      ), owed as (${oweWebhook('claimed', 'running', now)})
      select * from claimed`.compile(this.db));
    if (!rows[0]) return undefined;
    const { prev_status: _s, prev_machine: _m, prev_attempt: _a, ...job } = rows[0];
    return job;
  }

  /** Completion, its event and its webhook in one statement. */
  override async completeJob({ userId, jobId, machineId, now }: MachineRef): Promise<Outcome> {
    const rows = await this.runPrepared(sql<JobRow>`
      with done as (
        update jobs set status = 'completed', completed = ${now}, lease_expires_at = 0
        where id = ${jobId} and user_id = ${userId} and status = 'running' and machine_id = ${machineId}
        returning *
      ), events as (
        insert into job_events (job_id, at, type, machine_id, attempt)
        select id, ${now}, 'completed', machine_id, attempt from done
      ), owed as (${oweWebhook('done', 'completed', now)})
      select * from done`.compile(this.db));
    if (rows[0]) return { kind: 'applied', job: rows[0] };
    return this.explain(userId, jobId, (j) => j.status === 'completed' && j.machine_id === machineId);
  }

  protected lockOutbox<O>(qb: SelectQueryBuilder<Database, 'webhook_outbox', O>) {
    return qb.forUpdate().skipLocked();
  }

  protected async publishInTransaction(trx: Transaction<Database>, signals: WorkSignal[]): Promise<void> {
    // One notification per signal keeps each payload far below PostgreSQL's 8000-byte limit.
    for (const s of signals) await sql`select pg_notify(${CHANNEL}, ${JSON.stringify([s])})`.execute(trx);
  }

  protected publishAfterCommit(): void {}
}
