// Submit: insert jobs all or nothing, each pending with its `created` event; signal work for each
// group that got jobs. One form for both stores.
import type { JobRow } from '../schema.js';
import type { NewJob } from '../types.js';
import type { StoreContext } from './context.js';

/** Rows per INSERT: well inside both databases' limits on bound parameters. */
const INSERT_CHUNK = 200;

export async function portable(s: StoreContext, userId: string, jobs: NewJob[], now: number): Promise<JobRow[]> {
  return s.transaction(async (trx, signals) => {
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
