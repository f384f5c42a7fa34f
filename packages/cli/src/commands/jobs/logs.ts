// drover logs JOB: a job's output, as its worker shipped it (GET /jobs/:id/logs): the newest
// attempt's lines (or --attempt N's, or the last --tail N), and with -f the lines as they come,
// moving on to the next attempt when another node takes the job over, until the job ends.
// Like `docker logs`, the job's stdout goes to stdout and its stderr to stderr.
import type { LogLine, LogPage } from '@drover/protocol';
import type { DroverClient } from '@drover/sdk';
import { Command } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { action, formatBytes, paint } from '../../lib/output.js';
import { FINISHED, checkJobIds, jobError, wholeNumber } from './common.js';

interface LogsFlags extends CommonFlags {
  follow?: boolean;
  attempt?: number;
  tail?: number;
}

const FOLLOW_WAIT_S = 20;
/** With -f, after an attempt ended: how often to look for the next one. */
const NEXT_ATTEMPT_POLL_MS = 2000;

export function logsCommand(): Command {
  const cmd = new Command('logs')
    .description("Print a job's output (its stdout and stderr, as the worker shipped them); -f follows it")
    .argument('<job>', 'job id')
    .option('-f, --follow', 'keep printing lines as they come, through later attempts, until the job ends')
    .option('--attempt <n>', 'the output of this attempt (default: the newest)', wholeNumber('--attempt', 1))
    .option('--tail <n>', 'only the last n lines (then follow from there with -f)', wholeNumber('--tail', 1, 5000));
  withConnection(cmd);
  cmd.addHelpText(
    'after',
    `
The coordinator keeps up to its --log-cap-mib (10 MiB by default) of output per attempt; a log
cut there says so at its end (on stderr). With --json: one JSON object per line
({attempt, seq, at, stream, text}). Exit code 0; 1 when the job does not exist.
`,
  );
  cmd.action(action('logs', (id: string, flags: LogsFlags) => logs(id, flags)));
  return cmd;
}

async function logs(id: string, flags: LogsFlags): Promise<void> {
  checkJobIds([id]);
  const { client } = connect(flags);
  const print = (attempt: number, lines: LogLine[]) => {
    for (const l of lines) {
      if (flags.json) process.stdout.write(`${JSON.stringify({ attempt, ...l })}\n`);
      else (l.stream === 'stderr' ? process.stderr : process.stdout).write(`${l.text}\n`);
    }
  };
  const note = (text: string) => {
    if (!flags.json) process.stderr.write(`${paint('dim', text, process.stderr)}\n`);
  };

  let attempt = flags.attempt;
  let tail = flags.tail;
  for (;;) {
    let page = await read(client, id, { attempt, ...(tail !== undefined ? { tail } : { after: -1 }) });
    if (page.attempt === 0) {
      note('(the job has not run yet)');
      if (!flags.follow) return;
      const first = await nextAttempt(client, id, 0);
      if (first === undefined) return;
      attempt = first;
      continue;
    }
    attempt = page.attempt;
    if (flags.follow || flags.attempt === undefined) note(`── attempt ${page.attempt}${page.machine_id ? ` on ${page.machine_id}` : ''}`);
    print(page.attempt, page.lines);
    // Everything stored so far, a page at a time; then, following, the long-poll.
    while (page.more || (flags.follow && !page.done)) {
      page = await read(client, id, { attempt, after: page.next, ...(page.more ? {} : { wait: FOLLOW_WAIT_S }) });
      print(page.attempt, page.lines);
    }
    if (page.truncated) note(`(output cut at the coordinator's cap of ${formatBytes(page.cap_bytes)} for this attempt: ${page.dropped_lines} later lines were not kept)`);
    else if (page.dropped_lines > 0) note(`(${page.dropped_lines} lines were dropped on the node while the coordinator could not be reached)`);
    if (!flags.follow || flags.attempt !== undefined) return;
    // The attempt is over: the job has ended, or another attempt will take it over.
    const next = await nextAttempt(client, id, page.attempt);
    if (next === undefined) return;
    attempt = next;
    tail = undefined;
  }
}

async function read(client: DroverClient, id: string, opts: Parameters<DroverClient['jobLogs']>[1]): Promise<LogPage> {
  try {
    return await client.jobLogs(id, opts);
  } catch (err) {
    throw jobError(err, id);
  }
}

/** Waits for an attempt after `current` to have output; undefined once the job has ended without one. */
async function nextAttempt(client: DroverClient, id: string, current: number): Promise<number | undefined> {
  for (;;) {
    const newest = await read(client, id, { tail: 1 });
    if (newest.attempt > current) return newest.attempt;
    const job = await client.getJob(id).catch((err: unknown) => Promise.reject(jobError(err, id)));
    if (FINISHED.has(job.status)) {
      // Lines of a later attempt may have landed just before it ended.
      const last = await read(client, id, { tail: 1 });
      return last.attempt > current ? last.attempt : undefined;
    }
    await new Promise((r) => setTimeout(r, NEXT_ATTEMPT_POLL_MS));
  }
}
