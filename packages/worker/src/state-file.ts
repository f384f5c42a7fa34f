// The KELPIE_STATE_FILE a job can read to see the worker's upload and download backlog (seed 003
// item 13). Every change rewrites the whole file atomically: a temp file in the same folder,
// fsync, rename over the old one, so a reader only ever sees a complete version.
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/** `running` until the worker has reported the job (uploads after exit included), then final. */
export type StateJobStatus = 'running' | 'completed' | 'failed' | 'canceled';

export interface StateJob {
  id: string;
  status: StateJobStatus;
  /** ISO 8601 time the job started on this worker. */
  start: string;
  /** Absolute paths of files being uploaded / downloaded right now. */
  activeUploads: string[];
  activeDownloads: string[];
  /** ISO 8601 time the job's process exited; null while it runs. */
  exitTime: string | null;
  /** The process's exit code; null while it runs (or when it was killed by a signal). */
  exitCode: number | null;
}

export interface StateSnapshot {
  /** ISO 8601 time the worker started. */
  start: string;
  jobs: StateJob[];
}

export interface StateFileOptions {
  /** Clock for the times written; defaults to the system clock. */
  now?: () => Date;
}

export class StateFile {
  private readonly state: StateSnapshot;
  private readonly now: () => Date;
  private queue: Promise<unknown> = Promise.resolve();
  private tempSeq = 0;

  private constructor(
    readonly path: string,
    options: StateFileOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    this.state = { start: this.now().toISOString(), jobs: [] };
  }

  /** Creates (or replaces) the state file at `filePath` with no jobs. Its folder must exist. */
  static async create(filePath: string, options: StateFileOptions = {}): Promise<StateFile> {
    const file = new StateFile(path.resolve(filePath), options);
    await file.update(() => {});
    return file;
  }

  /** A deep copy of the current state, as last written. */
  snapshot(): StateSnapshot {
    return structuredClone(this.state);
  }

  addJob(id: string, start: Date = this.now()): Promise<void> {
    return this.update((s) => {
      if (s.jobs.some((j) => j.id === id)) throw new Error(`state file: job ${id} is already listed`);
      s.jobs.push({ id, status: 'running', start: start.toISOString(), activeUploads: [], activeDownloads: [], exitTime: null, exitCode: null });
    });
  }

  uploadStarted(id: string, file: string): Promise<void> {
    return this.updateJob(id, (j) => addOnce(j.activeUploads, file));
  }

  uploadDone(id: string, file: string): Promise<void> {
    return this.updateJob(id, (j) => remove(j.activeUploads, file));
  }

  downloadStarted(id: string, file: string): Promise<void> {
    return this.updateJob(id, (j) => addOnce(j.activeDownloads, file));
  }

  downloadDone(id: string, file: string): Promise<void> {
    return this.updateJob(id, (j) => remove(j.activeDownloads, file));
  }

  /** Records the process's exit; `exitCode` is null when a signal ended it. */
  setExit(id: string, exitCode: number | null, exitTime: Date = this.now()): Promise<void> {
    return this.updateJob(id, (j) => {
      j.exitCode = exitCode;
      j.exitTime = exitTime.toISOString();
    });
  }

  setStatus(id: string, status: StateJobStatus): Promise<void> {
    return this.updateJob(id, (j) => {
      j.status = status;
    });
  }

  removeJob(id: string): Promise<void> {
    return this.update((s) => {
      s.jobs = s.jobs.filter((j) => j.id !== id);
    });
  }

  /** Drops every job whose status is final (no longer `running`). */
  dropFinished(): Promise<void> {
    return this.update((s) => {
      s.jobs = s.jobs.filter((j) => j.status === 'running');
    });
  }

  /** Resolves once every change made so far is on disk. */
  async flush(): Promise<void> {
    await this.queue.catch(() => {});
  }

  private updateJob(id: string, change: (job: StateJob) => void): Promise<void> {
    return this.update((s) => {
      const job = s.jobs.find((j) => j.id === id);
      if (!job) throw new Error(`state file: no job ${id}`);
      change(job);
    });
  }

  /**
   * Applies `change` and rewrites the file, after every earlier change has been written: changes
   * are applied and written in call order, one write at a time. A change that throws leaves the
   * state untouched and rejects only its own call.
   */
  private update(change: (s: StateSnapshot) => void): Promise<void> {
    const run = this.queue.then(async () => {
      const next = structuredClone(this.state);
      change(next);
      this.state.start = next.start;
      this.state.jobs = next.jobs;
      await this.write(JSON.stringify(this.state, null, 2) + '\n');
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private async write(text: string): Promise<void> {
    const dir = path.dirname(this.path);
    const temp = path.join(dir, `.${path.basename(this.path)}.${process.pid}.${++this.tempSeq}.tmp`);
    try {
      const handle = await open(temp, 'w', 0o644);
      try {
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.path);
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
    // Make the rename itself durable; not every filesystem lets a folder be fsynced.
    const folder = await open(dir, 'r').catch(() => undefined);
    if (folder) await folder.sync().catch(() => {}).finally(() => folder.close());
  }
}

function addOnce(list: string[], item: string): void {
  if (!list.includes(item)) list.push(item);
}

function remove(list: string[], item: string): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}
