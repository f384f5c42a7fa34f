// Fail: the holder reports a failed attempt. The machine is banned from the job; the failure is
// counted; at max_failures the job is failed for good (keeping its last machine), otherwise it is
// held by nobody at once, so another machine can take it. One form for both stores.
import { sql } from 'kysely';
import { heldBy } from '../conditions.js';
import type { MachineRef, Outcome } from '../types.js';
import { addEvent, outcome, type StoreContext } from './context.js';
import { oweWebhook } from './owe-webhook.js';

export async function portable(s: StoreContext, { userId, jobId, machineId, now, reason }: MachineRef & { reason?: string }): Promise<Outcome> {
  const job = await s.transaction(async (trx, signals) => {
    const final = sql<boolean>`num_failures + 1 >= max_failures`;
    const failed = await trx
      .updateTable('jobs')
      .set({
        num_failures: sql<number>`num_failures + 1`,
        status: sql<string>`case when ${final} then 'failed' else 'running' end`,
        failed: sql<number | null>`case when ${final} then cast(${now} as bigint) else failed end`,
        // A failed-back job is held by nobody; a finally failed one keeps its last machine.
        machine_id: sql<string | null>`case when ${final} then machine_id else null end`,
        lease_expires_at: 0,
      })
      .where(heldBy({ userId, jobId, machineId }))
      .returningAll()
      .executeTakeFirst();
    if (!failed) return undefined;
    await trx.insertInto('job_bans').values({ job_id: jobId, machine_id: machineId, created: now }).execute();
    await addEvent(s, trx, failed, 'failed_attempt', machineId, now, reason);
    if (failed.status === 'failed') {
      await addEvent(s, trx, failed, 'failed', machineId, now, reason);
      await oweWebhook(trx, { ...failed, machine_id: machineId }, 'failed', now);
    } else {
      signals.push({ userId, groupId: failed.container_group_id, count: 1 });
    }
    return failed;
  });
  // A machine that already reported a failure is banned from the job, so it can never hold it
  // again: any later report of its own is that same failure repeated, also the one that failed
  // the job for good (which keeps that machine's id), and changes nothing.
  return outcome(s, job, { userId, jobId }, async (j) => {
    const ban = await s.db
      .selectFrom('job_bans')
      .select('job_id')
      .where('job_id', '=', j.id)
      .where('machine_id', '=', machineId)
      .executeTakeFirst();
    return ban !== undefined;
  });
}
