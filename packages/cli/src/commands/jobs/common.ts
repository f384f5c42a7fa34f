// Shared by the job and admin commands: usage-error handling (exit 2, one line), the history file,
// API errors rewritten so they name the field or the job, and small formatting helpers.
import { DroverApiError } from '@drover/sdk';
import type { Job } from '@drover/protocol';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CliError, formatDuration } from '../../lib/output.js';

/** Exit code of a usage error (bad flag, missing argument, nothing to act on). */
export const USAGE = 2;

export const DEFAULT_HISTORY = 'job_history.txt';

/**
 * Commander's own usage errors (unknown option, bad option value, missing argument) become one line
 * `drover <command>: ...` and exit code 2, for this command and every subcommand under it.
 */
export function usageErrors(cmd: Command, name = cmd.name()): Command {
  cmd.configureOutput({
    outputError: (str, write) => write(`drover ${name}: ${str.trim().replace(/^error: /, '').replace(/\n+/g, ' ')}\n`),
  });
  cmd.exitOverride((err) => {
    if (err.exitCode === 0) throw err;
    throw new CommanderError(USAGE, err.code, err.message);
  });
  for (const sub of cmd.commands) usageErrors(sub, `${name} ${sub.name()}`);
  return cmd;
}

/** Option parser: a whole number in [min, max], the error naming the flag. */
export function wholeNumber(flag: string, min: number, max?: number) {
  const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`${flag} must be a whole number ${range}`);
    }
    return n;
  };
}

/** Option parser for repeatable flags. */
export function collect(v: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), v];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isJobId = (s: string) => UUID.test(s);

/** Job ids must look like ids before anything is sent: a typo is named, not answered with a 400. */
export function checkJobIds(ids: readonly string[]): void {
  for (const id of ids) if (!isJobId(id)) throw new CliError(`${JSON.stringify(id)} is not a job id (a UUID)`, USAGE);
}

/** Appends ids to the history file, one per line (the seeds' job_history.txt). */
export function appendHistory(file: string, ids: readonly string[]): void {
  if (ids.length === 0) return;
  try {
    appendFileSync(file, ids.map((id) => `${id}\n`).join(''));
  } catch (err) {
    throw new CliError(`cannot append to history file ${file}: ${(err as Error).message}`);
  }
}

/**
 * The ids of a history file: one per line; blank lines and `#` comments skipped; the first word of
 * a line is the id. `undefined` when the file does not exist.
 */
export function readHistory(file: string): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read history file ${file}: ${(err as Error).message}`);
  }
  const ids: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const word = line.trim().split(/\s+/)[0] ?? '';
    if (word === '' || word.startsWith('#')) return;
    if (!isJobId(word)) throw new CliError(`history file ${file} line ${i + 1}: ${JSON.stringify(word)} is not a job id`);
    ids.push(word);
  });
  return ids;
}

export function historyPath(file: string): string {
  return path.resolve(file);
}

/** "body/sync/before/0/bucket" → "sync.before[0].bucket" */
export function fieldPath(pointer: string): string {
  let out = '';
  for (const part of pointer.split('/').filter((p) => p !== '')) {
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

/**
 * A 400 from POST /jobs or /jobs/batch, as one line naming the field (and the job of a batch):
 * "body/3/max_failures must be >= 1" → "job 3: max_failures must be >= 1".
 */
export function describeRejection(err: DroverApiError, batch: boolean, offset = 0): string {
  const m = /^body((?:\/[^\s/]+)*)(?=\s|$)(.*)$/s.exec(err.message);
  if (!m) return `the coordinator rejected the job: ${err.message}`;
  let pointer = m[1] ?? '';
  let job = '';
  if (batch) {
    const im = /^\/(\d+)(\/.*)?$/.exec(pointer);
    if (im) {
      job = `job ${Number(im[1]) + offset}: `;
      pointer = im[2] ?? '';
    }
  }
  const field = fieldPath(pointer);
  return `${job}${field === '' ? 'the job definition' : `field ${field}`}${m[2] ?? ''} (rejected by the coordinator)`;
}

/** 404 on a job route → "job <id> not found"; other errors pass through. */
export function jobError(err: unknown, id: string): unknown {
  if (err instanceof DroverApiError && err.status === 404) return new CliError(`job ${id} not found`);
  return err;
}

/** Runs fn over items with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return out;
}

/** Statuses a job never leaves (dead-lettered: an SQS queue's job, see drover status --queue). */
export const FINISHED = new Set(['completed', 'canceled', 'failed', 'dead-lettered']);

/** "12s ago" from an ISO timestamp; "-" for null. */
export function ago(ts: string | null, now = Date.now()): string {
  if (!ts) return '-';
  return `${formatDuration((now - Date.parse(ts)) / 1000)} ago`;
}

/**
 * The HEARTBEAT column: the age of the last heartbeat of a running job ("none yet" before its
 * first), and for a finished job when it ended ("completed 3m ago"), not a heartbeat age that keeps
 * counting after the end.
 */
export function heartbeatText(
  job: { status: string; heartbeat: string | null } & Partial<Pick<Job, 'num_heartbeats' | 'completed' | 'failed' | 'canceled'>>,
  now = Date.now(),
): string {
  const ended = job.status === 'completed' || job.status === 'failed' || job.status === 'canceled' ? job[job.status] : undefined;
  // (An SQS job record has no end times or heartbeat count: its last heartbeat is what it has.)
  if (ended) return `${job.status} ${ago(ended, now)}`;
  if (job.status === 'running' && job.num_heartbeats === 0) return 'none yet';
  return job.status === 'pending' ? '-' : ago(job.heartbeat, now);
}

export function progressText(job: Pick<Job, 'progress'>, width = 40): string {
  const p = job.progress;
  if (!p) return '-';
  const pct = `${(p.fraction * 100).toFixed(p.fraction < 0.1 && p.fraction > 0 ? 1 : 0)}%`;
  return p.message ? `${pct} ${truncate(p.message, width)}` : pct;
}

export function truncate(s: string, width: number): string {
  const flat = s.replace(/\s+/g, ' ');
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}

/** How a shell would show the command line (for display only; nothing is ever run through a shell). */
export function commandLine(job: Pick<Job, 'command' | 'arguments'>): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return [job.command, ...job.arguments].map(quote).join(' ');
}
