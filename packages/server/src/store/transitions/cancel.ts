// Cancel: the owner makes a pending or running job canceled for good; its holder learns it from
// its next heartbeat. Canceling twice is harmless. One form for both stores.
import type { Outcome } from '../types.js';
import { addEvent, outcome, type StoreContext } from './context.js';
import { oweWebhook } from './owe-webhook.js';

export async function portable(s: StoreContext, userId: string, jobId: string, now: number): Promise<Outcome> {
  const job = await s.transaction(async (trx) => {
    const canceled = await trx
      .updateTable('jobs')
      .set({ status: 'canceled', canceled: now, lease_expires_at: 0 })
      .where('id', '=', jobId)
      .where('user_id', '=', userId)
      .where('status', 'in', ['pending', 'running'])
      .returningAll()
      .executeTakeFirst();
    if (canceled) {
      await addEvent(s, trx, canceled, 'canceled', canceled.machine_id, now);
      await oweWebhook(trx, canceled, 'canceled', now);
    }
    return canceled;
  });
  return outcome(s, job, { userId, jobId }, (j) => j.status === 'canceled');
}
