// PostgreSQL, for several coordinator processes on one database. Claims lock their candidate
// row with FOR UPDATE SKIP LOCKED; wake-ups travel between processes by LISTEN/NOTIFY.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Kysely, PostgresDialect, sql, type CompiledQuery, type SelectQueryBuilder, type Transaction } from 'kysely';
import { retry, type Backoff } from '@drover/common';
import { claimable } from './conditions.js';
import { KyselyStore } from './kysely-store.js';
import type { Database, JobRow } from './schema.js';
import * as claim from './transitions/claim.js';
import * as complete from './transitions/complete.js';
import type { Progress } from '@drover/protocol';
import type { ClaimRequest, MachineRef, Outcome, WorkSignal } from './types.js';

const CHANNEL = 'drover_work';
/** After losing the LISTEN connection: the first try after 1 s, then 2, 4 … up to 30 s between tries. */
const RELISTEN_FIRST_MS = 1000;
const RELISTEN_BACKOFF: Backoff = { baseMs: 2000, maxMs: 30_000, jitter: 'none' };
const INT8_OID = 20;
// bigint columns hold epoch milliseconds and counters, all well inside Number's exact range.
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export interface PostgresOptions {
  url: string;
  leaseFactor: number;
  poolSize?: number;
  onError?: (err: Error) => void;
}

export class PostgresStore extends KyselyStore {
  readonly kind = 'postgres' as const;
  private listener: pg.Client | undefined;
  /** aborted by close(): stops trying to listen again */
  private readonly closing = new AbortController();
  /** named prepared statements' names, by SQL */
  private readonly statementNames = new Map<string, string>();

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

  private async runPrepared<R>(compiled: CompiledQuery<R>, pool: pg.Pool): Promise<R[]> {
    let name = this.statementNames.get(compiled.sql);
    if (!name) {
      name = `drover_${createHash('sha1').update(compiled.sql).digest('hex').slice(0, 24)}`;
      // The hot statements are a handful of templates; the bound is only a guard.
      if (this.statementNames.size < 100) this.statementNames.set(compiled.sql, name);
    }
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
      void this.listenAgain();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    if (this.closing.signal.aborted) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
  }

  /**
   * The LISTEN connection was lost: connect again, retrying with backoff until it works; then wake
   * the waiters of every group with claimable jobs, since the notifications sent while nobody
   * listened are gone.
   */
  private async listenAgain(): Promise<void> {
    const { signal } = this.closing;
    try {
      // The connection has only just failed: the first try waits too.
      await sleep(RELISTEN_FIRST_MS, undefined, { signal });
      await retry(() => this.listen(), {
        attempts: Infinity,
        backoff: RELISTEN_BACKOFF,
        onRetry: ({ error }) => this.opts.onError?.(error as Error),
        signal,
      });
      await this.wakeClaimable();
    } catch (e) {
      if (!signal.aborted) this.opts.onError?.(e as Error);
    }
  }

  private async wakeClaimable(): Promise<void> {
    if (this.closing.signal.aborted) return;
    const groups = await this.db
      .selectFrom('jobs')
      .select(['user_id', 'container_group_id'])
      .distinct()
      .where(claimable(Date.now()))
      .execute();
    for (const g of groups) this.work.emit('work', { userId: g.user_id, groupId: g.container_group_id });
  }

  override async close(): Promise<void> {
    this.closing.abort();
    await this.listener?.end().catch(() => undefined);
    await this.relaxedPool.end().catch(() => undefined);
    await super.close();
  }

  /** The claim and the completion in one statement each: transitions/claim.ts, complete.ts. */
  override claimJob(req: ClaimRequest): Promise<JobRow | undefined> {
    return claim.postgres(this.ctx, req);
  }

  override completeJob(ref: MachineRef & { progress?: Progress }): Promise<Outcome> {
    return complete.postgres(this.ctx, ref);
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
