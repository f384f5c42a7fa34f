// drover submit: one job (or N templated copies) from flags and/or a JSON/YAML job file.
import { DroverApiError, type DroverClient } from '@drover/sdk';
import type { Job, JobDefinition } from '@drover/protocol';
import { Command, Option } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { CliError, action, paint, printJson } from '../../lib/output.js';
import { openQueue, sqsFailure, withQueueOptions, type QueueFlags } from '../../lib/queue.js';
import { DEFAULT_HISTORY, USAGE, appendHistory, collect, describeRejection, wholeNumber } from './common.js';
import {
  applyFlags,
  checkDefinitions,
  instantiate,
  readJobFile,
  requireEssentials,
  type DefinitionFlags,
} from './definition.js';

interface SubmitFlags extends CommonFlags, DefinitionFlags, QueueFlags {
  count?: number;
  first: number;
  history: string | false;
  dryRun?: boolean;
}

/** The coordinator takes at most 1000 jobs per batch and 1 MiB per body by default. */
const BATCH_ITEMS = 1000;
const BATCH_BYTES = 512 * 1024;

export function submitCommand(): Command {
  const cmd = new Command('submit')
    .description('Queue a job from flags and/or a JSON or YAML job file (flags override the file); --count N queues N copies')
    .argument('[file]', 'job definition file (.json, or YAML); it may hold one job or a list of jobs')
    .option('-c, --command <command>', 'the program to run (no shell is involved)')
    .option('-a, --arg <value>', 'an argument (repeatable, in order; replaces the file\'s arguments)', collect)
    .option('-e, --env <KEY=VALUE>', 'an environment variable (repeatable; added to the file\'s environment)', collect)
    .option('-g, --group <id>', 'container group whose nodes may run it (default: the file, then the profile\'s container_group_id)')
    .option('--heartbeat-interval <seconds>', 'seconds between heartbeats (default 30)', wholeNumber('--heartbeat-interval', 1, 86400))
    .option('--max-failures <n>', 'failed attempts before the job is failed (default 3)', wholeNumber('--max-failures', 1, 1000))
    .option('--webhook <url>', 'URL told of running/completed/failed/canceled')
    .option('--compression', 'compress synced files')
    .option('--no-compression', 'do not compress synced files')
    .option('--sync-before <spec>', 'download before the job: bucket=B,prefix=P,local_path=DIR[,pattern=GLOB] (repeatable)', collect)
    .option('--sync-during <spec>', 'upload while the job runs: bucket=B,prefix=P,local_path=DIR[,pattern=GLOB] (repeatable)', collect)
    .option('--sync-after <spec>', 'upload after exit 0: bucket=B,prefix=P,local_path=DIR[,pattern=GLOB] (repeatable)', collect)
    .option('--no-sync', 'send sync: {} (the application manages its own data)');
  for (const kind of ['input', 'checkpoint', 'output']) {
    cmd.addOption(new Option(`--${kind}-bucket <bucket>`, `legacy ${kind}_bucket field`).hideHelp());
    cmd.addOption(new Option(`--${kind}-prefix <prefix>`, `legacy ${kind}_prefix field`).hideHelp());
  }
  cmd
    .option('-n, --count <n>', 'queue n copies in one all-or-nothing batch, {i} = first..first+n-1 (see below)', wholeNumber('--count', 1, 1_000_000))
    .option('--first <i>', 'first value of {i} with --count', wholeNumber('--first', 0), 0)
    .option('--history <file>', 'append the new job ids to this file', DEFAULT_HISTORY)
    .option('--no-history', 'do not record the ids')
    .option('--dry-run', 'print the definitions that would be sent, send nothing');
  withConnection(cmd);
  withQueueOptions(cmd);
  cmd.addHelpText(
    'after',
    `
With --count, "{i}" is replaced by the copy's number in the arguments, the environment values,
every string of the sync entries (bucket, prefix, local_path, pattern) and the legacy
*_bucket/*_prefix fields; not in the command, container group, webhook or environment names.
Without --count, "{i}" is sent as it is.

Output: the new job ids, one per line (--json: the job document; with --count, the list).

With --queue, the jobs go to that AWS SQS queue as messages (the body is the job definition) for
\`drover worker --queue\` to run; each job's id is its MessageId, and the container group defaults
to the queue's name. Batches of 10 messages.

Examples:
  drover submit -g my-group -c python -a train.py -a --shard={i} -e OUT=runs/{i} \\
    --sync-after bucket=results,prefix=runs/{i}/,local_path=out --count 8
  drover submit job.json --count 100 --queue https://sqs.us-east-2.amazonaws.com/123456789012/jobs
`,
  );
  cmd.action(action('submit', (file: string | undefined, flags: SubmitFlags) => submit(file, flags)));
  return cmd;
}

