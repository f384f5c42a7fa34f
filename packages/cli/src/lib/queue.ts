// What the client commands need for jobs on an AWS SQS queue (`--queue`): the queue itself (for
// submit, stats, purge) and the job records the workers keep in the bucket (for status and jobs get).
// The variables are the workers' own (the worker's settings table), so one environment serves both;
// SQS keys come only from the environment or the AWS SDK's chain, never from a flag. The AWS SDK and
// the worker's SQS code load only when a command is given --queue.
import { SQS_ENV, defaultSqsStatusPrefix } from '@drover/protocol';
import { type Command, Option } from 'commander';
import type { SqsQueue, SqsRecords } from '@drover/worker/sqs';
import { CliError } from './output.js';
import { USAGE_EXIT } from './remote-path.js';
import type { Storage, StorageFlags } from '../commands/storage/settings.js';

export interface QueueFlags extends StorageFlags {
  queue?: string;
  sqsEndpoint?: string;
  sqsRegion?: string;
  sqsStatusBucket?: string;
  sqsStatusPrefix?: string;
  sqsDeadLetterQueue?: string;
}

/** The workers' variables for a setting, so `--help` and the lookup name the same ones. */
function envOf(key: keyof typeof SQS_ENV): readonly string[] {
  return SQS_ENV[key];
}

function fromEnv(key: keyof typeof SQS_ENV, env: NodeJS.ProcessEnv): string | undefined {
  for (const name of envOf(key)) {
    const v = env[name]?.trim();
    if (v) return v;
  }
  return undefined;
}

/**
 * Adds --queue and the SQS connection options. `records`: also where the job records are (status
 * bucket and prefix) and the storage options to read them with; `required`: the queue is the
 * command's subject (its flag or DROVER_SQS_QUEUE_URL), not a switch away from the coordinator.
 */
export function withQueueOptions(cmd: Command, o: { records?: boolean; required?: boolean; deadLetters?: boolean } = {}): Command {
  const queueHelp = o.required
    ? `the SQS queue: its URL, or sqs://<name> (env ${envOf('queue')[0]})`
    : 'jobs on this AWS SQS queue (its URL, or sqs://<name>) instead of a coordinator';
  cmd
    .addOption(new Option('--queue <url>', queueHelp))
    .addOption(new Option('--sqs-endpoint <url>', `SQS endpoint (env ${envOf('endpoint').join(', ')}; default AWS's)`))
    .addOption(new Option('--sqs-region <region>', `SQS region (env ${envOf('region').join(', ')}; default: the queue URL's, else AWS_REGION)`));
  if (o.deadLetters) {
    cmd.addOption(new Option('--sqs-dead-letter-queue <url>', `the dead-letter queue (env ${envOf('deadLetterQueue').join(', ')}; default: the queue's RedrivePolicy target)`));
  }
  if (o.records) {
    cmd
      .addOption(new Option('--sqs-status-bucket <bucket>', `with --queue: the bucket of the job records the workers write (env ${envOf('statusBucket').join(', ')})`))
      .addOption(new Option('--sqs-status-prefix <prefix>', `with --queue: their prefix (env ${envOf('statusPrefix').join(', ')}; default .drover-sqs/<queue name>/)`))
      .addOption(new Option('--storage <s3|file:///dir>', 'with --queue: the storage of the job records (env DROVER_STORAGE; default s3)'))
      .addOption(new Option('--s3-endpoint <url>', 'with --queue: its S3 endpoint (env AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, CLOUDFLARE_ENDPOINT_URL, CLOUDFLARE_URL)'))
      .addOption(new Option('--s3-region <region>', 'with --queue: its S3 region (env AWS_REGION, AWS_DEFAULT_REGION, CLOUDFLARE_REGION)'));
  }
  return cmd;
}

