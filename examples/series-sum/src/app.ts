// The demo's computation, as the seeds' apps do it: sum start..end one number per step (a step
// takes STEP_RUNNING_TIME seconds), save the state (last step, partial sum) every
// STATE_SAVING_INTERVAL seconds, resume from the last saved state, and write the output at the end.
// Where the files come from and go to is the DataSide's business (worker- or app-managed).
import { randomFillSync } from 'node:crypto';
import { appendFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as yieldNow, setTimeout as sleep } from 'node:timers/promises';
import type { AppConfig } from './config.js';
import { LAYOUT } from './job.js';

/** The input file is missing or says something the app cannot sum. */
export class InputError extends Error {
  override name = 'InputError';
}

export interface SeriesInput {
  start: number;
  end: number;
}

export interface SeriesRun {
  machine: string;
  /** Step the machine started (or resumed) at. */
  from: number;
  at: string;
}

export interface SeriesState {
  version: 1;
  start: number;
  end: number;
  /** Steps done: start..start+step-1 are summed. */
  step: number;
  /** Partial sum, decimal. */
  sum: string;
  machines: string[];
  runs: SeriesRun[];
}

export interface SeriesOutput {
  start: number;
  end: number;
  sum: string;
  steps: number;
  machines: string[];
  runs: SeriesRun[];
}

export interface Folders {
  input: string;
  state: string;
  load: string;
  output: string;
}

/** How the app's files reach storage. Paths given to it are absolute. */
export interface DataSide {
  readonly folders: Folders;
  /** Where the input comes from, for messages. */
  readonly inputSource: string;
  /**
   * Each save writes a new load file (load-<step>.bin), removed locally once saved() has resolved:
   * an upload queue that cannot keep up then grows, as in the seeds. Otherwise one load.bin is
   * rewritten per save.
   */
  readonly uniqueLoadFiles: boolean;
  /** Before the run: bring the input and the last state into the folders. */
  prepare(): Promise<void>;
  /** Files just saved (state, log, load): queue their upload; resolves once they may be rewritten. */
  saved(files: string[]): Promise<void>;
  /** Why the node should be given up (uploads piling up or failing), if it should. */
  overloaded(): string | undefined;
  /** The output files are written: upload them and wait. Throws if they could not be uploaded. */
  finish(files: string[]): Promise<void>;
  /** Stopped by a signal: push what is saved, waiting a bounded time. */
  interrupted(): Promise<void>;
  close(): Promise<void>;
}

export interface RunOptions {
  /** Aborted on SIGINT/SIGTERM; its reason is the signal name. */
  stop: AbortSignal;
  /** Called when the DataSide reports the node overloaded (once). */
  reallocate?: (reason: string) => Promise<void>;
  /** Where the log lines go besides log.txt (default console.log). */
  print?: (line: string) => void;
  now?: () => Date;
}

const MiB = 1024 * 1024;

