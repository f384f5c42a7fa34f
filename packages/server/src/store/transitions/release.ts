// Release: a machine shutting down hands its job back at once, without counting a failure; the
// job stays running, held by nobody, and is the first to be claimed again. One form for both stores.
import { heldBy } from '../conditions.js';
import type { MachineRef, Outcome } from '../types.js';
import { addEvent, outcome, type StoreContext } from './context.js';

export async function portable(s: StoreContext, { userId, jobId, machineId, now }: MachineRef): Promise<Outcome> {
  const job = await s.transaction(async (trx, signals) => {
    const released = await trx
      .updateTable('jobs')
      .set({ machine_id: null, lease_expires_at: 0 })
      .where(heldBy({ userId, jobId, machineId }))
      .returningAll()
      .executeTakeFirst();
    if (!released) return undefined;
    await addEvent(s, trx, released, 'released', machineId, now);
    signals.push({ userId, groupId: released.container_group_id, count: 1 });
    return released;
  });
  // A repeat is this machine releasing the attempt it already released (nobody has claimed the job
  // since); anyone else, e.g. a machine that failed the job back, never held this orphan.
  return outcome(s, job, { userId, jobId }, async (j) => {
    if (j.status !== 'running' || j.machine_id !== null) return false;
    const released = await s.db
      .selectFrom('job_events')
      .select('id')
      .where('job_id', '=', j.id)
      .where('type', '=', 'released')
      .where('machine_id', '=', machineId)
      .where('attempt', '=', j.attempt)
      .executeTakeFirst();
    return released !== undefined;
  });
}
