// drover submit: one job (or N templated copies) from flags and/or a JSON/YAML job file.
import { DroverApiError, type DroverClient } from '@drover/sdk';
import type { Job, JobDefinition } from '@drover/protocol';
import { Command, Option } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { CliError, action, paint, printJson } from '../../lib/output.js';
import { DEFAULT_HISTORY, USAGE, appendHistory, collect, describeRejection, wholeNumber } from './common.js';
import {
  applyFlags,
  checkDefinitions,
  instantiate,
  readJobFile,
  requireEssentials,
  type DefinitionFlags,
} from './definition.js';

interface SubmitFlags extends CommonFlags, DefinitionFlags {
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
  cmd.addHelpText(
    'after',
    `
With --count, "{i}" is replaced by the copy's number in the arguments, the environment values,
every string of the sync entries (bucket, prefix, local_path, pattern) and the legacy
*_bucket/*_prefix fields; not in the command, container group, webhook or environment names.
Without --count, "{i}" is sent as it is.

Output: the new job ids, one per line (--json: the job document; with --count, the list).

Example:
  drover submit -g my-group -c python -a train.py -a --shard={i} -e OUT=runs/{i} \\
    --sync-after bucket=results,prefix=runs/{i}/,local_path=out --count 8
`,
  );
  cmd.action(action('submit', (file: string | undefined, flags: SubmitFlags) => submit(file, flags)));
  return cmd;
}

async function submit(file: string | undefined, flags: SubmitFlags): Promise<void> {
  const drafts = file !== undefined ? readJobFile(file) : [{}];
  if (drafts.length > 1 && flags.count !== undefined) throw new CliError(`--count needs a single job definition; ${file} holds ${drafts.length}`, USAGE);
  // The connection is resolved before the group: the profile may name it. With --dry-run a
  // missing connection is no error.
  let conn: ReturnType<typeof connect> | undefined;
  try {
    conn = connect(flags);
  } catch (err) {
    if (!flags.dryRun) throw err;
  }
  const defaultGroup = conn?.connection.profile?.container_group_id;
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
    printJson(flags.count === undefined && defs.length === 1 ? defs[0] : defs);
    return;
  }
  const { client } = conn!;
  const history = flags.history === false ? undefined : flags.history;
  const batched = flags.count !== undefined || defs.length > 1;
  const jobs = batched ? await submitBatches(client, defs, history, flags.count !== undefined ? flags.first : 0) : [await submitOne(client, defs[0]!, history)];
  if (flags.json) {
    printJson(batched ? jobs : jobs[0]);
  } else {
    process.stdout.write(jobs.map((j) => `${j.id}\n`).join(''));
    const groups = [...new Set(jobs.map((j) => j.container_group_id))].join(', ');
    const where = history ? `; ids appended to ${history}` : '';
    process.stderr.write(paint('dim', `queued ${jobs.length} job${jobs.length === 1 ? '' : 's'} for container group ${groups}${where}\n`, process.stderr));
  }
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
  while (start < defs.length) {
    let end = start;
    let bytes = 2;
    while (end < defs.length && end - start < BATCH_ITEMS) {
      const size = Buffer.byteLength(JSON.stringify(defs[end])) + 1;
      if (end > start && bytes + size > BATCH_BYTES) break;
      bytes += size;
      end++;
    }
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

function rejection(err: unknown, batch: boolean, offset: number): unknown {
  if (err instanceof DroverApiError && err.status === 400) return new CliError(describeRejection(err, batch, offset));
  if (err instanceof DroverApiError && err.status === 413) {
    return new CliError('the job definition is larger than the coordinator accepts (HTTP 413); make it smaller or submit fewer at once');
  }
  return err;
}
