// Heartbeat: the holder renews its lease (and may report progress). One form for both stores: a
// single guarded UPDATE, run as a hot statement (PostgreSQL: prepared, with asynchronous commit).
import type { Progress } from '@drover/protocol';
import { heldBy, leaseExpiry } from '../conditions.js';
import { QueryTemplate } from '../query-template.js';
import type { JobRow } from '../schema.js';
import type { MachineRef, Outcome } from '../types.js';
import { outcome, type StoreContext } from './context.js';

function renewal(s: StoreContext, now: number, userId: string, jobId: string, machineId: string) {
  return s.db
    .updateTable('jobs')
    .set((eb) => ({ heartbeat: now, lease_expires_at: leaseExpiry(s.leaseMsPerIntervalSecond, now), num_heartbeats: eb('num_heartbeats', '+', 1) }))
    .where(heldBy({ userId, jobId, machineId }))
    .returningAll();
}

const beat = new QueryTemplate((s: StoreContext, now: number, userId: string, jobId: string, machineId: string) =>
  renewal(s, now, userId, jobId, machineId),
);
const beatWithProgress = new QueryTemplate((s: StoreContext, now: number, progress: string, userId: string, jobId: string, machineId: string) =>
  renewal(s, now, userId, jobId, machineId).set({ progress }),
);

export async function portable(s: StoreContext, { userId, jobId, machineId, now, progress }: MachineRef & { progress?: Progress }): Promise<Outcome> {
  const [job] = await s.executeHot(
    progress
      ? beatWithProgress.bind<JobRow>(s, now, JSON.stringify(progress), userId, jobId, machineId)
      : beat.bind<JobRow>(s, now, userId, jobId, machineId),
    // A heartbeat lost in a database crash only makes its lease look a few ms older.
    { asyncCommit: true },
  );
  return outcome(s, job, { userId, jobId }, () => false);
}
