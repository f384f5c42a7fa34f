// Numbered migrations, run at start. Written once with Kysely's schema builder; the dialect
// differences are how the autoincrementing keys are declared and SQLite's job counts (0007).
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/** The unique index that lets one enabled rule drive a SaladCloud container group. */
export const SALAD_GROUP_INDEX = 'scaling_rules_salad_group_idx';
export const SALAD_GROUP_TAKEN_REASON = "another user's enabled rule drives this SaladCloud container group";

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
    // Autoscaling: rules, their decisions, the per-group lease that lets one coordinator act at a
    // time, and an index for "jobs of this group that ended since T" (the idle threshold).
    '0003_scaling': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('scaling_rules')
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
          .addColumn('container_group_id', 'text', (c) => c.notNull())
          .addColumn('created', big, (c) => c.notNull())
          .addColumn('updated', big, (c) => c.notNull())
          .addColumn('min_replicas', 'integer', (c) => c.notNull())
          .addColumn('max_replicas', 'integer', (c) => c.notNull())
          .addColumn('idle_threshold_seconds', 'integer', (c) => c.notNull())
          .addColumn('jobs_per_replica', 'integer', (c) => c.notNull())
          .addColumn('cooldown_seconds', 'integer', (c) => c.notNull())
          .addColumn('provider', 'text', (c) => c.notNull())
          .addColumn('org_name', 'text')
          .addColumn('project_name', 'text')
          .addColumn('container_group_name', 'text')
          .addColumn('enabled', 'integer', (c) => c.notNull())
          .addColumn('disabled_reason', 'text')
          .addColumn('replicas', 'integer')
          .addColumn('provider_status', 'text')
          .addColumn('evaluated', big)
          .addColumn('last_change', big)
          .addColumn('start_attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_start', big)
          .addPrimaryKeyConstraint('scaling_rules_pk', ['user_id', 'container_group_id'])
          .addCheckConstraint('scaling_rules_min_max', sql`min_replicas <= max_replicas`)
          .execute();

        await db.schema
          .createTable('scaling_decisions')
          .addColumn('id', serial, serialKey)
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('container_group_id', 'text', (c) => c.notNull())
          .addColumn('at', big, (c) => c.notNull())
          .addColumn('trigger', 'text', (c) => c.notNull())
          .addColumn('provider', 'text', (c) => c.notNull())
          .addColumn('pending', 'integer', (c) => c.notNull())
          .addColumn('running', 'integer', (c) => c.notNull())
          .addColumn('recently_ended', 'integer', (c) => c.notNull())
          .addColumn('desired', 'integer', (c) => c.notNull())
          .addColumn('from_replicas', 'integer')
          .addColumn('to_replicas', 'integer')
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('outcome', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('error', 'text')
          .addColumn('coordinator', 'text', (c) => c.notNull())
          .addForeignKeyConstraint('scaling_decisions_rule_fk', ['user_id', 'container_group_id'], 'scaling_rules', ['user_id', 'container_group_id'], (fk) =>
            fk.onDelete('cascade'),
          )
          .execute();
        await db.schema
          .createIndex('scaling_decisions_rule_idx')
          .on('scaling_decisions')
          .columns(['user_id', 'container_group_id', 'id'])
          .execute();

        // No foreign key: a lease may outlive its rule for a moment (a decision in flight when the rule is deleted).
        await db.schema
          .createTable('scaling_leases')
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('container_group_id', 'text', (c) => c.notNull())
          .addColumn('holder', 'text', (c) => c.notNull())
          .addColumn('expires_at', big, (c) => c.notNull())
          .addColumn('fence', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('scaling_leases_pk', ['user_id', 'container_group_id'])
          .execute();

        // A job's end is whichever of completed, failed, canceled is set (only one ever is). The
        // same expression in the query lets both databases use the index.
        await sql`create index jobs_ended_idx on jobs (user_id, container_group_id, (coalesce(completed, failed, canceled)))`.execute(db);
      },
      async down(db: Kysely<unknown>) {
        await sql`drop index if exists jobs_ended_idx`.execute(db);
        for (const t of ['scaling_leases', 'scaling_decisions', 'scaling_rules']) {
          await sql`drop table if exists ${sql.table(t)}`.execute(db);
        }
      },
    },
    // When a worker last asked for work in each group: a job queued for a group nobody serves
    // (a typo in -g) says so instead of waiting forever in silence.
    '0004_group_polls': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('group_polls')
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
          .addColumn('container_group_id', 'text', (c) => c.notNull())
          .addColumn('last_poll', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('group_polls_pk', ['user_id', 'container_group_id'])
          .execute();
      },
      async down(db: Kysely<unknown>) {
        await db.schema.dropTable('group_polls').ifExists().execute();
      },
    },
    // Job logs (per attempt, capped) and handovers (for the dashboard's redone-work chart).
    '0005_logs_and_handovers': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('job_log_attempts')
          .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
          .addColumn('attempt', 'integer', (c) => c.notNull())
          .addColumn('machine_id', 'text', (c) => c.notNull())
          .addColumn('bytes', big, (c) => c.notNull().defaultTo(0))
          .addColumn('lines', big, (c) => c.notNull().defaultTo(0))
          .addColumn('dropped', big, (c) => c.notNull().defaultTo(0))
          .addColumn('truncated', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_seq', big, (c) => c.notNull().defaultTo(-1))
          .addColumn('updated', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('job_log_attempts_pk', ['job_id', 'attempt'])
          .execute();
        await db.schema
          .createTable('job_log_lines')
          .addColumn('job_id', 'text', (c) => c.notNull())
          .addColumn('attempt', 'integer', (c) => c.notNull())
          .addColumn('seq', big, (c) => c.notNull())
          .addColumn('at', big, (c) => c.notNull())
          .addColumn('stream', 'text', (c) => c.notNull())
          .addColumn('text', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('job_log_lines_pk', ['job_id', 'attempt', 'seq'])
          .addForeignKeyConstraint('job_log_lines_attempt_fk', ['job_id', 'attempt'], 'job_log_attempts', ['job_id', 'attempt'], (c) => c.onDelete('cascade'))
          .execute();
        await db.schema
          .createTable('job_handovers')
          .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
          .addColumn('attempt', 'integer', (c) => c.notNull())
          .addColumn('user_id', 'text', (c) => c.notNull())
          .addColumn('container_group_id', 'text', (c) => c.notNull())
          .addColumn('at', big, (c) => c.notNull())
          .addColumn('cause', 'text', (c) => c.notNull())
          .addColumn('from_machine', 'text')
          .addColumn('to_machine', 'text', (c) => c.notNull())
          .addColumn('progress_before', 'double precision')
          .addColumn('progress_resumed', 'double precision')
          .addPrimaryKeyConstraint('job_handovers_pk', ['job_id', 'attempt'])
          .execute();
        await db.schema.createIndex('job_handovers_user_idx').on('job_handovers').columns(['user_id', 'at']).execute();
      },
      async down(db: Kysely<unknown>) {
        for (const t of ['job_handovers', 'job_log_lines', 'job_log_attempts']) await sql`drop table if exists ${sql.table(t)}`.execute(db);
      },
    },
    // One SaladCloud container group is driven by one enabled rule: two users' rules naming the
    // same group (its id is SaladCloud's, unique across projects) would resize it against each
    // other, and either could stop the other's fleet. Rules that already collide keep the oldest
    // enabled; the others are disabled, with the reason, not deleted.
    '0006_one_rule_per_salad_group': {
      async up(db: Kysely<unknown>) {
        await sql`update scaling_rules set enabled = 0, disabled_reason = ${SALAD_GROUP_TAKEN_REASON}
          where provider = 'saladcloud' and enabled = 1 and exists (
            select 1 from scaling_rules o where o.provider = 'saladcloud' and o.enabled = 1
              and o.container_group_id = scaling_rules.container_group_id
              and (o.created < scaling_rules.created or (o.created = scaling_rules.created and o.user_id < scaling_rules.user_id)))`.execute(db);
        await sql`create unique index ${sql.id(SALAD_GROUP_INDEX)} on scaling_rules (container_group_id) where provider = 'saladcloud' and enabled = 1`.execute(db);
      },
      async down(db: Kysely<unknown>) {
        await sql`drop index if exists ${sql.id(SALAD_GROUP_INDEX)}`.execute(db);
      },
    },
    // SQLite only (see JobCountsTable): a count per user, group and status, kept by triggers so
    // that no code path can forget it, filled from the jobs already there.
    '0007_job_counts': {
      async up(db: Kysely<unknown>) {
        if (dialect !== 'sqlite') return;
        await sql`create table job_counts (
          user_id text not null references users (id) on delete cascade,
          container_group_id text not null,
          status text not null,
          n integer not null,
          primary key (user_id, container_group_id, status)
        ) without rowid`.execute(db);
        const add = (row: 'new' | 'old') => sql.raw(`insert into job_counts (user_id, container_group_id, status, n)
          values (${row}.user_id, ${row}.container_group_id, ${row}.status, 1)
          on conflict (user_id, container_group_id, status) do update set n = n + 1;`);
        const take = (row: 'new' | 'old') => sql.raw(`update job_counts set n = n - 1
          where user_id = ${row}.user_id and container_group_id = ${row}.container_group_id and status = ${row}.status;`);
        await sql`create trigger job_counts_insert after insert on jobs begin ${add('new')} end`.execute(db);
        await sql`create trigger job_counts_delete after delete on jobs begin ${take('old')} end`.execute(db);
        await sql`create trigger job_counts_update after update of status, user_id, container_group_id on jobs
          when old.status is not new.status or old.user_id is not new.user_id or old.container_group_id is not new.container_group_id
          begin ${take('old')} ${add('new')} end`.execute(db);
        await sql`insert into job_counts (user_id, container_group_id, status, n)
          select user_id, container_group_id, status, count(*) from jobs group by user_id, container_group_id, status`.execute(db);
      },
      async down(db: Kysely<unknown>) {
        if (dialect !== 'sqlite') return;
        for (const t of ['job_counts_insert', 'job_counts_delete', 'job_counts_update']) await sql`drop trigger if exists ${sql.id(t)}`.execute(db);
        await sql`drop table if exists job_counts`.execute(db);
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
