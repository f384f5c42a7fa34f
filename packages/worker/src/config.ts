// The worker's settings: one table that says, for each, its flag, the environment variables it is
// read from (Kelpie's names first, so an existing container definition works unchanged), its
// default and how it is checked. The CLI builds its options and --help from this table; an invalid
// value is an error naming the flag and the variable.
import os from 'node:os';
import path from 'node:path';
import { SQS_ENV } from '@drover/protocol';
import { STORE_ENV, type StoreSettings } from '@drover/storage';
import type { SqsSourceSettings } from './source/sqs.js';
import { parseQueueSpec, sqsFallbackRegion, SqsSettingError } from './source/sqs-spec.js';

export interface WorkerConfig {
  apiUrl: string;
  apiKey: string;
  /** SALAD_MACHINE_ID as given (undefined or LOCAL off SaladCloud); for IMDS. */
  saladMachineId: string | undefined;
  /** The machine id sent to the coordinator: SALAD_MACHINE_ID, or local-<host>-<pid> off SaladCloud. */
  machineId: string;
  containerGroupId: string;
  /** Exit 0 after this long without work (and nothing uploading); 0 = never. */
  maxTimeWithNoWorkS: number;
  /** Retries of a coordinator call on network errors and 502/503/504. */
  maxRetries: number;
  /** Reallocate the node after this many job failures reported by this worker. */
  maxJobFailures: number;
  recreateBetweenJobs: boolean;
  inputDir: string;
  outputDir: string;
  checkpointDir: string;
  dataRoot: string;
  stateFile: string;
  storage: StoreSettings;
  imdsUrl: string;
  /** Seconds a claim long-polls (Drover); 0 turns long-poll off. */
  longPollS: number;
  /** Seconds between polls when the coordinator answers at once with no work (Kelpie). */
  pollIntervalS: number;
  /** Seconds between SIGINT (cancel) or SIGTERM (shutdown) and SIGKILL. */
  killGraceS: number;
  /** Seconds a file must stay unchanged before a during-sync uploads it. */
  settleS: number;
  /**
   * Seconds a file that keeps changing may go without an upload: this long after its first change
   * not yet uploaded, a snapshot of it is uploaded anyway (the bound on work lost to a dead node).
   */
  maxWaitS: number;
  /** Seconds between two scans of the during-sync folders. */
  scanIntervalS: number;
  partSizeMiB: number;
  partConcurrency: number;
  /** Ship each job's output to the coordinator (POST /jobs/:id/logs; read back with drover logs, the dashboard). */
  shipLogs: boolean;
  logLevel: string;
  /** Jobs from an AWS SQS queue instead of a coordinator (--queue); apiUrl and apiKey are then unused. */
  sqs?: SqsSourceSettings;
}

type Kind = 'string' | 'url' | 'path' | 'int' | 'number' | 'bool' | 'level';

