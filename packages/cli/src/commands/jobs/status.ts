// drover status: a table of the given jobs (or those of the history file); --watch refreshes it
// until every one of them is finished.
import { DroverApiError, type DroverClient } from '@drover/sdk';
import { JOB_STATUSES, SQS_JOB_STATUSES, type Job, type SqsJobRecord } from '@drover/protocol';
import { Command, InvalidArgumentError } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { CliError, action, formatTable, paint, paintStatus } from '../../lib/output.js';
import { openRecords, withQueueOptions, type QueueFlags } from '../../lib/queue.js';
import { DEFAULT_HISTORY, FINISHED, USAGE, checkJobIds, heartbeatText, isJobId, mapLimit, progressText, readHistory } from './common.js';

/** --watch's value: seconds, or (commander takes the word after --watch as its value) a job id. */
interface Watch {
  seconds: number;
  id?: string;
}

interface StatusFlags extends CommonFlags, QueueFlags {
  history?: string;
  watch?: Watch | true;
}

export const DEFAULT_WATCH_SECONDS = 5;

function watchValue(v: string): Watch {
  if (isJobId(v)) return { seconds: DEFAULT_WATCH_SECONDS, id: v };
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0.1 || n > 86400) throw new InvalidArgumentError('--watch takes seconds between refreshes, from 0.1 to 86400');
  return { seconds: n };
}

export function statusCommand(): Command {
  const cmd = new Command('status')
    .description(`Show the status of jobs: the ids given, or every id in the history file (default ./${DEFAULT_HISTORY})`)
    .argument('[ids...]', 'job ids')
    .option('--history <file>', `read the ids from this file (default ./${DEFAULT_HISTORY} when no ids are given)`)
    .option('-w, --watch [seconds]', `refresh every few seconds (default ${DEFAULT_WATCH_SECONDS}) until all the jobs are finished`, watchValue);
  withConnection(cmd);
  withQueueOptions(cmd, { records: true });
  cmd.addHelpText(
    'after',
    `
Columns: attempt = the lease number (+1 on every claim); failures = failed attempts / max_failures;
heartbeat = age of the last heartbeat of a running job ("none yet" before its first), or when a finished
job ended; progress = what the job last reported (for a finished job, what it reported at the end).
Exit code 0 once shown (with --watch: once every job is completed, failed or canceled); 1 when a
job does not exist. With --json: the job documents (with --watch, one compact JSON line per round).

With --queue, the jobs of an AWS SQS queue, from the records its workers keep in the status bucket:
running, completed or dead-lettered; a job no worker has received yet has no record and shows as
pending. With --json: the records.
`,
  );
  cmd.action(action('status', (ids: string[], flags: StatusFlags) => status(ids, flags)));
  return cmd;
}

/** What a row shows: a coordinator's job document, or an SQS queue's job record. */
type View = Pick<Job, 'attempt' | 'num_failures' | 'max_failures' | 'machine_id' | 'heartbeat' | 'progress'> &
  Partial<Pick<Job, 'num_heartbeats' | 'completed' | 'failed' | 'canceled' | 'notice'>> & { status: string };
type Row = { id: string; job?: View; doc?: unknown };
type Fetch = (ids: string[]) => Promise<Row[]>;

