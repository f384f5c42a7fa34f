// Numbered migrations, run at start. Written once with Kysely's schema builder; the only
// dialect difference is how the autoincrementing keys are declared.
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

function migrations(dialect: Dialect): Record<string, Migration> {
  // An auto-incrementing integer key: `integer primary key autoincrement` (SQLite) / `bigserial` (PostgreSQL).
  const serial = dialect === 'sqlite' ? ('integer' as const) : ('bigserial' as const);
  const big = dialect === 'sqlite' ? ('integer' as const) : ('bigint' as const);
  const serialKey = (col: import('kysely').ColumnDefinitionBuilder) =>
    dialect === 'sqlite' ? col.primaryKey().autoIncrement() : col.primaryKey();

  return {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('users')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('username', 'text', (c) => c.notNull().unique())
          .addColumn('created', big, (c) => c.notNull())
          .addColumn('admin', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('webhook_secret', 'text', (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
          .addColumn('secret_hash', 'text', (c) => c.notNull())
          .addColumn('created', big, (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('jobs')
          .addColumn('seq', serial, serialKey)
          .addColumn('id', 'text', (c) => c.notNull().unique())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
          .addColumn('container_group_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('created', big, (c) => c.notNull())
          .addColumn('started', big)
          .addColumn('completed', big)
          .addColumn('canceled', big)
          .addColumn('failed', big)
          .addColumn('heartbeat', big)
          .addColumn('lease_expires_at', big, (c) => c.notNull().defaultTo(0))
          .addColumn('num_failures', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('num_heartbeats', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('machine_id', 'text')
          .addColumn('attempt', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('max_failures', 'integer', (c) => c.notNull())
          .addColumn('heartbeat_interval', 'integer', (c) => c.notNull())
          .addColumn('webhook', 'text')
          .addColumn('progress', 'text')
          .addColumn('spec', 'text', (c) => c.notNull())
          .execute();
        // The claim's index. Pending jobs all have lease_expires_at = 0, so for them it is in
        // (created, seq) order: the oldest is the first entry. For running jobs it is a range on
        // lease_expires_at: only the lapsed ones are read, however many are running.
        await db.schema
          .createIndex('jobs_claim_idx')
          .on('jobs')
          .columns(['user_id', 'container_group_id', 'status', 'lease_expires_at', 'created', 'seq'])
          .execute();
        await db.schema.createIndex('jobs_list_idx').on('jobs').columns(['user_id', 'created', 'seq']).execute();

        await db.schema
          .createTable('job_bans')
          .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
          .addColumn('machine_id', 'text', (c) => c.notNull())
          .addColumn('created', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('job_bans_pk', ['job_id', 'machine_id'])
          .execute();

        await db.schema
          .createTable('job_events')
          .addColumn('id', serial, serialKey)
          .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
          .addColumn('at', big, (c) => c.notNull())
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('machine_id', 'text')
          .addColumn('attempt', 'integer', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('job_events_job_idx').on('job_events').columns(['job_id', 'id']).execute();

        // No foreign key to jobs: a webhook owed for a job is still delivered after the job is purged.
        await db.schema
          .createTable('webhook_outbox')
          .addColumn('id', serial, serialKey)
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('job_id', 'text', (c) => c.notNull())
          .addColumn('url', 'text', (c) => c.notNull())
          .addColumn('event', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', big, (c) => c.notNull())
          .addColumn('locked_until', big, (c) => c.notNull().defaultTo(0))
          .addColumn('last_error', 'text')
          .addColumn('created', big, (c) => c.notNull())
          .addColumn('delivered_at', big)
          .execute();
        await db.schema
          .createIndex('webhook_outbox_due_idx')
          .on('webhook_outbox')
          .columns(['state', 'next_attempt_at'])
          .execute();
      },
      async down(db: Kysely<unknown>) {
        for (const t of ['webhook_outbox', 'job_events', 'job_bans', 'jobs', 'tokens', 'users']) {
          await sql`drop table if exists ${sql.table(t)}`.execute(db);
        }
      },
    },
    // Why an attempt failed, as the worker reported it (a Drover extension of POST /jobs/:id/failed).
    '0002_event_reason': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('job_events').addColumn('reason', 'text').execute();
      },
      async down(db: Kysely<unknown>) {
        await db.schema.alterTable('job_events').dropColumn('reason').execute();
      },
    },
  };
}

export class CodeMigrationProvider implements MigrationProvider {
  constructor(private readonly dialect: Dialect) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations(this.dialect);
  }
}
