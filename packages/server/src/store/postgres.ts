// PostgreSQL, for several coordinator processes on one database. Claims lock their candidate
// row with FOR UPDATE SKIP LOCKED; wake-ups travel between processes by LISTEN/NOTIFY.
import pg from 'pg';
import { Kysely, PostgresDialect, sql, type SelectQueryBuilder, type Transaction } from 'kysely';
import { KyselyStore } from './kysely-store.js';
import type { Database } from './schema.js';
import type { WorkSignal } from './types.js';

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
  ) {
    super(db, leaseFactor);
  }

  static open(opts: PostgresOptions): PostgresStore {
    const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10, types });
    pool.on('error', (err) => opts.onError?.(err));
    return new PostgresStore(new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), opts.leaseFactor, opts);
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
        eb.or([eb('status', '=', 'pending'), eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<=', now)])]),
      )
      .execute();
    for (const g of groups) this.work.emit('work', { userId: g.user_id, groupId: g.container_group_id });
  }

  override async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => undefined);
    await super.close();
  }

  protected lockCandidate<O>(qb: SelectQueryBuilder<Database, 'jobs', O>) {
    return qb.forUpdate().skipLocked();
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
