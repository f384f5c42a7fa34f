// The job definition of the series-sum demo, built in one place so the tests and `drover demo`
// submit identical jobs. Both modes keep the same layout in the bucket, under the job's prefix:
//
//   <prefix>input/input.json     {"start": 1, "end": 1000}     (uploaded by the client)
//   <prefix>state/state.json     last step and partial sum     (saved every STATE_SAVING_INTERVAL)
//   <prefix>state/log.txt        one line per machine and per save
//   <prefix>load/load.bin        SIZE MiB test file per save    (only when SIZE > 0)
//   <prefix>output/output.json   {start, end, sum, steps, machines, runs} or {error}
//   <prefix>output/log.txt       the log as it was at the end
import { fileURLToPath } from 'node:url';
import type { JobDefinition, SyncEntry } from '@drover/sdk';

/**
 * Who moves the job's data. The queue is another matter: an `app` job sent to an SQS queue and run by
 * `drover worker --queue` is the seeds' demo app 2 (docs/sqs.md); from the coordinator, demo app 3.
 */
export type SeriesSumMode = 'worker' | 'app';
export const SERIES_SUM_MODES: readonly SeriesSumMode[] = ['worker', 'app'];

/** Folder names, locally (below the data root, or the app's work folder) and in the bucket. */
export const LAYOUT = {
  input: 'input',
  state: 'state',
  load: 'load',
  output: 'output',
  inputFile: 'input.json',
  stateFile: 'state.json',
  logFile: 'log.txt',
  loadFile: 'load.bin',
  outputFile: 'output.json',
} as const;

/** Where worker-managed jobs keep their folders, relative to the worker's data root. */
export const WORKER_LOCAL_ROOT = 'series-sum';

/** Absolute path of the app's entry point (dist/main.js next to this module). */
export const MAIN_JS = fileURLToPath(new URL('./main.js', import.meta.url));

export interface SeriesSumJobOptions {
  /** `worker`: the job's sync block moves the data; `app`: `sync: {}` and the app moves it with the Checkpointer (@drover/checkpointer). */
  mode: SeriesSumMode;
  bucket: string;
  /** Per job, e.g. "series-sum/job-3/"; a trailing "/" is added when missing. */
  prefix: string;
  containerGroupId: string;
  /** STEP_RUNNING_TIME: seconds per step (default 1). */
  stepSeconds?: number;
  /** STATE_SAVING_INTERVAL: seconds between state saves (default 10). */
  saveIntervalSeconds?: number;
  /** SIZE: MiB of test data written (and uploaded) per save (default 0 = none). */
  sizeMiB?: number;
  heartbeatInterval?: number;
  maxFailures?: number;
  /** The node binary the worker starts (default process.execPath). */
  node?: string;
  /** More environment for the job (e.g. DROVER_STORAGE for an app-mode job on another store). */
  environment?: Record<string, string>;
}

/** The prefix with one trailing "/" ("" stays ""). */
export function normalizePrefix(prefix: string): string {
  if (prefix === '') return '';
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

export function inputKey(prefix: string): string {
  return `${normalizePrefix(prefix)}${LAYOUT.input}/${LAYOUT.inputFile}`;
}

export function outputKey(prefix: string): string {
  return `${normalizePrefix(prefix)}${LAYOUT.output}/${LAYOUT.outputFile}`;
}

export function stateKey(prefix: string): string {
  return `${normalizePrefix(prefix)}${LAYOUT.state}/${LAYOUT.stateFile}`;
}

export function logKey(prefix: string): string {
  return `${normalizePrefix(prefix)}${LAYOUT.state}/${LAYOUT.logFile}`;
}

/** start + (start+1) + … + end, in closed form: (start + end)(end − start + 1) / 2. */
export function expectedSum(start: number | bigint, end: number | bigint): bigint {
  const s = BigInt(start);
  const e = BigInt(end);
  if (s > e) throw new RangeError(`start (${s}) is greater than end (${e})`);
  return ((s + e) * (e - s + 1n)) / 2n;
}

function checkNumber(name: string, v: number | undefined, min: number, integer = false): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
    throw new RangeError(`${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${String(v)}`);
  }
}

/** The job definition for one series-sum run. Throws RangeError on a bad option (naming it). */
export function seriesSumJob(o: SeriesSumJobOptions): JobDefinition {
  if (!SERIES_SUM_MODES.includes(o.mode)) throw new RangeError(`mode must be "worker" or "app", got ${JSON.stringify(o.mode)}`);
  if (typeof o.bucket !== 'string' || o.bucket === '') throw new RangeError('bucket must be a non-empty string');
  if (typeof o.prefix !== 'string' || o.prefix.startsWith('/')) throw new RangeError(`prefix must be a string not starting with "/", got ${JSON.stringify(o.prefix)}`);
  if (typeof o.containerGroupId !== 'string' || o.containerGroupId === '') throw new RangeError('containerGroupId must be a non-empty string');
  checkNumber('stepSeconds', o.stepSeconds, 0);
  checkNumber('saveIntervalSeconds', o.saveIntervalSeconds, 0.01);
  checkNumber('sizeMiB', o.sizeMiB, 0, true);
  checkNumber('heartbeatInterval', o.heartbeatInterval, 1, true);
  checkNumber('maxFailures', o.maxFailures, 1, true);

  const prefix = normalizePrefix(o.prefix);
  const args = [MAIN_JS, '--mode', o.mode];
  if (o.stepSeconds !== undefined) args.push('--step-seconds', String(o.stepSeconds));
  if (o.saveIntervalSeconds !== undefined) args.push('--save-interval', String(o.saveIntervalSeconds));
  if (o.sizeMiB !== undefined) args.push('--size', String(o.sizeMiB));

  const job: JobDefinition = {
    command: o.node ?? process.execPath,
    arguments: args,
    environment: { ...o.environment },
    container_group_id: o.containerGroupId,
  };
  if (o.heartbeatInterval !== undefined) job.heartbeat_interval = o.heartbeatInterval;
  if (o.maxFailures !== undefined) job.max_failures = o.maxFailures;

  if (o.mode === 'app') {
    args.push('--bucket', o.bucket, '--prefix', prefix);
    job.sync = {};
    return job;
  }
  const local = (name: string) => `${WORKER_LOCAL_ROOT}/${name}`;
  const entry = (name: string, direction: SyncEntry['direction'], pattern?: string): SyncEntry => ({
    bucket: o.bucket,
    prefix: `${prefix}${name}/`,
    local_path: local(name),
    direction,
    ...(pattern ? { pattern } : {}),
  });
  args.push(
    '--input-dir', local(LAYOUT.input),
    '--state-dir', local(LAYOUT.state),
    '--load-dir', local(LAYOUT.load),
    '--output-dir', local(LAYOUT.output),
  );
  job.sync = {
    // The input and the last state come down; the load files never do (they are upload load only).
    before: [entry(LAYOUT.input, 'download'), entry(LAYOUT.state, 'download')],
    during: [entry(LAYOUT.state, 'upload'), entry(LAYOUT.load, 'upload')],
    after: [entry(LAYOUT.output, 'upload')],
  };
  return job;
}
