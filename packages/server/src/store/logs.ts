// A job's output, kept per attempt: the worker ships its lines in batches; the attempt's row says
// how much is kept, and stops keeping at the cap. No fencing: the lines of an attempt whose lease
// has lapsed are still that attempt's output (a node cut off from the coordinator ships them when
// it is back), so the only check is that the machine shipping them is the one that ran the attempt.
import { sql, type Transaction } from 'kysely';
import type { LogBatch } from '@drover/protocol';
import { FINISHED_STATUSES } from './conditions.js';
import type { Database, LogAttemptRow, LogLineRow } from './schema.js';
import type { StoreContext } from './transitions/context.js';

/** Rows per INSERT: 6 parameters each, well inside both databases' limits. */
const INSERT_CHUNK = 500;

export interface LogCapState {
  stored_bytes: number;
  cap_bytes: number;
  truncated: boolean;
}

export type AppendLogsOutcome =
  | { kind: 'applied'; accepted: number; cap: LogCapState }
  | { kind: 'not_found' }
  /** this machine did not run that attempt */
  | { kind: 'not_holder' };

export interface AppendLogsRef {
  userId: string;
  jobId: string;
  machineId: string;
  now: number;
  /** bytes kept per attempt */
  capBytes: number;
}

/** The bytes a line takes against the cap: its UTF-8 text and its newline. */
export const lineBytes = (text: string): number => Buffer.byteLength(text, 'utf8') + 1;

/** Whether `machineId` ran attempt `attempt` of the job (it holds it now, or its claim is in the events). */
async function ranAttempt(trx: Transaction<Database>, job: { id: string; attempt: number; machine_id: string | null }, attempt: number, machineId: string): Promise<boolean> {
  if (attempt > job.attempt) return false;
  if (attempt === job.attempt && job.machine_id === machineId) return true;
  const claim = await trx
    .selectFrom('job_events')
    .select('id')
    .where('job_id', '=', job.id)
    .where('attempt', '=', attempt)
    .where('type', '=', 'claimed')
    .where('machine_id', '=', machineId)
    .executeTakeFirst();
  return claim !== undefined;
}