async function submit(file: string | undefined, flags: SubmitFlags): Promise<void> {
  const drafts = file !== undefined ? readJobFile(file) : [{}];
  if (drafts.length > 1 && flags.count !== undefined) throw new CliError(`--count needs a single job definition; ${file} holds ${drafts.length}`, USAGE);
  // The connection is resolved before the group: the profile may name it. With --dry-run a
  // missing connection is no error. An SQS queue needs no coordinator; its name is the default group.
  let conn: ReturnType<typeof connect> | undefined;
  let defaultGroup: string | undefined;
  if (flags.queue !== undefined) {
    defaultGroup = await queueName(flags.queue);
  } else {
    try {
      conn = connect(flags);
    } catch (err) {
      if (!flags.dryRun) throw err;
    }
    defaultGroup = conn?.connection.profile?.container_group_id;
  }
  const bases = drafts.map((d) => requireEssentials(applyFlags(d, flags, defaultGroup), file));
  let defs: JobDefinition[];
  if (flags.count !== undefined) {
    const base = bases[0]!;
    defs = Array.from({ length: flags.count }, (_, k) => instantiate(base, flags.first + k));
  } else {
    defs = bases;
  }
  const numbered = defs.length > 1;
  checkDefinitions(defs, numbered, flags.count !== undefined ? flags.first : 0);
  if (flags.dryRun) {
    for (const warning of absolutePathWarnings(defs[0]!)) process.stderr.write(paint('dim', `warning: ${warning}\n`, process.stderr));
    printJson(flags.count === undefined && defs.length === 1 ? defs[0] : defs);
    return;
  }
  const history = flags.history === false ? undefined : flags.history;
  const batched = flags.count !== undefined || defs.length > 1;
  if (flags.queue !== undefined) return submitToQueue(defs, flags, history, batched);
  const { client } = conn!;
  const jobs = batched ? await submitBatches(client, defs, history, flags.count !== undefined ? flags.first : 0) : [await submitOne(client, defs[0]!, history)];
  if (flags.json) {
    printJson(batched ? jobs : jobs[0]);
  } else {
    process.stdout.write(jobs.map((j) => `${j.id}\n`).join(''));
    const groups = [...new Set(jobs.map((j) => j.container_group_id))].join(', ');
    const where = history ? `; ids appended to ${history}` : '';
    process.stderr.write(paint('dim', `queued ${jobs.length} job${jobs.length === 1 ? '' : 's'} for container group ${groups}${where}\n`, process.stderr));
  }
  // The coordinator says when no worker serves the group (a typo in -g): said at once, not after an hour.
  for (const notice of new Set(jobs.map((j) => j.notice).filter((n): n is string => n !== undefined))) {
    process.stderr.write(paint('yellow', `warning: ${notice}\n`, process.stderr));
  }
}

/**
 * An absolute local_path is accepted here, but a worker runs the job only if the path lies inside
 * its data root (DROVER_DATA_ROOT); on any other node the job fails. Said before it is sent.
 */
function absolutePathWarnings(def: JobDefinition): string[] {
  const out: string[] = [];
  for (const phase of ['before', 'during', 'after'] as const) {
    for (const [i, e] of (def.sync?.[phase] ?? []).entries()) {
      if (e.local_path.startsWith('/')) {
        out.push(`sync.${phase}[${i}].local_path ${JSON.stringify(e.local_path)} is absolute: a worker runs the job only if it lies inside the worker's data root (DROVER_DATA_ROOT); a relative path is relative to it`);
      }
    }
  }
  return out;
}

async function submitOne(client: DroverClient, def: JobDefinition, history: string | undefined): Promise<Job> {
  let job: Job;
  try {
    job = await client.createJob(def);
  } catch (err) {
    throw rejection(err, false, 0);
  }
  if (history) appendHistory(history, [job.id]);
  return job;
}

/**
 * Batches of at most 1000 jobs and 512 KiB: each one all or nothing. The ids of every batch are
 * recorded as soon as it is queued, so a failure half way loses none of them.
 */
