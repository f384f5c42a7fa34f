// The app's settings: each a flag and an environment variable (the seeds' names where they have
// one); a flag wins over the variable. A bad value is a ConfigError naming the flag and variable.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SERIES_SUM_MODES, normalizePrefix, type SeriesSumMode } from './job.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface AppConfig {
  mode: SeriesSumMode;
  stepSeconds: number;
  saveIntervalSeconds: number;
  sizeMiB: number;
  /** SALAD_MACHINE_ID, or LOCAL. */
  machineId: string;
  /** Absolute; written when DROVER_PROGRESS_FILE is set. */
  progressFile?: string;
  /** Worker mode: the four local folders, absolute. */
  inputDir: string;
  stateDir: string;
  loadDir: string;
  outputDir: string;
  /** App mode. */
  bucket: string;
  prefix: string;
  /** App mode: the local folder the app downloads into and uploads from (absolute). */
  workDir: string;
  /** App mode: reallocate when more than this many uploads wait (default 6, as the seeds). */
  maxPending: number;
  /** App mode: reallocate when more than this many uploads failed for good (default 3). */
  maxUploadErrors: number;
  /** Seconds the app waits for its uploads after SIGINT/SIGTERM before it exits anyway. */
  flushTimeoutSeconds: number;
}

interface Spec {
  flag: string;
  env: string[];
  help: string;
}

const SPECS = {
  mode: { flag: 'mode', env: ['MODE'], help: 'worker (the job\'s sync block moves the data) or app (the app does, with @drover/checkpointer\'s Checkpointer)' },
  step: { flag: 'step-seconds', env: ['STEP_RUNNING_TIME'], help: 'seconds per step (default 1)' },
  save: { flag: 'save-interval', env: ['STATE_SAVING_INTERVAL'], help: 'seconds between state saves (default 10)' },
  size: { flag: 'size', env: ['SIZE'], help: 'MiB of test data written and uploaded per save (default 0 = none)' },
  inputDir: { flag: 'input-dir', env: ['SERIES_INPUT_DIR', 'INPUT_DIR'], help: 'worker mode: folder holding input.json' },
  stateDir: { flag: 'state-dir', env: ['SERIES_STATE_DIR', 'CHECKPOINT_DIR'], help: 'worker mode: folder of state.json and log.txt' },
  loadDir: { flag: 'load-dir', env: ['SERIES_LOAD_DIR'], help: 'worker mode: folder of the SIZE test file (default: the state folder)' },
  outputDir: { flag: 'output-dir', env: ['SERIES_OUTPUT_DIR', 'OUTPUT_DIR'], help: 'worker mode: folder of output.json' },
  bucket: { flag: 'bucket', env: ['BUCKET'], help: 'app mode: the bucket' },
  prefix: { flag: 'prefix', env: ['PREFIX'], help: 'app mode: the job\'s prefix in the bucket, e.g. series-sum/job-3/' },
  workDir: { flag: 'work-dir', env: ['SERIES_WORK_DIR'], help: 'app mode: local folder (default <data root>/series-sum-app/<job id>)' },
  maxPending: { flag: 'max-pending', env: ['MAX_PENDING_UPLOADS'], help: 'app mode: reallocate when more uploads wait (default 6)' },
  maxErrors: { flag: 'max-upload-errors', env: ['MAX_UPLOAD_ERRORS'], help: 'app mode: reallocate when more uploads failed (default 3)' },
  flush: { flag: 'flush-timeout', env: ['FLUSH_TIMEOUT'], help: 'seconds to wait for uploads after SIGINT/SIGTERM (default 5)' },
} satisfies Record<string, Spec>;

export function usage(): string {
  const lines = Object.values(SPECS).map((s) => `  --${s.flag.padEnd(18)} ${s.env.join(' / ').padEnd(34)} ${s.help}`);
  return `usage: node dist/main.js [options]\n  ${'flag'.padEnd(20)} ${'variable'.padEnd(34)} meaning\n${lines.join('\n')}`;
}

function describe(s: Spec): string {
  return `--${s.flag} (${s.env.join(' / ')})`;
}

