// The embedded default: one SQLite file (WAL), one process. Claims are serialized by SQLite's
// single writer; wake-ups for long-polls are in-process events emitted after commit.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, type SelectQueryBuilder } from 'kysely';
import { KyselyStore } from './kysely-store.js';
import type { Database } from './schema.js';
import type { WorkSignal } from './types.js';

export class SqliteStore extends KyselyStore {
  readonly kind = 'sqlite' as const;

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

  protected lockCandidate<O>(qb: SelectQueryBuilder<Database, 'jobs', O>) {
    return qb; // the transaction holds SQLite's only write lock; the guarded UPDATE re-checks anyway
  }

  protected lockOutbox<O>(qb: SelectQueryBuilder<Database, 'webhook_outbox', O>) {
    return qb;
  }

  protected async publishInTransaction(): Promise<void> {}

  protected publishAfterCommit(signals: WorkSignal[]): void {
    for (const s of signals) this.work.emit('work', s);
  }
}
