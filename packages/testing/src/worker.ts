// Real `drover worker` processes for tests: spawned with the Kelpie environment, their JSON log
// lines collected so a test can wait for what the worker says it did.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DROVER_BIN } from './server.js';
import { waitFor } from './wait.js';

export interface WorkerLogLine {
  level: number;
  msg: string;
  job?: string;
  [k: string]: unknown;
}

export interface TestWorker {
  proc: ChildProcess;
  pid: number;
  dataRoot: string;
  machineId: string;
  logs: WorkerLogLine[];
  /** Raw stderr text (errors that are not log lines). */
  stderr(): string;
  /** Resolves with the first log line matching, waiting up to timeoutMs. */
  waitForLog(what: string, match: (l: WorkerLogLine) => boolean, timeoutMs?: number): Promise<WorkerLogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal to the worker only. */
  signal(sig: NodeJS.Signals): void;
  /** The node dies: SIGKILL to the worker and to every job process it started. */
  killNode(): Promise<void>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface WorkerSpec {
  url: string;
  key: string;
  group: string;
  machineId?: string;
  dataRoot?: string;
  /** DROVER_STORAGE / AWS_* for the store. */
  storageEnv?: Record<string, string>;
  env?: Record<string, string>;
  args?: string[];
  /** The worker's (and so the job's) working directory; the data root by default. */
  cwd?: string;
  /** Run this executable (the single-file drover-worker) instead of `node drover.js worker`. */
  bin?: string;
  /** The worker's PATH (default: this process's). */
  path?: string;
}

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let seq = 0;

export function spawnWorker(spec: WorkerSpec): TestWorker {
  const machineId = spec.machineId ?? `machine-${process.pid}-${++seq}`;
  const dataRoot = spec.dataRoot ?? mkdtempSync(join(tmpdir(), 'drover-worker-'));
  // Only what the worker needs: a test's own AWS variables must not leak into it.
  const base: Record<string, string> = { PATH: spec.path ?? process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };
  const [file, args] = spec.bin ? [spec.bin, spec.args ?? []] : [process.execPath, [DROVER_BIN, 'worker', ...(spec.args ?? [])]];
  const proc = spawn(file, args, {
    cwd: spec.cwd ?? dataRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...base,
      KELPIE_API_URL: spec.url,
      KELPIE_API_KEY: spec.key,
      SALAD_MACHINE_ID: machineId,
      SALAD_CONTAINER_GROUP_ID: spec.group,
      DROVER_DATA_ROOT: dataRoot,
      DROVER_IMDS_URL: 'http://127.0.0.1:9',
      DROVER_SYNC_SETTLE_S: '0.2',
      DROVER_KILL_GRACE_S: '3',
      DROVER_LOG_LEVEL: 'debug',
      ...spec.storageEnv,
      ...spec.env,
    },
  });
  const logs: WorkerLogLine[] = [];
  let stderr = '';
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as WorkerLogLine);
    } catch {
      logs.push({ level: 30, msg: line });
    }
  });
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const jobPids = () => logs.filter((l) => l.msg === 'job process started' && typeof l.pid === 'number').map((l) => l.pid as number);
  return {
    proc,
    pid: proc.pid!,
    dataRoot,
    machineId,
    logs,
    stderr: () => stderr,
    exited,
    async waitForLog(what, match, timeoutMs = 20_000) {
      let found: WorkerLogLine | undefined;
      try {
        await waitFor(what, () => (found = logs.find(match)) !== undefined, timeoutMs);
      } catch (err) {
        const tail = logs.slice(-15).map((l) => JSON.stringify(l)).join('\n');
        throw new Error(`${(err as Error).message}\nlast worker log lines:\n${tail}\nstderr: ${stderr.slice(-2000)}`);
      }
      return found!;
    },
    signal: (sig) => proc.kill(sig),
    async killNode() {
      proc.kill('SIGKILL');
      for (const pid of jobPids()) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await exited;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}
