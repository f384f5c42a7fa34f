// Complete: the holder reports its job done, with the app's last progress if it sends it (so a
// finished job shows where it ended, not its last heartbeat's). A repeat by the holder is
// harmless; from anyone else it is refused and changes nothing.
import { sql } from 'kysely';
import { heldBy } from '../conditions.js';
import { QueryTemplate } from '../query-template.js';
import type { JobRow } from '../schema.js';
import type { Progress } from '@drover/protocol';
import type { MachineRef, Outcome } from '../types.js';
import { addEvent, outcome, type StoreContext } from './context.js';
import { oweWebhook, oweWebhookFrom } from './owe-webhook.js';

/** The guarded UPDATE, the same in both forms; `progress` (JSON) when the report carries one. */
function completion(s: StoreContext, now: number, userId: string, jobId: string, machineId: string, progress?: string) {
  return s.db
    .updateTable('jobs')
    .set({ status: 'completed', completed: now, lease_expires_at: 0, ...(progress !== undefined ? { progress } : {}) })
    .where(heldBy({ userId, jobId, machineId }))
    .returningAll();
}

type CompleteRef = MachineRef & { progress?: Progress };

const isRepeat = (machineId: string) => (job: JobRow) => job.status === 'completed' && job.machine_id === machineId;

// ---- portable (SQLite; any Kysely dialect) ----

const complete = new QueryTemplate((s: StoreContext, now: number, userId: string, jobId: string, machineId: string) =>
  completion(s, now, userId, jobId, machineId),
);
const completeWithProgress = new QueryTemplate((s: StoreContext, now: number, userId: string, jobId: string, machineId: string, progress: string) =>
  completion(s, now, userId, jobId, machineId, progress),
);

export async function portable(s: StoreContext, { userId, jobId, machineId, now, progress }: CompleteRef): Promise<Outcome> {
  const query = progress
    ? completeWithProgress.bind<JobRow>(s, now, userId, jobId, machineId, JSON.stringify(progress))
    : complete.bind<JobRow>(s, now, userId, jobId, machineId);
  const job = await s.transaction(async (trx) => {
    const [done] = (await trx.executeQuery(query)).rows;
    if (done) {
      await addEvent(s, trx, done, 'completed', machineId, now);
      await oweWebhook(trx, done, 'completed', now);
    }
    return done;
  });
  return outcome(s, job, { userId, jobId }, isRepeat(machineId));
}

// ---- PostgreSQL ----

/** The completion, its event and its webhook in one statement. */
const inOneStatement = (s: StoreContext, now: number, update: ReturnType<typeof completion>) => sql`
  with done as (${update}), events as (
    insert into job_events (job_id, at, type, machine_id, attempt)
    select id, ${now}, 'completed', machine_id, attempt from done
  ), owed as (${oweWebhookFrom('done', 'completed', now)})
  select * from done`;
const completeInOneStatement = new QueryTemplate((s: StoreContext, now: number, userId: string, jobId: string, machineId: string) =>
  inOneStatement(s, now, completion(s, now, userId, jobId, machineId)),
);
const completeWithProgressInOneStatement = new QueryTemplate((s: StoreContext, now: number, userId: string, jobId: string, machineId: string, progress: string) =>
  inOneStatement(s, now, completion(s, now, userId, jobId, machineId, progress)),
);

export async function postgres(s: StoreContext, { userId, jobId, machineId, now, progress }: CompleteRef): Promise<Outcome> {
  const query = progress
    ? completeWithProgressInOneStatement.bind<JobRow>(s, now, userId, jobId, machineId, JSON.stringify(progress))
    : completeInOneStatement.bind<JobRow>(s, now, userId, jobId, machineId);
  const [job] = await s.executeHot(query);
  return outcome(s, job, { userId, jobId }, isRepeat(machineId));
}
