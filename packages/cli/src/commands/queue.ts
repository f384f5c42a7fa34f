// drover queue stats | purge: the seeds' demo app 2 client tools for its AWS SQS job queue
// (7_queue_job.py: how many jobs wait and how many are being processed; 0_job_queue_remove.py:
// remove every job). Submitting is `drover submit --queue`, per-job status `drover status --queue`.
import { Command } from 'commander';
import type { SqsQueue } from '@drover/worker/sqs';
import { CliError, action, formatTable, paint, printJson } from '../lib/output.js';
import { openDeadLetterQueue, openQueue, sqsFailure, withQueueOptions, type QueueFlags } from '../lib/queue.js';
import { USAGE, usageErrors } from './jobs/common.js';

export function queueCommands(): Command[] {
  const queue = new Command('queue').description('An AWS SQS job queue (drover worker --queue): message counts, purge');
  queue.addCommand(statsCommand());
  queue.addCommand(purgeCommand());
  return [usageErrors(queue)];
}

interface StatsFlags extends QueueFlags {
  json?: boolean;
}

function statsCommand(): Command {
  const cmd = new Command('stats').description('How many jobs wait (available), run or are being looked at (in flight), and wait for a delay, in the queue and its dead-letter queue');
  withQueueOptions(cmd, { required: true, deadLetters: true }).option('--json', 'print JSON instead of a table');
  cmd.addHelpText(
    'after',
    `
The counts are SQS's own (ApproximateNumberOfMessages, ...NotVisible, ...Delayed): approximate, and
a job being handed on before the 12-hour visibility cap counts twice for a moment.

Example:
  drover queue stats --queue https://sqs.us-east-2.amazonaws.com/123456789012/jobs
`,
  );
  cmd.action(
    action('queue stats', async (flags: StatsFlags) => {
      const queue = await openQueue(flags);
      try {
        const rows: { name: string; url: string; available: number; in_flight: number; delayed: number }[] = [];
        try {
          const c = await queue.counts();
          rows.push({ name: 'queue', url: queue.url, available: c.available, in_flight: c.inFlight, delayed: c.delayed });
          const dlq = await openDeadLetterQueue(queue, flags);
          if (dlq) {
            const d = await dlq.counts();
            rows.push({ name: 'dead letters', url: dlq.url, available: d.available, in_flight: d.inFlight, delayed: d.delayed });
            dlq.close();
          }
        } catch (err) {
          throw sqsFailure(err, queue.url);
        }
        if (flags.json) return printJson(rows);
        process.stdout.write(
          formatTable(rows, [
            { header: '', value: (r) => r.name },
            { header: 'AVAILABLE', value: (r) => String(r.available), align: 'right' },
            { header: 'IN FLIGHT', value: (r) => String(r.in_flight), align: 'right' },
            { header: 'DELAYED', value: (r) => String(r.delayed), align: 'right' },
            { header: 'URL', value: (r) => paint('dim', r.url) },
          ]),
        );
      } finally {
        queue.close();
      }
    }),
  );
  return cmd;
}

interface PurgeFlags extends QueueFlags {
  yes?: boolean;
  deadLetters?: boolean;
  json?: boolean;
}

function purgeCommand(): Command {
  const cmd = new Command('purge')
    .description('Delete every message of the queue: waiting jobs, and running ones (their workers drop them at the next heartbeat)')
    .option('--dead-letters', 'purge its dead-letter queue instead')
    .option('-y, --yes', 'yes, delete them all');
  withQueueOptions(cmd, { required: true, deadLetters: true }).option('--json', 'print JSON');
  cmd.addHelpText(
    'after',
    `
SQS allows one purge per queue every 60 seconds. The job records in the status bucket stay; remove
them with \`drover storage rm\` (the seeds' 0_cloud_storage_remove.py) if you want them gone too.

Example:
  drover queue purge --queue https://sqs.us-east-2.amazonaws.com/123456789012/jobs --yes
`,
  );
  cmd.action(
    action('queue purge', async (flags: PurgeFlags) => {
      if (!flags.yes) throw new CliError('this deletes every message of the queue, running jobs included: pass --yes', USAGE);
      const queue = await openQueue(flags);
      let target: SqsQueue | undefined = queue;
      try {
        if (flags.deadLetters) {
          target = await openDeadLetterQueue(queue, flags).catch((err: unknown) => Promise.reject(sqsFailure(err, queue.url)));
          if (!target) throw new CliError(`${queue.url} has no dead-letter queue (no RedrivePolicy): name it with --sqs-dead-letter-queue`, USAGE);
        }
        await target.purge().catch((err: unknown) => Promise.reject(sqsFailure(err, target?.url ?? queue.url)));
        if (flags.json) return printJson({ purged: target.url });
        process.stdout.write(`purged ${target.url}\n`);
      } finally {
        if (target !== queue) target?.close();
        queue.close();
      }
    }),
  );
  return cmd;
}