/** Parses the input file's text; throws InputError naming the field. */
export function parseInput(text: string): SeriesInput {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InputError(`the input is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InputError('the input must be a JSON object like {"start": 1, "end": 1000}');
  const o = v as Record<string, unknown>;
  const int = (name: 'start' | 'end'): number => {
    const x = o[name];
    if (x === undefined) throw new InputError(`the input has no "${name}"`);
    const n = typeof x === 'string' && /^-?\d+$/.test(x.trim()) ? Number(x) : x;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new InputError(`"${name}" must be an integer between ${Number.MIN_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(x)}`);
    return n;
  };
  const start = int('start');
  const end = int('end');
  if (start > end) throw new InputError(`"start" (${start}) is greater than "end" (${end})`);
  if (end - start + 1 > Number.MAX_SAFE_INTEGER) throw new InputError(`the range ${start}..${end} has more than ${Number.MAX_SAFE_INTEGER} steps`);
  return { start, end };
}

/** Reads the state file; undefined when there is none or it does not belong to this input. */
async function readState(file: string, input: SeriesInput): Promise<{ state?: SeriesState; note?: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    const s = JSON.parse(text) as Partial<SeriesState>;
    const total = input.end - input.start + 1;
    const ok = s.version === 1 && s.start === input.start && s.end === input.end && Number.isSafeInteger(s.step)
      && (s.step as number) >= 0 && (s.step as number) <= total && typeof s.sum === 'string' && /^-?\d+$/.test(s.sum)
      && Array.isArray(s.machines) && Array.isArray(s.runs);
    if (!ok) return { note: 'the saved state is for another input or malformed: starting over' };
    return { state: s as SeriesState };
  } catch {
    return { note: 'the saved state is not valid JSON: starting over' };
  }
}

/** Writes a file whole: a temp file (named so the worker's sync skips it) renamed into place. */
async function writeAtomic(file: string, data: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.drover-tmp-${path.basename(file)}-${process.pid}`);
  await writeFile(tmp, data);
  await rename(tmp, file);
}

