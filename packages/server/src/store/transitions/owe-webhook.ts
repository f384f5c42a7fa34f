// A transition that owes a webhook writes its outbox row in its own transaction, so a job change
// and its notification are never split by a crash. The row is written either from JavaScript (a
// job row in hand) or inside a PostgreSQL statement (from a CTE's rows); both forms come from the
// definitions here: one field list for the body (the protocol's WebhookBody), one set of values
// for a new delivery.
import { sql, type RawBuilder, type Transaction } from 'kysely';
import { WebhookBody, type WebhookEvent } from '@drover/protocol';
import type { Database, JobRow } from '../schema.js';

/** Where each field of the body comes from: the job column, or (status) the event itself. */
const SOURCE: { [F in keyof WebhookBody]: F extends 'status' ? 'event' : keyof JobRow } = {
  status: 'event',
  job_id: 'id',
  machine_id: 'machine_id',
  container_group_id: 'container_group_id',
};
/** The body's fields in the schema's order, which both forms keep. */
const FIELDS = Object.keys(WebhookBody.properties) as (keyof WebhookBody)[];

type BodySource = Pick<JobRow, 'id' | 'machine_id' | 'container_group_id'>;

/** The body, from a job row. */
export function webhookBody(event: WebhookEvent, job: BodySource): string {
  const body: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const from = SOURCE[field];
    body[field] = from === 'event' ? event : job[from as keyof BodySource];
  }
  return JSON.stringify(body);
}

/**
 * The body as SQL over the columns of the current row (PostgreSQL's json_build_object, which puts
 * spaces after its colons and commas: the sender sends every body compacted).
 */
export function webhookBodySql(event: WebhookEvent): RawBuilder<string> {
  const pairs = FIELDS.map((field) => {
    const from = SOURCE[field];
    return sql`${sql.lit(field)}, ${from === 'event' ? sql`${event}::text` : sql.ref(from)}`;
  });
  return sql<string>`json_build_object(${sql.join(pairs)})::text`;
}

/** A new delivery: due at once, tried by nobody yet. */
function newDelivery(now: number) {
  return { state: 'pending', attempts: 0, next_attempt_at: now, locked_until: 0, created: now } as const;
}

/** Owe `event`'s webhook for `job`, if it has a webhook URL. */
export async function oweWebhook(trx: Transaction<Database>, job: JobRow, event: WebhookEvent, now: number): Promise<void> {
  if (!job.webhook) return;
  await trx
    .insertInto('webhook_outbox')
    .values({ user_id: job.user_id, job_id: job.id, url: job.webhook, event, body: webhookBody(event, job), ...newDelivery(now) })
    .execute();
}

/** A CTE step owing `event`'s webhook for each row of the CTE `source` that has a webhook URL. */
export function oweWebhookFrom(source: string, event: WebhookEvent, now: number): RawBuilder<unknown> {
  const delivery = Object.entries(newDelivery(now));
  return sql`
    insert into webhook_outbox (user_id, job_id, url, event, body, ${sql.join(delivery.map(([column]) => sql.ref(column)))})
    select user_id, id, webhook, ${event}, ${webhookBodySql(event)}, ${sql.join(delivery.map(([, value]) => sql`${value}`))}
    from ${sql.table(source)} where webhook is not null`;
}
