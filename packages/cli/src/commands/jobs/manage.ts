// drover jobs list | get | cancel | purge | events | clear
import { DroverApiError, type DroverClient } from '@drover/sdk';
import { JOB_STATUSES, LEGACY_FIELDS, type Job, type JobStatus, type SqsJobRecord } from '@drover/protocol';
import { Command, Option } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { CliError, action, formatTable, paint, paintStatus, printJson } from '../../lib/output.js';
import { openRecords, withQueueOptions, type QueueFlags } from '../../lib/queue.js';
import { FINISHED, USAGE, ago, checkJobIds, commandLine, jobError, progressText, truncate, wholeNumber } from './common.js';
import { PHASES } from './definition.js';

export function jobsCommand(): Command {
  const jobs = new Command('jobs').description('List, inspect, cancel and purge jobs');
  jobs.addCommand(listCommand());
  jobs.addCommand(getCommand());
  jobs.addCommand(cancelCommand());
  jobs.addCommand(purgeCommand());
  jobs.addCommand(eventsCommand());
  jobs.addCommand(clearCommand());
  return jobs;
}

interface ListFlags extends CommonFlags {
  status?: JobStatus;
  group?: string;
  limit: number;
  all?: boolean;
  asc?: boolean;
}

const PAGE_MAX = 1000;

function listCommand(): Command {
  const cmd = new Command('list')
    .alias('ls')
    .description('List your jobs, newest first')
    .addOption(new Option('-s, --status <status>', 'only jobs with this status').choices(JOB_STATUSES))
    .option('-g, --group <id>', 'only jobs of this container group')
    .option('-l, --limit <n>', 'at most n jobs', wholeNumber('--limit', 1), 100)
    .option('--all', 'every job (page by page; ignores --limit)')
    .option('--asc', 'oldest first');
  withConnection(cmd);
  cmd.addHelpText('after', '\nExample:\n  drover jobs list --status running --group my-group\n');
  cmd.action(
    action('jobs list', async (flags: ListFlags) => {
      const { client } = connect(flags);
      const jobs = await listJobs(client, flags);
      if (flags.json) return printJson(jobs);
      if (jobs.length === 0) {
        process.stdout.write('no jobs\n');
        return;
      }
      const now = Date.now();
      process.stdout.write(
        formatTable(jobs, [
          { header: 'ID', value: (j) => j.id },
          { header: 'STATUS', value: (j) => paintStatus(j.status) },
          { header: 'GROUP', value: (j) => truncate(j.container_group_id, 24) },
          { header: 'ATTEMPT', value: (j) => String(j.attempt), align: 'right' },
          { header: 'FAILURES', value: (j) => `${j.num_failures}/${j.max_failures}`, align: 'right' },
          { header: 'MACHINE', value: (j) => j.machine_id ?? '-' },
          { header: 'CREATED', value: (j) => ago(j.created, now) },
          { header: 'PROGRESS', value: (j) => progressText(j, 24) },
          { header: 'COMMAND', value: (j) => truncate(commandLine(j), 48) },
        ]),
      );
      if (!flags.all && jobs.length === flags.limit) {
        process.stderr.write(paint('dim', `showing the first ${flags.limit}; --limit N or --all for more\n`, process.stderr));
      }
    }),
  );
  return cmd;
}

/** Pages of up to 1000 until the limit (or the end); a job seen twice (pages shift) is shown once. */
async function listJobs(client: DroverClient, flags: ListFlags): Promise<Job[]> {
  const limit = flags.all ? Infinity : flags.limit;
  const pageSize = Math.min(PAGE_MAX, limit);
  const seen = new Set<string>();
  const out: Job[] = [];
  for (let page = 1; out.length < limit; page++) {
    const { jobs } = await client.listJobs({
      ...(flags.status ? { status: flags.status } : {}),
      ...(flags.group ? { container_group_id: flags.group } : {}),
      page_size: pageSize,
      page,
      ...(flags.asc ? { asc: true } : {}),
    });
    for (const j of jobs) {
      if (seen.has(j.id) || out.length >= limit) continue;
      seen.add(j.id);
      out.push(j);
    }
    if (jobs.length < pageSize) break;
  }
  return out;
}