export function resolveConfig(argv: string[], env: NodeJS.ProcessEnv): AppConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(Object.values(SPECS).map((s) => [s.flag, { type: 'string' as const }]));
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const raw = (s: Spec): { value: string; from: string } | undefined => {
    const v = values[s.flag];
    if (typeof v === 'string') return { value: v, from: `--${s.flag}` };
    for (const name of s.env) {
      const e = env[name];
      if (e !== undefined && e.trim() !== '') return { value: e.trim(), from: name };
    }
    return undefined;
  };
  const num = (s: Spec, dflt: number, min: number, opts: { integer?: boolean; exclusiveMin?: boolean } = {}): number => {
    const r = raw(s);
    if (r === undefined) return dflt;
    const n = Number(r.value);
    const ok = r.value !== '' && Number.isFinite(n) && (opts.exclusiveMin ? n > min : n >= min) && (!opts.integer || Number.isInteger(n));
    if (!ok) {
      const what = `${opts.integer ? 'an integer' : 'a number'} ${opts.exclusiveMin ? '>' : '>='} ${min}`;
      throw new ConfigError(`${describe(s)} must be ${what}, got ${JSON.stringify(r.value)} (from ${r.from})`);
    }
    return n;
  };

  const modeRaw = raw(SPECS.mode);
  const mode = (modeRaw?.value ?? 'worker') as SeriesSumMode;
  if (!SERIES_SUM_MODES.includes(mode)) {
    throw new ConfigError(`${describe(SPECS.mode)} must be "worker" or "app", got ${JSON.stringify(modeRaw?.value)} (from ${modeRaw?.from})`);
  }
  // Relative folders are relative to the worker's data root, as a job's sync local_paths are.
  const root = path.resolve(env.DROVER_DATA_ROOT || '.');
  const dir = (s: Spec, required: boolean): string => {
    const r = raw(s);
    if (r === undefined) {
      if (required) throw new ConfigError(`${describe(s)} is required in ${mode} mode`);
      return '';
    }
    return path.resolve(root, r.value);
  };
  const str = (s: Spec, required: boolean): string => {
    const r = raw(s);
    if (r === undefined && required) throw new ConfigError(`${describe(s)} is required in ${mode} mode`);
    return r?.value ?? '';
  };

  const cfg: AppConfig = {
    mode,
    stepSeconds: num(SPECS.step, 1, 0),
    saveIntervalSeconds: num(SPECS.save, 10, 0, { exclusiveMin: true }),
    sizeMiB: num(SPECS.size, 0, 0, { integer: true }),
    machineId: env.SALAD_MACHINE_ID?.trim() || 'LOCAL',
    ...(env.DROVER_PROGRESS_FILE ? { progressFile: path.resolve(env.DROVER_PROGRESS_FILE) } : {}),
    inputDir: '',
    stateDir: '',
    loadDir: '',
    outputDir: '',
    bucket: '',
    prefix: '',
    workDir: '',
    maxPending: num(SPECS.maxPending, 6, 0, { integer: true }),
    maxUploadErrors: num(SPECS.maxErrors, 3, 0, { integer: true }),
    flushTimeoutSeconds: num(SPECS.flush, 5, 0),
  };
  if (mode === 'worker') {
    cfg.inputDir = dir(SPECS.inputDir, true);
    cfg.stateDir = dir(SPECS.stateDir, true);
    cfg.outputDir = dir(SPECS.outputDir, true);
    cfg.loadDir = dir(SPECS.loadDir, false) || cfg.stateDir;
  } else {
    cfg.bucket = str(SPECS.bucket, true);
    const prefix = str(SPECS.prefix, false);
    if (prefix.startsWith('/')) throw new ConfigError(`${describe(SPECS.prefix)} must not start with "/", got ${JSON.stringify(prefix)}`);
    cfg.prefix = normalizePrefix(prefix);
    const jobPart = (env.KELPIE_JOB_ID || `pid-${process.pid}`).replace(/[^A-Za-z0-9._-]/g, '_');
    cfg.workDir = dir(SPECS.workDir, false) || path.join(root, 'series-sum-app', jobPart);
  }
  return cfg;
}

export function wantsHelp(argv: string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}
