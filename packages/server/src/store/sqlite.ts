// The embedded default: one SQLite file (WAL), one process. Claims are serialized by SQLite's
// single writer; wake-ups for long-polls are in-process events emitted after commit.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, type CompiledQuery, type SelectQueryBuilder } from 'kysely';
import { KyselyStore } from './kysely-store.js';
import type { Database } from './schema.js';
import type { TransitionBody } from './transitions/context.js';
import type { WorkSignal } from './types.js';

/** Most transitions one group commit takes. */
const MAX_BATCH = 128;

interface QueuedTransition {
  fn: TransitionBody<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class SqliteStore extends KyselyStore {
  readonly kind = 'sqlite' as const;
  private readonly queue: QueuedTransition[] = [];
  private draining = false;

  static open(file: string, leaseFactor: number): SqliteStore {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    const database = new BetterSqlite3(file);
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
    database.pragma('foreign_keys = ON');
    database.pragma('busy_timeout = 5000');
    // Kysely prepares every query anew (about a third of a claim's cost); the store runs a few
    // dozen distinct statements, so keep them prepared (bounded, should a caller build many).
    const statements = new Map<string, BetterSqlite3.Statement>();
    const prepared = {
      close: () => database.close(),
      prepare(sql: string) {
        let stmt = statements.get(sql);
        if (!stmt) {
          stmt = database.prepare(sql);
          if (statements.size < 1000) statements.set(sql, stmt);
        }
        return stmt;
      },
    };
    return new SqliteStore(new Kysely<Database>({ dialect: new SqliteDialect({ database: prepared }) }), leaseFactor);
  }

  override async migrate(): Promise<void> {
    // Two processes starting on one new file race to create the tables; the loser finds them made
    // and succeeds on a second look.
    for (let attempt = 1; ; attempt++) {
      try {
        return await super.migrate();
      } catch (e) {
        if (attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  /**
   * Group commit. SQLite has one writer, and a commit's WAL writes cost more than the statements
   * before it: transitions queued in one turn of the event loop (or while a transaction runs) are
   * run together in one transaction, and each is answered only after it has committed. Should one of them throw,
   * the batch is rolled back and each is run again in a transaction of its own, so one failure
   * never undoes another (a transition only reads and writes the database, so a re-run is safe).
   */
  protected override transition<T>(fn: TransitionBody<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.draining) {
        this.draining = true;
        // Start on the next turn of the event loop, so that every request already read joins this commit.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        if (!(batch.length > 1 && (await this.commitTogether(batch)))) {
          for (const item of batch) await this.commitTogether([item]);
        }
        // let the requests that arrived meanwhile be read, so they share the next commit
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.draining = false;
    }
  }

  /** Run the items in one transaction; false (nothing settled) if one threw and there were several. */
  private async commitTogether(batch: QueuedTransition[]): Promise<boolean> {
    const results: { value: unknown; signals: WorkSignal[] }[] = [];
    try {
      await this.db.transaction().execute(async (trx) => {
        for (const item of batch) {
          const signals: WorkSignal[] = [];
          results.push({ value: await item.fn(trx, signals), signals });
        }
      });
    } catch (err) {
      if (batch.length > 1) return false;
      batch[0]!.reject(err);
      return true;
    }
    batch.forEach((item, i) => {
      this.publishAfterCommit(results[i]!.signals);
      item.resolve(results[i]!.value);
    });
    return true;
  }

  /** Heartbeats join the group commit too. */
  protected override executeHot<R>(query: CompiledQuery<R>): Promise<R[]> {
    return this.transition(async (trx) => (await trx.executeQuery(query)).rows);
  }

  protected lockOutbox<O>(qb: SelectQueryBuilder<Database, 'webhook_outbox', O>) {
    return qb;
  }

  protected async publishInTransaction(): Promise<void> {}

  protected publishAfterCommit(signals: WorkSignal[]): void {
    for (const s of signals) this.work.emit('work', s);
  }
}