function getCommand(): Command {
  const cmd = new Command('get').description('Show one job in full').argument('<id>', 'job id');
  withConnection(cmd);
  withQueueOptions(cmd, { records: true });
  cmd.addHelpText(
    'after',
    '\nWith --queue: the job record the workers of that SQS queue keep (none yet: the job is pending).\n' +
      '\nExamples:\n  drover jobs get 3f2b9c4e-8a1d-4e5f-9b7a-0c1d2e3f4a5b\n' +
      '  drover jobs get 3f2b9c4e-8a1d-4e5f-9b7a-0c1d2e3f4a5b --queue "$DROVER_SQS_QUEUE_URL" --sqs-status-bucket results\n',
  );
  cmd.action(
    action('jobs get', async (id: string, flags: CommonFlags & QueueFlags) => {
      checkJobIds([id]);
      if (flags.queue !== undefined) {
        const { records } = await openRecords(flags);
        const record = await records.get(id);
        if (flags.json) return printJson(record ?? { id, status: 'pending' });
        process.stdout.write(record ? describeRecord(record) : `${id}  ${paintStatus('pending')} (no record: no worker has received it yet)\n`);
        return;
      }
      const { client } = connect(flags);
      const job = await client.getJob(id).catch((e: unknown) => Promise.reject(jobError(e, id)));
      if (flags.json) return printJson(job);
      process.stdout.write(describeJob(job));
    }),
  );
  return cmd;
}

function describeJob(j: Job): string {
  const now = Date.now();
  const when = (ts: string | null) => (ts ? `${ts} (${ago(ts, now)})` : undefined);
  const rows: [string, string | undefined][] = [
    ['id', j.id],
    ['status', paintStatus(j.status)],
    ['command', commandLine(j)],
    ['container group', j.container_group_id],
    ['attempt', String(j.attempt)],
    ['failures', `${j.num_failures} of at most ${j.max_failures}`],
    ['machine', j.machine_id ?? undefined],
    ['progress', j.progress ? progressText(j, 200) : undefined],
    ['heartbeat', when(j.heartbeat)],
    ['heartbeats', String(j.num_heartbeats)],
    ['heartbeat interval', `${j.heartbeat_interval}s`],
    ['created', when(j.created)],
    ['started', when(j.started)],
    ['completed', when(j.completed)],
    ['failed', when(j.failed)],
    ['canceled', when(j.canceled)],
    ['webhook', j.webhook ?? undefined],
    ['compression', j.compression ? 'yes' : undefined],
  ];
  for (const [k, v] of Object.entries(j.environment)) rows.push([`env ${k}`, v]);
  if (j.sync && PHASES.every((p) => !j.sync?.[p]?.length)) rows.push(['sync', '{} (the application manages its data)']);
  for (const phase of PHASES) {
    for (const e of j.sync?.[phase] ?? []) {
      const remote = `${e.bucket}/${e.prefix}${e.pattern ? ` (${e.pattern})` : ''}`;
      rows.push([`sync ${phase}`, e.direction === 'download' ? `${remote} -> ${e.local_path}` : `${e.local_path} -> ${remote}`]);
    }
  }
  for (const f of LEGACY_FIELDS) if (j[f]) rows.push([f, j[f] ?? undefined]);
  return keyValues(rows);
}

