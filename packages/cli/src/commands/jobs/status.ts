// drover status: a table of the given jobs (or those of the history file); --watch refreshes it
// until every one of them is finished.
import { DroverApiError, type DroverClient } from '@drover/sdk';
import { JOB_STATUSES, type Job } from '@drover/protocol';
import { Command, InvalidArgumentError } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { CliError, action, formatTable, paint, paintStatus } from '../../lib/output.js';
import { DEFAULT_HISTORY, FINISHED, USAGE, ago, checkJobIds, isJobId, mapLimit, progressText, readHistory } from './common.js';

/** --watch's value: seconds, or (commander takes the word after --watch as its value) a job id. */
interface Watch {
  seconds: number;
  id?: string;
}

interface StatusFlags extends CommonFlags {
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
  cmd.addHelpText(
    'after',
    `
Columns: attempt = the lease number (+1 on every claim); failures = failed attempts / max_failures;
heartbeat = age of the last heartbeat; progress = what the job last reported.
Exit code 0 once shown (with --watch: once every job is completed, failed or canceled); 1 when a
job does not exist. With --json: the job documents (with --watch, one compact JSON line per round).
`,
  );
  cmd.action(action('status', (ids: string[], flags: StatusFlags) => status(ids, flags)));
  return cmd;
}

type Row = { id: string; job?: Job };

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
  const { client } = connect(flags);
  const tty = Boolean(process.stdout.isTTY);
  for (let round = 0; ; round++) {
    const rows = await fetchRows(client, ids);
    const finished = rows.every((r) => !r.job || FINISHED.has(r.job.status));
    if (flags.json) {
      const docs = rows.map((r) => r.job ?? { id: r.id, error: 'not_found' });
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
      return { id, job: await client.getJob(id) };
    } catch (err) {
      if (err instanceof DroverApiError && err.status === 404) return { id };
      throw err;
    }
  });
}

function render(rows: Row[]): string {
  const now = Date.now();
  const table = formatTable(rows, [
    { header: 'ID', value: (r) => r.id },
    { header: 'STATUS', value: (r) => (r.job ? paintStatus(r.job.status) : paint('red', 'not found')) },
    { header: 'ATTEMPT', value: (r) => (r.job ? String(r.job.attempt) : '-'), align: 'right' },
    { header: 'FAILURES', value: (r) => (r.job ? `${r.job.num_failures}/${r.job.max_failures}` : '-'), align: 'right' },
    { header: 'MACHINE', value: (r) => r.job?.machine_id ?? '-' },
    { header: 'HEARTBEAT', value: (r) => (r.job ? ago(r.job.heartbeat, now) : '-') },
    { header: 'PROGRESS', value: (r) => (r.job ? progressText(r.job) : '-') },
  ]);
  const count = (s: string) => rows.filter((r) => (r.job?.status ?? 'not found') === s).length;
  const summary = [...JOB_STATUSES, 'not found']
    .map((s) => [s, count(s)] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  return `${table}${paint('dim', `${rows.length} job${rows.length === 1 ? '' : 's'}: ${summary}`)}\n`;
}