/** The queue a command names: --queue, else (for the queue commands) DROVER_SQS_QUEUE_URL. */
export function queueSpec(flags: QueueFlags, env: NodeJS.ProcessEnv = process.env): string {
  const spec = flags.queue ?? fromEnv('queue', env);
  if (spec === undefined) throw new CliError(`no queue: pass --queue URL (or set ${envOf('queue')[0]})`, USAGE_EXIT);
  return spec;
}

/** Opens the queue (an sqs://<name> is looked up); keys from the environment or the AWS SDK's chain. */
export async function openQueue(flags: QueueFlags, env: NodeJS.ProcessEnv = process.env): Promise<SqsQueue> {
  const { SqsQueue, SqsSettingError, sqsFallbackRegion } = await import('@drover/worker/sqs');
  const spec = queueSpec(flags, env);
  const accessKeyId = fromEnv('accessKeyId', env);
  const secretAccessKey = fromEnv('secretAccessKey', env);
  try {
    return await SqsQueue.open(spec, {
      endpoint: flags.sqsEndpoint ?? fromEnv('endpoint', env),
      region: flags.sqsRegion ?? fromEnv('region', env),
      fallbackRegion: sqsFallbackRegion(env),
      ...(accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey } : {}),
    });
  } catch (err) {
    throw sqsFailure(err, spec, SqsSettingError);
  }
}

/** The dead-letter queue the flags, the environment or the queue's RedrivePolicy name, if any. */
export async function openDeadLetterQueue(queue: SqsQueue, flags: QueueFlags, env: NodeJS.ProcessEnv = process.env): Promise<SqsQueue | undefined> {
  const spec = flags.sqsDeadLetterQueue ?? fromEnv('deadLetterQueue', env) ?? (await queue.redrivePolicy())?.deadLetterQueueUrl;
  return spec === undefined ? undefined : queue.sibling(spec);
}

/** An SQS error in the user's terms. */
export function sqsFailure(err: unknown, spec: string, settingError?: new (...a: never[]) => Error): unknown {
  if (err instanceof CliError) return err;
  if (settingError && err instanceof settingError) return new CliError(`--queue ${err.message}`, USAGE_EXIT);
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } } | null;
  if (e?.name === 'QueueDoesNotExist') return new CliError(`the SQS queue ${spec} does not exist`);
  if (e?.name === 'CredentialsProviderError') return new CliError('no SQS credentials: set AWS_ID and AWS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or configure the AWS SDK (~/.aws, AWS_PROFILE)');
  const status = e?.$metadata?.httpStatusCode;
  if (status === undefined && e?.message) return new CliError(`cannot reach SQS for ${spec}: ${e.message}`);
  if (status !== undefined) return new CliError(`SQS: ${e?.message ?? e?.name ?? 'error'} (HTTP ${status}${e?.name ? ` ${e.name}` : ''})`);
  return err;
}

/** The job records of the queue the flags name, in the status bucket the workers write to. */
export async function openRecords(flags: QueueFlags, env: NodeJS.ProcessEnv = process.env): Promise<{ records: SqsRecords; storage: Storage; queueName: string }> {
  const { SqsRecords, parseQueueSpec, SqsSettingError } = await import('@drover/worker/sqs');
  const spec = queueSpec(flags, env);
  let name: string;
  try {
    name = parseQueueSpec(spec).name;
  } catch (err) {
    throw sqsFailure(err, spec, SqsSettingError);
  }
  const bucket = flags.sqsStatusBucket ?? fromEnv('statusBucket', env);
  if (bucket === undefined) {
    throw new CliError(`with --queue, name the bucket of the job records: --sqs-status-bucket (or ${envOf('statusBucket')[0]}), as the workers have it`, USAGE_EXIT);
  }
  let prefix = flags.sqsStatusPrefix ?? fromEnv('statusPrefix', env) ?? defaultSqsStatusPrefix(name);
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  const { openStorage } = await import('../commands/storage/settings.js');
  const storage = openStorage(flags, env);
  return { records: new SqsRecords(storage.store, bucket, prefix, { retries: 2 }), storage, queueName: name };
}