/** Aligned `key  value` lines; rows without a value are left out. */
function keyValues(rows: [string, string | undefined][]): string {
  const shown = rows.filter((r): r is [string, string] => r[1] !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${paint('bold', k.padEnd(width))}  ${v}`).join('\n') + '\n';
}

/** An SQS job's record, as describeJob shows a job document. */
function describeRecord(r: SqsJobRecord): string {
  const now = Date.now();
  const when = (ts: string | null) => (ts ? `${ts} (${ago(ts, now)})` : undefined);
  const rows: [string, string | undefined][] = [
    ['id', r.id],
    ['status', paintStatus(r.status)],
    ['queue', r.queue_url],
    ['message', r.message_id],
    ['command', r.command === null ? undefined : commandLine({ command: r.command, arguments: r.arguments })],
    ['attempt', String(r.attempt)],
    ['failures', `${r.num_failures} of at most ${r.max_failures}`],
    ['last error', r.last_error ?? undefined],
    ['banned machines', r.banned_machines?.length ? `${r.banned_machines.join(', ')} (they failed it)` : undefined],
    ['machine', r.machine_id ?? undefined],
    ['progress', r.progress ? progressText(r, 200) : undefined],
    ['heartbeat', when(r.heartbeat)],
    ['heartbeats', String(r.num_heartbeats)],
    ['heartbeat interval', `${r.heartbeat_interval}s (lease ${r.lease_timeout}s)`],
    ['hand-ons', r.hand_ons > 0 ? `${r.hand_ons} (moved to a new message before the visibility cap)` : undefined],
    ['created', when(r.created)],
    ['started', when(r.started)],
    ['completed', when(r.completed)],
    ['dead-lettered', when(r.dead_lettered)],
    ['canceled', when(r.canceled ?? null)],
    ['dead-letter queue', r.dead_letter_queue_url ?? undefined],
    ['dead letter', r.dead_letter_message_id ?? undefined],
  ];
  return keyValues(rows);
}

function cancelCommand(): Command {
  const cmd = new Command('cancel').description('Cancel jobs: they become canceled for good; a running one is stopped at its next heartbeat').argument('<ids...>', 'job ids');
  withConnection(cmd);
  withQueueOptions(cmd, { records: true });
  cmd.addHelpText(
    'after',
    '\nA job already finished is left as it is and said on stderr; exit code 1 if any job was not found.\n' +
      '\nWith --queue: a cancel request beside each job\'s record in the status bucket. The node running the job\n' +
      'stops it within two heartbeats; a job still waiting in the queue is deleted by the next node that\n' +
      'receives it, without running. (An id SQS never had cannot be told apart from one still waiting.)\n' +
      '\nExamples:\n  drover jobs cancel $(cat job_history.txt)\n' +
      '  drover jobs cancel 3f2b9c4e-8a1d-4e5f-9b7a-0c1d2e3f4a5b --queue "$DROVER_SQS_QUEUE_URL" --sqs-status-bucket results\n',
  );
  cmd.action(
    action('jobs cancel', async (ids: string[], flags: CommonFlags & QueueFlags) => {
      checkJobIds(ids);
      if (flags.queue !== undefined) return cancelOnQueue([...new Set(ids)], flags);
      const { client } = connect(flags);
      // A finished job needs no canceling: `cancel $(cat job_history.txt)` means "none of these runs any more".
      const results: { id: string; canceled: boolean; error?: string; finished?: boolean }[] = [];
      for (const id of [...new Set(ids)]) {
        try {
          await client.cancelJob(id);
          results.push({ id, canceled: true });
        } catch (err) {
          if (!(err instanceof DroverApiError) || (err.status !== 404 && err.status !== 409)) throw err;
          const error = err.status === 404 ? `job ${id} not found` : `job ${id}: ${err.message}`;
          results.push({ id, canceled: false, error, ...(err.status === 409 ? { finished: true } : {}) });
        }
      }
      if (flags.json) printJson(results);
      else for (const r of results) if (r.canceled) process.stdout.write(`canceled ${r.id}\n`);
      for (const r of results) if (r.error) process.stderr.write(`drover jobs cancel: ${r.error}\n`);
      if (results.some((r) => !r.canceled && !r.finished)) process.exitCode = 1;
    }),
  );
  return cmd;
}

/** `jobs cancel --queue`: a cancel request per job not yet finished (docs/sqs.md, "Cancel"). */
async function cancelOnQueue(ids: string[], flags: CommonFlags & QueueFlags): Promise<void> {
  const { records } = await openRecords(flags);
  const results: { id: string; requested: boolean; status: string }[] = [];
  for (const id of ids) {
    const record = await records.get(id);
    const status = record?.status ?? 'pending';
    if (FINISHED.has(status)) {
      results.push({ id, requested: false, status });
      continue;
    }
    await records.putCancel(id, { requested: new Date().toISOString() });
    results.push({ id, requested: true, status });
  }
  if (flags.json) printJson(results);
  else {
    for (const r of results) {
      if (r.requested) process.stdout.write(`cancel requested ${r.id} (${r.status === 'running' ? 'it stops within two heartbeats' : 'no worker has received it yet: the next one to do so deletes it'})\n`);
    }
  }
  for (const r of results) if (!r.requested) process.stderr.write(`drover jobs cancel: job ${r.id} is already ${r.status}\n`);
}

interface PurgeFlags extends CommonFlags {
  group?: string;
  yes?: boolean;
}

function purgeCommand(): Command {
  const cmd = new Command('purge')
    .description("Purge a container group: delete its pending jobs and cancel its running ones (yours only)")
    .option('-g, --group <id>', 'the container group to purge')
    .option('-y, --yes', "with no --group: purge the profile's container group");
  withConnection(cmd);
  cmd.addHelpText('after', '\nNothing is asked: name the group, or confirm the profile\'s with --yes.\n\nExample:\n  drover jobs purge --group my-group\n');
  cmd.action(
    action('jobs purge', async (flags: PurgeFlags) => {
      if (flags.group === undefined && !flags.yes) {
        throw new CliError("name the container group with --group, or pass --yes to purge the profile's group", USAGE);
      }
      const { client, connection } = connect(flags);
      const group = flags.group ?? connection.profile?.container_group_id;
      if (group === undefined) throw new CliError('no container group: pass --group (the profile names none)', USAGE);
      const { count } = await client.purgeContainerGroup(group);
      if (flags.json) return printJson({ container_group_id: group, count });
      process.stdout.write(`purged ${count} job${count === 1 ? '' : 's'} of container group ${group}\n`);
    }),
  );
  return cmd;
}

function eventsCommand(): Command {
  const cmd = new Command('events').description("A job's history: created, every claim, lease expiries, releases, failures, outcome").argument('<id>', 'job id');
  withConnection(cmd);
  cmd.addHelpText('after', '\nExample:\n  drover jobs events 3f2b9c4e-8a1d-4e5f-9b7a-0c1d2e3f4a5b\n');
  cmd.action(
    action('jobs events', async (id: string, flags: CommonFlags) => {
      checkJobIds([id]);
      const { client } = connect(flags);
      const { events } = await client.jobEvents(id).catch((e: unknown) => Promise.reject(jobError(e, id)));
      if (flags.json) return printJson(events);
      const now = Date.now();
      process.stdout.write(
        formatTable(events, [
          { header: 'AT', value: (e) => e.at },
          { header: 'AGO', value: (e) => ago(e.at, now) },
          { header: 'EVENT', value: (e) => e.type },
          { header: 'ATTEMPT', value: (e) => String(e.attempt), align: 'right' },
          { header: 'MACHINE', value: (e) => e.machine_id ?? '-' },
          // A worker's reason may span lines; the table keeps one row per event.
          { header: 'REASON', value: (e) => (e.reason === undefined ? '' : e.reason.replace(/\s+/g, ' ')) },
        ]),
      );
    }),
  );
  return cmd;
}

function clearCommand(): Command {
  const cmd = new Command('clear').description('(admin) Delete every job of every user').option('-y, --yes', 'yes, delete them all');
  withConnection(cmd);
  cmd.addHelpText('after', '\nExample:\n  drover jobs clear --yes --api-key "$DROVER_ADMIN_KEY"\n');
  cmd.action(
    action('jobs clear', async (flags: CommonFlags & { yes?: boolean }) => {
      if (!flags.yes) throw new CliError('this deletes every job of every user: pass --yes', USAGE);
      const { client } = connect(flags);
      await client.clearAllJobs();
      if (flags.json) return printJson({ cleared: true });
      process.stdout.write('deleted every job of every user\n');
    }),
  );
  return cmd;
}
