// Purge: delete a container group's pending jobs and cancel its running ones (their holders learn
// it from their next heartbeat). One form for both stores.
import { addEvent, type StoreContext } from './context.js';
import { oweWebhook } from './owe-webhook.js';

/** Returns how many jobs it touched. */
export async function portable(s: StoreContext, userId: string, groupId: string, now: number): Promise<number> {
  return s.transaction(async (trx) => {
    const canceled = await trx
      .updateTable('jobs')
      .set({ status: 'canceled', canceled: now, lease_expires_at: 0 })
      .where('user_id', '=', userId)
      .where('container_group_id', '=', groupId)
      .where('status', '=', 'running')
      .returningAll()
      .execute();
    for (const job of canceled) {
      await addEvent(s, trx, job, 'canceled', job.machine_id, now);
      await oweWebhook(trx, job, 'canceled', now);
    }
    const deleted = await trx
      .deleteFrom('jobs')
      .where('user_id', '=', userId)
      .where('container_group_id', '=', groupId)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    return canceled.length + Number(deleted.numDeletedRows);
  });
}