/** SIZE MiB of test data, different on every save. */
async function writeLoad(file: string, mib: number, step: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.drover-tmp-${path.basename(file)}-${process.pid}`);
  const block = Buffer.allocUnsafe(MiB);
  const fh = await open(tmp, 'w');
  try {
    for (let i = 0; i < mib; i++) {
      randomFillSync(block, 0, 4096);
      block.write(`series-sum load, step ${step}, MiB ${i}\n`, 0, 'latin1');
      await fh.write(block, 0, block.length);
    }
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

export async function runSeriesSum(cfg: AppConfig, side: DataSide, o: RunOptions): Promise<number> {
  const print = o.print ?? ((line: string) => console.log(line));
  const now = o.now ?? (() => new Date());
  const { folders } = side;
  const files = {
    input: path.join(folders.input, LAYOUT.inputFile),
    state: path.join(folders.state, LAYOUT.stateFile),
    log: path.join(folders.state, LAYOUT.logFile),
    output: path.join(folders.output, LAYOUT.outputFile),
    outputLog: path.join(folders.output, LAYOUT.logFile),
  };
  const machine = cfg.machineId;
  const log = async (text: string): Promise<void> => {
    const line = `${now().toISOString()} machine ${machine}: ${text}`;
    print(line);
    await appendFile(files.log, `${line}\n`);
  };
  let lastProgress = 0;
  const progress = async (fraction: number, message: string, force = false): Promise<void> => {
    if (!cfg.progressFile) return;
    if (!force && Date.now() - lastProgress < 250) return;
    lastProgress = Date.now();
    await writeAtomic(cfg.progressFile, JSON.stringify({ fraction, message })).catch(() => {});
  };
  /** Copies the log into the output folder and hands the output and the final log to the DataSide. */
  const finish = async (output: object): Promise<void> => {
    await writeAtomic(files.output, `${JSON.stringify(output, null, 2)}\n`);
    await writeAtomic(files.outputLog, await readFile(files.log, 'utf8'));
    await side.finish([files.output, files.outputLog, files.log]);
  };

  for (const dir of Object.values(folders)) await mkdir(dir, { recursive: true });
  await side.prepare();

  let input: SeriesInput;
  try {
    let text: string;
    try {
      text = await readFile(files.input, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new InputError(`the input file is missing (nothing at ${side.inputSource})`);
      throw err;
    }
    input = parseInput(text);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // Bad input is the job's result, not a failure: no other node would do better with it.
    await log(`bad input: ${err.message}`);
    await finish({ error: err.message });
    await progress(1, 'bad input', true);
    return 0;
  }

  const total = input.end - input.start + 1;
  const { state: saved, note } = await readState(files.state, input);
  if (note) await log(note);
  const state: SeriesState = saved ?? { version: 1, start: input.start, end: input.end, step: 0, sum: '0', machines: [], runs: [] };
  if (!state.machines.includes(machine)) state.machines.push(machine);
  state.runs.push({ machine, from: state.step, at: now().toISOString() });
  let sum = BigInt(state.sum);
  let step = state.step;

  let reallocating = false;
  const save = async (): Promise<void> => {
    state.step = step;
    state.sum = sum.toString();
    // The log line first: the state never claims more than the log shows.
    await log(`saved step ${step} of ${total}, partial sum ${state.sum}`);
    await writeAtomic(files.state, `${JSON.stringify(state)}\n`);
    const written = [files.state, files.log];
    const load = side.uniqueLoadFiles ? path.join(folders.load, `load-${String(step).padStart(12, '0')}.bin`) : path.join(folders.load, LAYOUT.loadFile);
    if (cfg.sizeMiB > 0) {
      await writeLoad(load, cfg.sizeMiB, step);
      written.push(load);
    }
    await side.saved(written);
    if (cfg.sizeMiB > 0 && side.uniqueLoadFiles) await rm(load, { force: true });
    await progress(step / total, `step ${step}/${total}`, true);
    const reason = reallocating ? undefined : side.overloaded();
    if (reason !== undefined && o.reallocate) {
      reallocating = true;
      await log(`reallocating this node: ${reason}`);
      await o.reallocate(reason);
    }
  };

  await log(step === 0 ? `started ${input.start}..${input.end} (${total} steps) at step 0` : `resumed ${input.start}..${input.end} at step ${step} of ${total}, partial sum ${state.sum}`);
  await save();

  const stepMs = cfg.stepSeconds * 1000;
  const saveMs = cfg.saveIntervalSeconds * 1000;
  let lastSave = Date.now();
  while (step < total && !o.stop.aborted) {
    if (stepMs > 0) {
      try {
        await sleep(stepMs, undefined, { signal: o.stop });
      } catch {
        break; // stopped in the middle of a step: it is not done
      }
      sum += BigInt(input.start + step);
      step++;
    } else {
      // No step time: add numbers for a few milliseconds at a time, then let signals in.
      const until = Date.now() + 20;
      while (step < total && Date.now() < until) {
        sum += BigInt(input.start + step);
        step++;
      }
      await yieldNow();
    }
    await progress(step / total, `step ${step}/${total}`);
    if (Date.now() - lastSave >= saveMs && step < total) {
      await save();
      lastSave = Date.now();
    }
  }

  if (step < total) {
    const sig = typeof o.stop.reason === 'string' ? o.stop.reason : 'a signal';
    await log(`stopped by ${sig} at step ${step} of ${total}: saving the state`);
    await save();
    await side.interrupted();
    return sig === 'SIGINT' ? 130 : 143;
  }

  await save();
  const output: SeriesOutput = { start: input.start, end: input.end, sum: sum.toString(), steps: total, machines: state.machines, runs: state.runs };
  await log(`done: the sum of ${input.start}..${input.end} is ${output.sum}`);
  await finish(output);
  await progress(1, `done: ${total} steps`, true);
  return 0;
}

/** Worker-managed data: the job's sync block downloads and uploads the folders. */
export class WorkerManaged implements DataSide {
  readonly folders: Folders;
  readonly inputSource: string;
  readonly uniqueLoadFiles = false;
  constructor(cfg: AppConfig) {
    this.folders = { input: cfg.inputDir, state: cfg.stateDir, load: cfg.loadDir, output: cfg.outputDir };
    this.inputSource = path.join(cfg.inputDir, LAYOUT.inputFile);
  }
  async prepare(): Promise<void> {}
  async saved(): Promise<void> {}
  overloaded(): string | undefined {
    return undefined;
  }
  async finish(): Promise<void> {}
  async interrupted(): Promise<void> {}
  async close(): Promise<void> {}
}

/** Removes a folder, ignoring what cannot be removed. */
export async function removeFolder(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch(() => {});
}
