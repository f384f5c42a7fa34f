// Grace after a start: every running job whose lease was still live when the coordinator was last
// heard of (its newest heartbeat) gets one whole lease from `now`, so the nodes that kept running
// it through the outage can heartbeat again before anyone else may take it. Leases that had
// lapsed before the outage (dead nodes) stay lapsed. One form for both stores.
import { leaseExpiry } from '../conditions.js';
import type { StoreContext } from './context.js';

/** Returns how many leases it extended. */
export async function portable(s: StoreContext, now: number): Promise<number> {
  // The last moment this coordinator (or a replica) is known to have been serving.
  const row = await s.db.selectFrom('jobs').select((eb) => eb.fn.max('heartbeat').as('last')).where('status', '=', 'running').executeTakeFirst();
  const last = row?.last == null ? 0 : Number(row.last);
  if (last === 0) return 0;
  const renewed = leaseExpiry(s.leaseMsPerIntervalSecond, now);
  const result = await s.db
    .updateTable('jobs')
    .set({ lease_expires_at: renewed })
    .where('status', '=', 'running')
    .where('lease_expires_at', '>', last) // still live when the coordinator was last heard of
    .where('lease_expires_at', '<', renewed)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
