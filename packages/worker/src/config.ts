// The worker's settings: one table that says, for each, its flag, the environment variables it is
// read from (Kelpie's names first, so an existing container definition works unchanged), its
// default and how it is checked. The CLI builds its options and --help from this table; an invalid
// value is an error naming the flag and the variable.
import os from 'node:os';
import path from 'node:path';
import { STORE_ENV, type StoreSettings } from '@drover/storage';

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
  partSizeMiB: number;
  partConcurrency: number;
  logLevel: string;
}

type Kind = 'string' | 'url' | 'path' | 'int' | 'number' | 'bool' | 'level';

export interface SettingSpec {
  key: keyof WorkerConfig | 'storageKind' | 's3Endpoint' | 's3Region' | 's3AccessKeyId' | 's3SecretAccessKey';
  flag: string;
  env: string[];
  help: string;
  kind: Kind;
  min?: number;
  /** Shown in --help; the real default is applied in resolveWorkerConfig. */
  defaultText?: string;
  required?: boolean;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

export const WORKER_SETTINGS: readonly SettingSpec[] = [
  { key: 'apiUrl', flag: '--api-url <url>', env: ['KELPIE_API_URL'], kind: 'url', required: true, help: 'coordinator URL (Drover, or Kelpie itself)' },
  { key: 'apiKey', flag: '--api-key <key>', env: ['KELPIE_API_KEY'], kind: 'string', required: true, help: 'API key the worker claims jobs with' },
  { key: 'saladMachineId', flag: '--machine-id <id>', env: ['SALAD_MACHINE_ID'], kind: 'string', defaultText: 'local-<host>-<pid>; unset or LOCAL = not on SaladCloud', help: "this node's machine id" },
  { key: 'containerGroupId', flag: '--container-group-id <id>', env: ['SALAD_CONTAINER_GROUP_ID'], kind: 'string', required: true, help: 'container group whose jobs this worker runs' },
  { key: 'maxTimeWithNoWorkS', flag: '--max-time-with-no-work <s>', env: ['MAX_TIME_WITH_NO_WORK_S'], kind: 'int', min: 0, defaultText: '0 = never', help: 'exit 0 after this many seconds without work' },
  { key: 'maxRetries', flag: '--max-retries <n>', env: ['MAX_RETRIES'], kind: 'int', min: 0, defaultText: '3', help: 'retries of a coordinator call on network and gateway errors' },
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
  { key: 'imdsUrl', flag: '--imds-url <url>', env: ['DROVER_IMDS_URL'], kind: 'url', defaultText: 'http://169.254.169.254', help: "SaladCloud's instance metadata service" },
  { key: 'longPollS', flag: '--long-poll <s>', env: ['DROVER_LONG_POLL_S'], kind: 'int', min: 0, defaultText: '20; 0 = off', help: 'seconds a claim waits for work on a Drover coordinator' },
  { key: 'pollIntervalS', flag: '--poll-interval <s>', env: ['DROVER_POLL_INTERVAL_S'], kind: 'number', min: 0.1, defaultText: '10', help: 'seconds between polls without long-poll' },
  { key: 'killGraceS', flag: '--kill-grace <s>', env: ['DROVER_KILL_GRACE_S'], kind: 'number', min: 0, defaultText: '10', help: 'seconds between SIGINT/SIGTERM and SIGKILL for a job' },
  { key: 'settleS', flag: '--settle <s>', env: ['DROVER_SYNC_SETTLE_S'], kind: 'number', min: 0, defaultText: '1', help: 'seconds a file must stay unchanged before it is uploaded' },
  { key: 'partSizeMiB', flag: '--part-size <MiB>', env: ['DROVER_PART_SIZE_MIB'], kind: 'int', min: 5, defaultText: '10', help: 'multipart upload part size' },
  { key: 'partConcurrency', flag: '--part-concurrency <n>', env: ['DROVER_PART_CONCURRENCY'], kind: 'int', min: 1, defaultText: '8', help: 'parts of one file in flight' },
  { key: 'logLevel', flag: '--log-level <level>', env: ['DROVER_LOG_LEVEL', 'KELPIE_LOG_LEVEL'], kind: 'level', defaultText: 'info', help: LOG_LEVELS.join(', ') },
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
      const n = Number(value);
      const ok = value !== '' && Number.isFinite(n) && (spec.kind === 'number' || Number.isInteger(n)) && n >= (spec.min ?? -Infinity);
      if (!ok) throw new WorkerConfigError(`${name} must be a ${spec.kind === 'int' ? 'whole number' : 'number'} >= ${spec.min ?? 0}, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'bool': {
      const v = value.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return true;
      if (['false', '0', 'no', 'off', ''].includes(v)) return false;
      throw new WorkerConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`);
    }
    case 'url': {
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
  const missing: string[] = [];
  for (const spec of WORKER_SETTINGS) {
    const flagValue = flags[optionName(spec.flag)];
    let value: string | number | boolean | undefined;
    if (typeof flagValue === 'string') value = parseValue(spec, flagValue, spec.flag.split(' ')[0] as string);
    else {
      const name = spec.env.find((e) => env[e] !== undefined && env[e] !== '');
      if (name !== undefined) value = parseValue(spec, env[name] as string, name);
    }
    if (value === undefined && spec.required) missing.push(`${spec.flag.split(' ')[0]} (or ${spec.env.join(' / ')})`);
    if (value !== undefined) got.set(spec.key, value);
  }
  if (missing.length > 0) throw new WorkerConfigError(`missing required setting${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);

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
  return {
    apiUrl: str('apiUrl') as string,
    apiKey: str('apiKey') as string,
    saladMachineId: salad,
    machineId: onSalad ? salad : `local-${os.hostname()}-${process.pid}`,
    containerGroupId: str('containerGroupId') as string,
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
    settleS: num('settleS', 1),
    partSizeMiB: num('partSizeMiB', 10),
    partConcurrency: num('partConcurrency', 8),
    logLevel: str('logLevel') ?? 'info',
  };
}

/** A setting's --help line: what it is, where else it can be set, its default. */
export function settingDescription(s: SettingSpec): string {
  const dflt = s.defaultText ? ` [default: ${s.defaultText}]` : s.required ? ' [required]' : '';
  return `${s.help} (env: ${s.env.join(', ')})${dflt}`;
}