export function appendLogs(s: StoreContext, ref: AppendLogsRef, batch: Pick<LogBatch, 'attempt' | 'lines' | 'dropped'>): Promise<AppendLogsOutcome> {
  const { jobId, machineId, now, capBytes } = ref;
  const { attempt } = batch;
  return s.transaction(async (trx): Promise<AppendLogsOutcome> => {
    const job = await trx
      .selectFrom('jobs')
      .select(['id', 'attempt', 'machine_id'])
      .where('id', '=', jobId)
      .where('user_id', '=', ref.userId)
      .executeTakeFirst();
    if (!job) return { kind: 'not_found' };
    if (!(await ranAttempt(trx, job, attempt, machineId))) return { kind: 'not_holder' };

    await trx
      .insertInto('job_log_attempts')
      .values({ job_id: jobId, attempt, machine_id: machineId, bytes: 0, lines: 0, dropped: 0, truncated: 0, last_seq: -1, updated: now })
      .onConflict((oc) => oc.columns(['job_id', 'attempt']).doNothing())
      .execute();
    const row = await trx
      .selectFrom('job_log_attempts')
      .selectAll()
      .where('job_id', '=', jobId)
      .where('attempt', '=', attempt)
      .executeTakeFirstOrThrow();

    // Lines at or below last_seq were stored (or dropped) by an earlier try of this batch.
    const fresh = batch.lines.filter((l) => l.seq > row.last_seq).sort((a, b) => a.seq - b.seq);
    let room = capBytes - row.bytes;
    let truncated = row.truncated === 1;
    const keep: (typeof fresh)[number][] = [];
    for (const line of fresh) {
      const size = lineBytes(line.text);
      // The cap ends the log: once a line does not fit, none after it is kept either.
      if (truncated || size > room) {
        truncated = true;
        continue;
      }
      keep.push(line);
      room -= size;
    }

    const stored = new Set<number>();
    for (let i = 0; i < keep.length; i += INSERT_CHUNK) {
      const chunk = keep.slice(i, i + INSERT_CHUNK).map((l) => ({ job_id: jobId, attempt, seq: l.seq, at: Date.parse(l.at), stream: l.stream, text: l.text }));
      const inserted = await trx
        .insertInto('job_log_lines')
        .values(chunk)
        .onConflict((oc) => oc.columns(['job_id', 'attempt', 'seq']).doNothing())
        .returning('seq')
        .execute();
      for (const r of inserted) stored.add(Number(r.seq));
    }
    const storedBytes = keep.filter((l) => stored.has(l.seq)).reduce((n, l) => n + lineBytes(l.text), 0);
    // The worker's own drops are counted once: with the batch's first try (which has fresh lines).
    const dropped = fresh.length - keep.length + (fresh.length > 0 || batch.lines.length === 0 ? (batch.dropped ?? 0) : 0);
    const lastSeq = fresh.length > 0 ? fresh[fresh.length - 1]!.seq : row.last_seq;
    await trx
      .updateTable('job_log_attempts')
      .set({
        bytes: sql<number>`bytes + ${storedBytes}`,
        lines: sql<number>`lines + ${stored.size}`,
        dropped: sql<number>`dropped + ${dropped}`,
        truncated: truncated ? 1 : 0,
        last_seq: sql<number>`case when last_seq > ${lastSeq} then last_seq else ${lastSeq} end`,
        updated: now,
      })
      .where('job_id', '=', jobId)
      .where('attempt', '=', attempt)
      .execute();
    return { kind: 'applied', accepted: stored.size, cap: { stored_bytes: row.bytes + storedBytes, cap_bytes: capBytes, truncated } };
  });
}

export interface ReadLogsQuery {
  attempt?: number;
  after: number;
  limit: number;
  tail?: number;
}

export interface LogRead {
  attempt: number;
  /** every attempt with output, oldest first */
  attempts: LogAttemptRow[];
  /** the machine that runs or ran this attempt, also before it shipped its first line */
  machineId: string | null;
  lines: LogLineRow[];
  more: boolean;
  /** no more lines will come for this attempt */
  done: boolean;
}

/** A page of one attempt's lines; undefined when the job is not the user's. */
export async function readLogs(s: StoreContext, userId: string, jobId: string, q: ReadLogsQuery): Promise<LogRead | undefined> {
  const job = await s.getJob(userId, jobId);
  if (!job) return undefined;
  const attempts = await s.db.selectFrom('job_log_attempts').selectAll().where('job_id', '=', jobId).orderBy('attempt').execute();
  const attempt = q.attempt ?? attempts.at(-1)?.attempt ?? job.attempt;
  const of = s.db.selectFrom('job_log_lines').selectAll().where('job_id', '=', jobId).where('attempt', '=', attempt);
  let lines: LogLineRow[];
  let more = false;
  if (q.tail !== undefined) {
    lines = (await of.orderBy('seq', 'desc').limit(q.tail).execute()).reverse();
  } else {
    lines = await of.where('seq', '>', q.after).orderBy('seq').limit(q.limit + 1).execute();
    more = lines.length > q.limit;
    if (more) lines = lines.slice(0, q.limit);
  }
  const done =
    (FINISHED_STATUSES as readonly string[]).includes(job.status) ||
    job.attempt > attempt ||
    // released or failed back: its worker shipped its last lines before saying so
    (job.status === 'running' && job.machine_id === null);
  const machineId = attempts.find((a) => a.attempt === attempt)?.machine_id ?? (attempt === job.attempt ? job.machine_id : null);
  return { attempt, attempts, machineId, lines: lines.map((l) => ({ ...l, seq: Number(l.seq) })), more, done };
}