async function submitBatches(client: DroverClient, defs: JobDefinition[], history: string | undefined, first: number): Promise<Job[]> {
  const jobs: Job[] = [];
  let start = 0;
  // A JSON array: 2 bytes of brackets, and a comma after each item.
  const sizes = defs.map((d) => Buffer.byteLength(JSON.stringify(d)) + 1);
  while (start < defs.length) {
    const end = batchEnd(sizes, start, BATCH_ITEMS, BATCH_BYTES - 2);
    let queued: Job[];
    try {
      queued = await client.createJobs(defs.slice(start, end));
    } catch (err) {
      const e = rejection(err, true, first + start);
      if (jobs.length === 0) throw e;
      const where = history ? ` (their ids are in ${history})` : '';
      throw new CliError(`${e instanceof Error ? e.message : String(e)}; ${jobs.length} of ${defs.length} jobs were queued before this batch${where}`);
    }
    if (history) appendHistory(history, queued.map((j) => j.id));
    jobs.push(...queued);
    start = end;
  }
  return jobs;
}

/** Where the batch that starts at `start` ends: at most `maxItems` items and `maxBytes` (one item at least). */
function batchEnd(sizes: readonly number[], start: number, maxItems: number, maxBytes: number): number {
  let end = start;
  let bytes = 0;
  while (end < sizes.length && end - start < maxItems) {
    const size = sizes[end]!;
    if (end > start && bytes + size > maxBytes) break;
    bytes += size;
    end++;
  }
  return end;
}

function rejection(err: unknown, batch: boolean, offset: number): unknown {
  if (err instanceof DroverApiError && err.status === 400) return new CliError(describeRejection(err, batch, offset));
  if (err instanceof DroverApiError && err.status === 413) {
    return new CliError('the job definition is larger than the coordinator accepts (HTTP 413); make it smaller or submit fewer at once');
  }
  return err;
}

/** The queue's name (the default container group of its jobs); a spec that names no queue is a usage error. */
async function queueName(spec: string): Promise<string> {
  const { parseQueueSpec, SqsSettingError } = await import('@drover/worker/sqs');
  try {
    return parseQueueSpec(spec).name;
  } catch (err) {
    throw sqsFailure(err, spec, SqsSettingError);
  }
}

/** SQS takes at most 10 messages and 256 KiB per SendMessageBatch. */
const SQS_BATCH_ITEMS = 10;
const SQS_BATCH_BYTES = 256 * 1024;

/**
 * The definitions as messages on the SQS queue, 10 to a request. The ids of every batch are
 * recorded as soon as it is queued, so a failure half way loses none of them.
 */
async function submitToQueue(defs: JobDefinition[], flags: SubmitFlags, history: string | undefined, batched: boolean): Promise<void> {
  const { SqsBatchError } = await import('@drover/worker/sqs');
  const queue = await openQueue(flags);
  const ids: string[] = [];
  try {
    const bodies = defs.map((d) => JSON.stringify(d));
    const sizes = bodies.map((b) => Buffer.byteLength(b));
    let start = 0;
    while (start < bodies.length) {
      const end = batchEnd(sizes, start, SQS_BATCH_ITEMS, SQS_BATCH_BYTES);
      let queued: string[];
      try {
        queued = await queue.sendBatch(bodies.slice(start, end));
      } catch (err) {
        const sent = err instanceof SqsBatchError ? err.ids.filter((id): id is string => id !== undefined) : [];
        if (history) appendHistory(history, sent);
        const done = ids.length + sent.length;
        const where = history && done > 0 ? ` (their ids are in ${history})` : '';
        const failure = sqsFailure(err, queue.url);
        const what = err instanceof SqsBatchError ? `job ${start + err.index}: ${err.message}` : failure instanceof Error ? failure.message : String(failure);
        throw new CliError(`${what}${done > 0 ? `; ${done} of ${defs.length} jobs were queued${where}` : ''}`);
      }
      if (history) appendHistory(history, queued);
      ids.push(...queued);
      start = end;
    }
  } finally {
    queue.close();
  }
  if (flags.json) {
    const docs = ids.map((id) => ({ id, queue_url: queue.url }));
    printJson(batched ? docs : docs[0]);
    return;
  }
  process.stdout.write(ids.map((id) => `${id}\n`).join(''));
  const where = history ? `; ids appended to ${history}` : '';
  process.stderr.write(paint('dim', `queued ${ids.length} job${ids.length === 1 ? '' : 's'} on SQS queue ${queue.url}${where}\n`, process.stderr));
}
