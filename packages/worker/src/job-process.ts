// A job's process: spawned without a shell (the command and its arguments go to execve as given),
// in its own process group so a signal reaches everything it started (a wrapper script's
// children too). Its stdout and stderr are logged line by line, tagged with the job id, and handed
// to `onLine` (the log shipper).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';

export interface JobExit {
  /** Exit code, or null when a signal ended it or it never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why it could not start (ENOENT, EACCES...). */
  startError?: Error;
}

export interface JobProcessOptions {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The job's logger (it carries the job's id). */
  log: Logger;
  /** Each line of output, besides the log (the log shipper takes them). */
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
}

/** Process groups of running jobs, killed if the worker itself exits. */
const live = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of live) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export class JobProcess {
  readonly exited: Promise<JobExit>;
  private readonly child: ChildProcess;
  private done = false;

  constructor(private readonly o: JobProcessOptions) {
    installExitHook();
    this.child = spawn(o.command, o.args, { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, shell: false });
    const pid = this.child.pid;
    if (pid !== undefined) live.add(pid);
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = this.child[stream];
      if (!source) continue;
      createInterface({ input: source, crlfDelay: Infinity }).on('line', (line) => {
        o.log.info({ stream }, line);
        o.onLine?.(stream, line);
      });
    }
    this.exited = new Promise<JobExit>((resolve) => {
      this.child.once('error', (err) => {
        if (pid !== undefined) return; // a signal that could not be sent; 'exit' still follows
        this.done = true;
        resolve({ code: null, signal: null, startError: err });
      });
      this.child.once('exit', (code, signal) => {
        this.done = true;
        if (pid !== undefined) live.delete(pid);
        resolve({ code, signal });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.done;
  }

  /** Sends `sig` to the job's whole process group. */
  signal(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined || this.done) return;
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        this.child.kill(sig);
      } catch {
        // already gone
      }
    }
  }

  /**
   * Asks the job to stop with `first` (SIGINT on cancel, SIGTERM on shutdown), and kills its group
   * with SIGKILL if it is still running after `graceMs`.
   */
  async stop(first: NodeJS.Signals, graceMs: number): Promise<JobExit> {
    if (!this.done) {
      this.o.log.info({ signal: first, graceMs }, 'stopping the job process');
      this.signal(first);
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          if (!this.done) this.o.log.warn(`job process still running ${graceMs} ms after ${first}: SIGKILL`);
          this.signal('SIGKILL');
          resolve();
        }, graceMs);
      });
      await Promise.race([this.exited, killed]);
      clearTimeout(timer);
    }
    return this.exited;
  }
}