export interface SettingSpec {
  key:
    | Exclude<keyof WorkerConfig, 'sqs'>
    | 'storageKind' | 's3Endpoint' | 's3Region' | 's3AccessKeyId' | 's3SecretAccessKey' | 'debounceS'
    | 'queue' | 'sqsDeadLetterQueue' | 'sqsStatusBucket' | 'sqsStatusPrefix' | 'sqsVisibilityCapS'
    | 'sqsEndpoint' | 'sqsRegion' | 'sqsAccessKeyId' | 'sqsSecretAccessKey';
  flag: string;
  env: string[];
  /** Variables of `env` that hold the value in milliseconds (Kelpie's FILE_WATCHER_*_MS); the flag and the others are in seconds. */
  envMs?: string[];
  help: string;
  kind: Kind;
  min?: number;
  /** Shown in --help; the real default is applied in resolveWorkerConfig. */
  defaultText?: string;
  required?: boolean;
  /** Required only when the jobs come from a coordinator (no --queue). */
  coordinatorOnly?: boolean;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

export const WORKER_SETTINGS: readonly SettingSpec[] = [
  { key: 'apiUrl', flag: '--api-url <url>', env: ['KELPIE_API_URL'], kind: 'url', required: true, coordinatorOnly: true, help: 'coordinator URL (Drover, or Kelpie itself)' },
  { key: 'apiKey', flag: '--api-key <key>', env: ['KELPIE_API_KEY'], kind: 'string', required: true, coordinatorOnly: true, help: 'API key the worker claims jobs with' },
  { key: 'saladMachineId', flag: '--machine-id <id>', env: ['SALAD_MACHINE_ID'], kind: 'string', defaultText: 'local-<host>-<pid>; unset or LOCAL = not on SaladCloud', help: "this node's machine id" },
  { key: 'containerGroupId', flag: '--container-group-id <id>', env: ['SALAD_CONTAINER_GROUP_ID'], kind: 'string', required: true, coordinatorOnly: true, help: 'container group whose jobs this worker runs (with --queue: the queue is the group)' },
  { key: 'maxTimeWithNoWorkS', flag: '--max-time-with-no-work <s>', env: ['MAX_TIME_WITH_NO_WORK_S'], kind: 'int', min: 0, defaultText: '0 = never', help: 'exit 0 after this many seconds without work' },
  { key: 'maxRetries', flag: '--max-retries <n>', env: ['MAX_RETRIES'], kind: 'int', min: 0, defaultText: '3', help: 'retries of a coordinator (or SQS) call on network and gateway errors' },
  { key: 'maxJobFailures', flag: '--max-job-failures <n>', env: ['MAX_JOB_FAILURES'], kind: 'int', min: 1, defaultText: '5', help: 'reallocate the node after this many failed jobs' },
  { key: 'recreateBetweenJobs', flag: '--recreate-between-jobs <bool>', env: ['KELPIE_RECREATE_BETWEEN_JOBS'], kind: 'bool', defaultText: 'false', help: 'recreate the container (IMDS) after every job' },
  { key: 'dataRoot', flag: '--data-root <dir>', env: ['DROVER_DATA_ROOT'], kind: 'path', defaultText: './.drover/worker', help: "folder that holds every job's files; a sync local_path must lie inside it" },
  { key: 'inputDir', flag: '--input-dir <dir>', env: ['INPUT_DIR'], kind: 'path', defaultText: '<data root>/input', help: 'legacy input folder' },
  { key: 'outputDir', flag: '--output-dir <dir>', env: ['OUTPUT_DIR'], kind: 'path', defaultText: '<data root>/output', help: 'legacy output folder' },
  { key: 'checkpointDir', flag: '--checkpoint-dir <dir>', env: ['CHECKPOINT_DIR'], kind: 'path', defaultText: '<data root>/checkpoint', help: 'legacy checkpoint folder' },
  { key: 'stateFile', flag: '--state-file <file>', env: ['KELPIE_STATE_FILE'], kind: 'path', defaultText: '<data root>/.drover/kelpie-state.json', help: 'state file the job can read (uploads, downloads)' },
  { key: 'storageKind', flag: '--storage <s3|file:///dir>', env: [...STORE_ENV.storage], kind: 'string', defaultText: 's3', help: 'object storage: S3-compatible, or a local folder with a folder per bucket' },
  { key: 's3Endpoint', flag: '--s3-endpoint <url>', env: [...STORE_ENV.endpoint], kind: 'url', defaultText: "AWS's", help: 'S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com' },
  { key: 's3Region', flag: '--s3-region <region>', env: [...STORE_ENV.region], kind: 'string', defaultText: 'auto', help: 'S3 region' },
  { key: 's3AccessKeyId', flag: '--s3-access-key-id <id>', env: [...STORE_ENV.accessKeyId], kind: 'string', help: 'S3 access key id' },
  { key: 's3SecretAccessKey', flag: '--s3-secret-access-key <key>', env: [...STORE_ENV.secretAccessKey], kind: 'string', help: 'S3 secret access key' },
  { key: 'imdsUrl', flag: '--imds-url <url>', env: ['DROVER_IMDS_URL'], kind: 'url', defaultText: 'http://169.254.169.254', help: "SaladCloud's instance metadata service; off = none (not on SaladCloud)" },
  { key: 'longPollS', flag: '--long-poll <s>', env: ['DROVER_LONG_POLL_S'], kind: 'int', min: 0, defaultText: '20; 0 = off', help: 'seconds a claim waits for work on a Drover coordinator' },
  { key: 'pollIntervalS', flag: '--poll-interval <s>', env: ['HEARTBEAT_INTERVAL_S', 'DROVER_POLL_INTERVAL_S'], kind: 'number', min: 0.1, defaultText: '10', help: 'seconds between polls without long-poll' },
  { key: 'killGraceS', flag: '--kill-grace <s>', env: ['DROVER_KILL_GRACE_S'], kind: 'number', min: 0, defaultText: '10', help: 'seconds between SIGINT/SIGTERM and SIGKILL for a job' },
  { key: 'settleS', flag: '--settle <s>', env: ['DROVER_SYNC_SETTLE_S'], kind: 'number', min: 0, defaultText: "1, or Kelpie's debounce + 3 × stability check when those are set", help: 'seconds a file must stay unchanged before it is uploaded' },
  { key: 'debounceS', flag: '--debounce <s>', env: ['FILE_WATCHER_DEBOUNCE_MS'], envMs: ['FILE_WATCHER_DEBOUNCE_MS'], kind: 'number', min: 0, defaultText: '0', help: "Kelpie's quiet time after a change, added to the settle time (when --settle is not given)" },
  { key: 'scanIntervalS', flag: '--scan-interval <s>', env: ['FILE_WATCHER_STABILITY_CHECK_MS', 'DROVER_SYNC_SCAN_INTERVAL_S'], envMs: ['FILE_WATCHER_STABILITY_CHECK_MS'], kind: 'number', min: 0.02, defaultText: 'half the settle time, 0.1–0.5', help: 'seconds between two checks of the during-sync folders' },
  { key: 'maxWaitS', flag: '--max-wait <s>', env: ['FILE_WATCHER_MAX_WAIT_MS', 'DROVER_SYNC_MAX_WAIT_S'], envMs: ['FILE_WATCHER_MAX_WAIT_MS'], kind: 'number', min: 0, defaultText: '5', help: 'seconds a file that keeps changing may go unuploaded: then a snapshot of it is uploaded anyway' },
  { key: 'partSizeMiB', flag: '--part-size <MiB>', env: ['DROVER_PART_SIZE_MIB'], kind: 'int', min: 5, defaultText: '10', help: 'multipart upload part size' },
  { key: 'partConcurrency', flag: '--part-concurrency <n>', env: ['DROVER_PART_CONCURRENCY'], kind: 'int', min: 1, defaultText: '8', help: 'parts of one file in flight' },
  { key: 'shipLogs', flag: '--ship-logs <bool>', env: ['DROVER_SHIP_LOGS'], kind: 'bool', defaultText: 'true', help: "send each job's stdout and stderr to the coordinator (drover logs, the dashboard)" },
  { key: 'logLevel', flag: '--log-level <level>', env: ['DROVER_LOG_LEVEL', 'KELPIE_LOG_LEVEL'], kind: 'level', defaultText: 'info', help: LOG_LEVELS.join(', ') },
  // An AWS SQS queue instead of a coordinator (docs/sqs.md).
  { key: 'queue', flag: '--queue <url>', env: [...SQS_ENV.queue], kind: 'string', help: 'take jobs from this AWS SQS queue instead of a coordinator: its URL, or sqs://<name>' },
  { key: 'sqsDeadLetterQueue', flag: '--sqs-dead-letter-queue <url>', env: [...SQS_ENV.deadLetterQueue], kind: 'string', defaultText: "the queue's RedrivePolicy target", help: 'SQS: where jobs that failed max_failures times, and messages that are not jobs, go' },
  { key: 'sqsStatusBucket', flag: '--sqs-status-bucket <bucket>', env: [...SQS_ENV.statusBucket], kind: 'string', defaultText: 'required with --queue', help: 'SQS: bucket of the job records (status, attempts, failures; `drover status --queue` reads them)' },
  { key: 'sqsStatusPrefix', flag: '--sqs-status-prefix <prefix>', env: [...SQS_ENV.statusPrefix], kind: 'string', defaultText: '.drover-sqs/<queue name>/', help: 'SQS: prefix of the job records in that bucket' },
  { key: 'sqsVisibilityCapS', flag: '--sqs-visibility-cap <s>', env: [...SQS_ENV.visibilityCap], kind: 'int', min: 4, defaultText: "43200, SQS's 12 hours", help: 'SQS: longest a message stays hidden from its receive; a running job moves to a new message before then (shorter only to test that)' },
  { key: 'sqsEndpoint', flag: '--sqs-endpoint <url>', env: [...SQS_ENV.endpoint], kind: 'url', defaultText: "AWS's", help: 'SQS endpoint' },
  { key: 'sqsRegion', flag: '--sqs-region <region>', env: [...SQS_ENV.region], kind: 'string', defaultText: "the queue URL's, else AWS_REGION, else us-east-1", help: 'SQS region' },
  { key: 'sqsAccessKeyId', flag: '--sqs-access-key-id <id>', env: [...SQS_ENV.accessKeyId], kind: 'string', defaultText: "the AWS SDK's chain", help: 'SQS access key id' },
  { key: 'sqsSecretAccessKey', flag: '--sqs-secret-access-key <key>', env: [...SQS_ENV.secretAccessKey], kind: 'string', help: 'SQS secret access key' },
];

export class WorkerConfigError extends Error {
  override name = 'WorkerConfigError';
}

/** The camelCase option name commander derives from a flag, e.g. `--api-url <url>` → apiUrl. */
export function optionName(flag: string): string {
  const long = flag.split(/[ ,]/).find((p) => p.startsWith('--')) ?? flag;
  return long.replace(/^--/, '').replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function where(spec: SettingSpec, source: string): string {
  return source.startsWith('--') ? source : `${source} (${spec.flag.split(' ')[0]})`;
}

function parseValue(spec: SettingSpec, raw: string, source: string): string | number | boolean {
  const name = where(spec, source);
  const value = raw.trim();
  switch (spec.kind) {
    case 'int':
    case 'number': {
      const ms = spec.envMs?.includes(source) ?? false;
      const n = Number(value) / (ms ? 1000 : 1);
      const ok = value !== '' && Number.isFinite(n) && (spec.kind === 'number' || Number.isInteger(n)) && n >= (spec.min ?? -Infinity);
      if (!ok) {
        const min = ms ? `${(spec.min ?? 0) * 1000} (ms)` : `${spec.min ?? 0}`;
        throw new WorkerConfigError(`${name} must be a ${spec.kind === 'int' ? 'whole number' : 'number'} >= ${min}, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case 'bool': {
      const v = value.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return true;
      if (['false', '0', 'no', 'off', ''].includes(v)) return false;
      throw new WorkerConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`);
    }
    case 'url': {
      if (spec.key === 'imdsUrl' && value.toLowerCase() === 'off') return 'off';
      let u: URL;
      try {
        u = new URL(value.includes('://') ? value : `https://${value}`);
      } catch {
        throw new WorkerConfigError(`${name} must be a URL, got ${JSON.stringify(raw)}`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WorkerConfigError(`${name} must be an http(s) URL, got ${JSON.stringify(raw)}`);
      // Kelpie's docs give the API URL without a scheme (kelpie.saladexamples.com): https is meant.
      return u.toString().replace(/\/+$/, '');
    }
    case 'path':
      if (value === '') throw new WorkerConfigError(`${name} must not be empty`);
      return path.resolve(value);
    case 'level':
      if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new WorkerConfigError(`${name} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
      return value;
    default:
      return value;
  }
}

/**
 * Builds the configuration from parsed flags (commander's option object) and the environment:
 * a flag wins over the variables, which are tried in the table's order, then the default.
 */
export function resolveWorkerConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const got = new Map<string, string | number | boolean>();
  /** Where each value came from: the flag or the variable's name. */
  const source = new Map<string, string>();
  const missing: string[] = [];
  for (const spec of WORKER_SETTINGS) {
    const flagValue = flags[optionName(spec.flag)];
    let value: string | number | boolean | undefined;
    if (typeof flagValue === 'string') {
      source.set(spec.key, spec.flag.split(' ')[0] as string);
      value = parseValue(spec, flagValue, spec.flag.split(' ')[0] as string);
    } else {
      const name = spec.env.find((e) => env[e] !== undefined && env[e] !== '');
      if (name !== undefined) {
        source.set(spec.key, name);
        value = parseValue(spec, env[name] as string, name);
      }
    }
    if (value === undefined && spec.required && !(spec.coordinatorOnly && queueGiven(flags, env))) missing.push(`${spec.flag.split(' ')[0]} (or ${spec.env.join(' / ')})`);
    if (value !== undefined) got.set(spec.key, value);
  }
  if (got.has('queue') && !got.has('sqsStatusBucket')) missing.push('--sqs-status-bucket (or DROVER_SQS_STATUS_BUCKET), with --queue');
  if (missing.length > 0) {
    // Kelpie's hosted API also takes a SaladCloud key or the node's IMDS token; a Drover coordinator takes its own tokens.
    const saladAuth = missing.some((m) => m.includes('KELPIE_API_KEY')) && (env.SALAD_API_KEY || env.SALAD_PROJECT)
      ? " (SALAD_API_KEY / SALAD_PROJECT authenticate with Kelpie's hosted API only: give the worker a Drover token in KELPIE_API_KEY)"
      : '';
    throw new WorkerConfigError(`missing required setting${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}${saladAuth}`);
  }

  const str = (k: string) => got.get(k) as string | undefined;
  const num = (k: string, d: number) => (got.get(k) as number | undefined) ?? d;
  const dataRoot = str('dataRoot') ?? path.resolve('.drover/worker');
  const salad = str('saladMachineId');
  const onSalad = salad !== undefined && salad !== 'LOCAL';
  const accessKeyId = str('s3AccessKeyId');
  const secretAccessKey = str('s3SecretAccessKey');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new WorkerConfigError('set both --s3-access-key-id and --s3-secret-access-key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or CLOUDFLARE_ID and CLOUDFLARE_KEY), or neither');
  }
  // Kelpie waits for a changed file to be quiet for its debounce, then for 3 unchanged size checks.
  const kelpieSettle = got.has('debounceS') || source.get('scanIntervalS') === 'FILE_WATCHER_STABILITY_CHECK_MS'
    ? Math.round((num('debounceS', 0) + 3 * num('scanIntervalS', 0.05)) * 1000) / 1000
    : undefined;
  const settleS = num('settleS', kelpieSettle ?? 1);
  return {
    // (all three are required without --queue: see `missing` above)
    apiUrl: str('apiUrl') ?? '',
    apiKey: str('apiKey') ?? '',
    saladMachineId: salad,
    machineId: onSalad ? salad : `local-${os.hostname()}-${process.pid}`,
    containerGroupId: str('containerGroupId') ?? '',
    maxTimeWithNoWorkS: num('maxTimeWithNoWorkS', 0),
    maxRetries: num('maxRetries', 3),
    maxJobFailures: num('maxJobFailures', 5),
    recreateBetweenJobs: (got.get('recreateBetweenJobs') as boolean | undefined) ?? false,
    dataRoot,
    inputDir: str('inputDir') ?? path.join(dataRoot, 'input'),
    outputDir: str('outputDir') ?? path.join(dataRoot, 'output'),
    checkpointDir: str('checkpointDir') ?? path.join(dataRoot, 'checkpoint'),
    stateFile: str('stateFile') ?? path.join(dataRoot, '.drover', 'kelpie-state.json'),
    storage: {
      storage: str('storageKind') ?? 's3',
      endpoint: str('s3Endpoint'),
      region: str('s3Region'),
      accessKeyId,
      secretAccessKey,
    },
    imdsUrl: str('imdsUrl') ?? 'http://169.254.169.254',
    longPollS: num('longPollS', 20),
    pollIntervalS: num('pollIntervalS', 10),
    killGraceS: num('killGraceS', 10),
    settleS,
    maxWaitS: num('maxWaitS', 5),
    scanIntervalS: num('scanIntervalS', Math.min(0.5, Math.max(0.1, settleS / 2))),
    partSizeMiB: num('partSizeMiB', 10),
    partConcurrency: num('partConcurrency', 8),
    shipLogs: (got.get('shipLogs') as boolean | undefined) ?? true,
    logLevel: str('logLevel') ?? 'info',
    ...(got.has('queue') ? { sqs: sqsSettings(str, num, source, env) } : {}),
  };
}

function queueGiven(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): boolean {
  const spec = WORKER_SETTINGS.find((s) => s.key === 'queue') as SettingSpec;
  return typeof flags[optionName(spec.flag)] === 'string' || spec.env.some((e) => (env[e] ?? '').trim() !== '');
}

/** The SQS source's settings, checked here so that a bad queue URL is a usage error before anything starts. */
function sqsSettings(
  str: (k: string) => string | undefined,
  num: (k: string, d: number) => number,
  source: Map<string, string>,
  env: NodeJS.ProcessEnv,
): SqsSourceSettings {
  const queue = str('queue') as string;
  try {
    parseQueueSpec(queue);
  } catch (err) {
    if (err instanceof SqsSettingError) throw new WorkerConfigError(`${source.get('queue')} ${err.message}`);
    throw err;
  }
  const accessKeyId = str('sqsAccessKeyId');
  const secretAccessKey = str('sqsSecretAccessKey');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new WorkerConfigError('set both --sqs-access-key-id and --sqs-secret-access-key (AWS_ID and AWS_KEY, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or neither');
  }
  const prefix = str('sqsStatusPrefix');
  return {
    queue,
    deadLetterQueue: str('sqsDeadLetterQueue'),
    statusBucket: str('sqsStatusBucket') as string,
    statusPrefix: prefix === undefined || prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
    visibilityCapS: num('sqsVisibilityCapS', 43_200),
    connection: {
      endpoint: str('sqsEndpoint'),
      region: str('sqsRegion'),
      fallbackRegion: sqsFallbackRegion(env),
      accessKeyId,
      secretAccessKey,
      retries: num('maxRetries', 3),
    },
  };
}

/** A setting's --help line: what it is, where else it can be set, its default. */
export function settingDescription(s: SettingSpec): string {
  const dflt = s.defaultText ? ` [default: ${s.defaultText}]` : s.required ? (s.coordinatorOnly ? ' [required without --queue]' : ' [required]') : '';
  return `${s.help} (env: ${s.env.join(', ')})${dflt}`;
}
