// The webhook body is written in two places: in JavaScript by the transitions that run in
// JavaScript, and in SQL by PostgreSQL's one-statement claim and completion. Both come from one
// field list; this holds them to it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { WebhookBody, type WebhookEvent } from '@drover/protocol';
import { webhookBody, webhookBodySql } from '../../packages/server/src/store/transitions/owe-webhook.js';
import { createTestDatabase, type TestDatabase } from '@drover/testing/pg';

const EVENTS: WebhookEvent[] = ['running', 'completed', 'failed', 'canceled'];
const ROWS = [
  { id: '0b6f3c1e-8a3f-4d0e-9a77-0d6c1f1e2a01', machine_id: 'm1', container_group_id: 'g' },
  { id: '0b6f3c1e-8a3f-4d0e-9a77-0d6c1f1e2a02', machine_id: null, container_group_id: 'pending-group' },
  // what JSON must escape, and text beyond ASCII
  { id: '0b6f3c1e-8a3f-4d0e-9a77-0d6c1f1e2a03', machine_id: 'quote " back\\slash / </script>', container_group_id: 'grüppe ☃ 𝄞' },
];

describe('webhook body', () => {
  let database: TestDatabase;
  let db: Kysely<unknown>;
  before(async () => {
    database = await createTestDatabase();
    db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url, max: 1 }) }) });
  });
  after(async () => {
    await db.destroy();
    await database.drop();
  });

  test('the body PostgreSQL builds in SQL is, compacted, the string JavaScript builds: the schema\'s fields, in its order', async () => {
    for (const event of EVENTS) {
      for (const row of ROWS) {
        const { rows } = await sql<{ body: string }>`
          select ${webhookBodySql(event)} as body
          from (values (${row.id}, ${row.machine_id}, ${row.container_group_id})) as jobs (id, machine_id, container_group_id)`.execute(db);
        const fromSql = rows[0]!.body;
        const fromJs = webhookBody(event, row);
        assert.equal(JSON.stringify(JSON.parse(fromSql)), fromJs, `${event} for ${JSON.stringify(row)}`);
        assert.deepEqual(Object.keys(JSON.parse(fromJs) as object), Object.keys(WebhookBody.properties));
        assert.deepEqual(JSON.parse(fromJs), { status: event, job_id: row.id, machine_id: row.machine_id, container_group_id: row.container_group_id });
      }
    }
  });
});