async function status(argIds: string[], flags: StatusFlags): Promise<void> {
  const watch = flags.watch === true ? { seconds: DEFAULT_WATCH_SECONDS } : flags.watch;
  const given = [...argIds, ...(watch?.id ? [watch.id] : [])];
  checkJobIds(given);
  let ids = given;
  if (flags.history !== undefined || ids.length === 0) {
    const file = flags.history ?? DEFAULT_HISTORY;
    const fromFile = readHistory(file);
    if (fromFile === undefined) {
      throw new CliError(
        flags.history !== undefined ? `history file ${file} does not exist` : `no job ids: pass ids, or --history FILE (there is no ./${DEFAULT_HISTORY} here)`,
        USAGE,
      );
    }
    ids = [...ids, ...fromFile];
  }
  ids = [...new Set(ids)];
  if (ids.length === 0) throw new CliError(`no job ids: the history file ${flags.history ?? DEFAULT_HISTORY} is empty`, USAGE);
  const fetch: Fetch = flags.queue !== undefined ? await recordFetcher(flags) : (list) => fetchRows(connect(flags).client, list);
  const tty = Boolean(process.stdout.isTTY);
  for (let round = 0; ; round++) {
    const rows = await fetch(ids);
    const finished = rows.every((r) => !r.job || FINISHED.has(r.job.status));
    if (flags.json) {
      const docs = rows.map((r) => r.doc ?? { id: r.id, error: 'not_found' });
      process.stdout.write(watch ? `${JSON.stringify(docs)}\n` : `${JSON.stringify(docs, null, 2)}\n`);
    } else {
      let out = '';
      if (watch && tty) out += '\x1b[H\x1b[2J';
      else if (round > 0) out += '\n';
      if (watch) out += `${paint('dim', `${new Date().toLocaleTimeString()}  every ${watch.seconds}s until all are finished`)}\n`;
      out += render(rows);
      process.stdout.write(out);
    }
    if (!watch || finished) {
      const missing = rows.filter((r) => !r.job);
      if (missing.length > 0) {
        for (const r of missing) process.stderr.write(`drover status: job ${r.id} not found\n`);
        process.exitCode = 1;
      }
      return;
    }
    await new Promise((r) => setTimeout(r, watch.seconds * 1000));
  }
}

async function fetchRows(client: DroverClient, ids: string[]): Promise<Row[]> {
  return mapLimit(ids, 16, async (id) => {
    try {
      const job = await client.getJob(id);
      return { id, job, doc: job };
    } catch (err) {
      if (err instanceof DroverApiError && err.status === 404) return { id };
      throw err;
    }
  });
}

/** An SQS job's row: its record, or pending while it has none. */
export function recordView(id: string, r: SqsJobRecord | undefined): Row {
  if (!r) return { id, job: { status: 'pending', attempt: 0, num_failures: 0, max_failures: 0, machine_id: null, heartbeat: null, progress: null }, doc: { id, status: 'pending' } };
  return { id, job: r, doc: r };
}

async function recordFetcher(flags: StatusFlags): Promise<Fetch> {
  const { records } = await openRecords(flags);
  return (ids) => mapLimit(ids, 16, async (id) => recordView(id, await records.get(id)));
}

function render(rows: Row[]): string {
  const now = Date.now();
  const table = formatTable(rows, [
    { header: 'ID', value: (r) => r.id },
    { header: 'STATUS', value: (r) => (r.job ? paintStatus(r.job.status) : paint('red', 'not found')) },
    { header: 'ATTEMPT', value: (r) => (r.job ? String(r.job.attempt) : '-'), align: 'right' },
    { header: 'FAILURES', value: (r) => (r.job && r.job.max_failures > 0 ? `${r.job.num_failures}/${r.job.max_failures}` : '-'), align: 'right' },
    { header: 'MACHINE', value: (r) => r.job?.machine_id ?? '-' },
    { header: 'HEARTBEAT', value: (r) => (r.job ? heartbeatText(r.job, now) : '-') },
    { header: 'PROGRESS', value: (r) => (r.job ? progressText(r.job) : '-') },
  ]);
  const count = (s: string) => rows.filter((r) => (r.job?.status ?? 'not found') === s).length;
  const summary = [...new Set([...JOB_STATUSES, ...SQS_JOB_STATUSES, 'not found'])]
    .map((s) => [s, count(s)] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  const notices = [...new Set(rows.map((r) => r.job?.notice).filter((n): n is string => n !== undefined))].map((n) => paint('yellow', `note: ${n}\n`));
  return `${table}${paint('dim', `${rows.length} job${rows.length === 1 ? '' : 's'}: ${summary}`)}\n${notices.join('')}`;
}
