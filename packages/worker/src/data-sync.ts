// Moving a job's data (design.md, "Worker data sync"):
// - before: every object under bucket/prefix that matches the pattern comes down into local_path;
// - during: the folders are scanned while the job runs; a new or changed file is uploaded once it
//   has stopped changing, a removed one is deleted from the bucket. Each upload reads a snapshot
//   (a reflink or copy taken while the file was unchanged), so the object is always one whole
//   version; a file that changed during its upload is uploaded again, so the newest version of
//   every file lands (Kelpie ignored such changes and could lose the last checkpoint);
// - after: once the job exited 0, its folders are uploaded (skipping files the during-sync
//   already put there unchanged).
import { constants } from 'node:fs';
import { copyFile, lstat, mkdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  downloadPrefix, errorMessage, keyFor, listLocalFiles, uploadFile, uploadFolder,
  type FolderResult, type ObjectStore, type TransferOptions,
} from '@drover/storage';
import type { Logger } from 'pino';
import type { StateFile } from './state-file.js';
import type { SyncRule } from './sync-plan.js';

export interface SyncContext {
  store: ObjectStore;
  /** Part size, part concurrency and retries for every transfer. */
  transfer: TransferOptions;
  state: StateFile;
  jobId: string;
  log: Logger;
  signal?: AbortSignal;
}

/** A state-file update must never fail a transfer: it is a courtesy to the app. */
function noteState(ctx: SyncContext, p: Promise<void>): void {
  p.catch((err: unknown) => ctx.log.warn({ job: ctx.jobId, err: errorMessage(err) }, 'could not update the state file'));
}

/** The state-file entries of a folder transfer: each file is listed while it moves. */
function stateHooks(ctx: SyncContext, kind: 'upload' | 'download') {
  const [started, done] = kind === 'upload' ? (['uploadStarted', 'uploadDone'] as const) : (['downloadStarted', 'downloadDone'] as const);
  return {
    signal: ctx.signal,
    onFileStart: (f: { localPath: string }) => noteState(ctx, ctx.state[started](ctx.jobId, f.localPath)),
    onFileDone: (f: { localPath: string }) => noteState(ctx, ctx.state[done](ctx.jobId, f.localPath)),
  };
}

/** Runs `transfer` for each rule in turn and adds up what moved. */
async function eachRule(rules: readonly SyncRule[], transfer: (rule: SyncRule) => Promise<FolderResult>): Promise<FolderResult> {
  const total: FolderResult = { files: 0, bytes: 0 };
  for (const rule of rules) {
    const r = await transfer(rule);
    total.files += r.files;
    total.bytes += r.bytes;
  }
  return total;
}

/** Before-sync: downloads every rule's objects into its folder. */
export function downloadBefore(rules: readonly SyncRule[], ctx: SyncContext): Promise<FolderResult> {
  return eachRule(rules, async (rule) => {
    await mkdir(rule.localPath, { recursive: true });
    const r = await downloadPrefix(ctx.store, rule.bucket, rule.prefix, rule.localPath, { ...ctx.transfer, ...stateHooks(ctx, 'download'), filter: rule.matches });
    ctx.log.info({ job: ctx.jobId, bucket: rule.bucket, prefix: rule.prefix, local_path: rule.localPath, files: r.files, bytes: r.bytes }, 'downloaded');
    return r;
  });
}

/** Identity of one version of a file: size, modification time (ns) and inode. */
async function signature(file: string): Promise<string | undefined> {
  try {
    const st = await lstat(file, { bigint: true });
    return st.isFile() ? `${st.size}:${st.mtimeNs}:${st.ino}` : undefined;
  } catch {
    return undefined;
  }
}

interface FileState {
  sig: string;
  /** When `sig` was first seen (ms). */
  since: number;
  /** The version last uploaded, or present when the job started (it came from the bucket). */
  uploadedSig?: string;
  busy: boolean;
  failures: number;
  /** After a failed upload, not before this time (ms): backoff doubles per failure, up to a minute. */
  retryAt: number;
}

interface Watched {
  rule: SyncRule;
  /** Where the rule's folder is now (it moves aside when the job exits). */
  base: string;
  files: Map<string, FileState>;
}

export interface DuringSyncOptions extends SyncContext {
  /** Where upload snapshots are taken; on the data root's filesystem so reflinks work. */
  snapshotDir: string;
  /** A file is uploaded once unchanged for this long. */
  settleMs: number;
  /** Files uploaded at once (each with its own part concurrency). */
  fileConcurrency?: number;
}

export class DuringSync {
  private readonly watched: Watched[];
  private readonly abort = new AbortController();
  private readonly signal: AbortSignal;
  private timer: Promise<void> | undefined;
  private running = false;
  private scanning: Promise<void> = Promise.resolve();
  private readonly queue: (() => Promise<void>)[] = [];
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private snapshotSeq = 0;
  /** `bucket\0key` → the version uploaded, for the after-sync to skip. */
  private readonly uploaded = new Map<string, string>();
  uploads = 0;
  deletes = 0;

  constructor(
    rules: readonly SyncRule[],
    private readonly o: DuringSyncOptions,
  ) {
    this.watched = rules.map((rule) => ({ rule, base: rule.localPath, files: new Map() }));
    this.signal = o.signal ? AbortSignal.any([o.signal, this.abort.signal]) : this.abort.signal;
  }

  get empty(): boolean {
    return this.watched.length === 0;
  }

  /** Takes what is in the folders now as already in the bucket, then scans until paused. */
  async start(): Promise<void> {
    if (this.empty) return;
    await mkdir(this.o.snapshotDir, { recursive: true });
    for (const w of this.watched) {
      await mkdir(w.base, { recursive: true });
      for (const rel of await this.listMatching(w)) {
        const sig = await signature(path.join(w.base, rel));
        if (sig) w.files.set(rel, { sig, since: Date.now(), uploadedSig: sig, busy: false, failures: 0, retryAt: 0 });
      }
    }
    this.running = true;
    const every = Math.max(100, Math.min(500, this.o.settleMs / 2));
    this.timer = (async () => {
      while (this.running) {
        try {
          await sleep(every, undefined, { signal: this.signal });
        } catch {
          return;
        }
        if (!this.running) return;
        this.scanning = this.scan(false);
        await this.scanning;
      }
    })();
  }

  /** Stops scanning (uploads in flight go on: they read snapshots, not the folders). */
  async pause(): Promise<void> {
    this.running = false;
    await this.scanning;
  }

  /** The rules' folders were moved: `map` gives each folder's new place. */
  relocate(map: (folder: string) => string): void {
    for (const w of this.watched) w.base = map(w.base);
  }

  /**
   * The job's process has exited: uploads every file not yet in the bucket as it is now, deletes
   * removed ones, and resolves when all is done. Throws if some file could not be uploaded.
   */
  async finish(): Promise<void> {
    await this.pause();
    for (let round = 1; ; round++) {
      await this.scan(true);
      await this.drained();
      const left = this.watched.flatMap((w) => [...w.files.entries()].filter(([, f]) => f.sig !== f.uploadedSig).map(([rel]) => path.join(w.base, rel)));
      if (left.length === 0) return;
      if (round >= 3 || this.signal.aborted) throw new Error(`could not upload ${left.length} file(s): ${left.slice(0, 5).join(', ')}`);
    }
  }

  /** Gives up: aborts uploads in flight and waits for them to stop. */
  async abandon(): Promise<void> {
    this.running = false;
    this.abort.abort();
    this.queue.length = 0;
    await this.scanning;
    await this.drained();
  }

  /** The version of bucket/key this sync uploaded (a `signature`), if any. */
  uploadedVersion(bucket: string, key: string): string | undefined {
    return this.uploaded.get(`${bucket}\0${key}`);
  }

  private async listMatching(w: Watched): Promise<string[]> {
    return (await listLocalFiles(w.base)).filter((rel) => w.rule.matches(rel));
  }

  private async scan(final: boolean): Promise<void> {
    const now = Date.now();
    for (const w of this.watched) {
      const present = new Set(await this.listMatching(w));
      for (const rel of present) {
        const sig = await signature(path.join(w.base, rel));
        if (!sig) continue;
        let f = w.files.get(rel);
        if (!f) {
          f = { sig, since: now, busy: false, failures: 0, retryAt: 0 };
          w.files.set(rel, f);
        } else if (f.sig !== sig) {
          f.sig = sig;
          f.since = now;
        }
        const settled = final || now - f.since >= this.o.settleMs;
        if (!f.busy && f.sig !== f.uploadedSig && settled && (final || now >= f.retryAt)) this.enqueue(w, rel, f, 'upload');
      }
      for (const [rel, f] of w.files) {
        if (present.has(rel) || f.busy) continue;
        if (f.uploadedSig === undefined) w.files.delete(rel);
        else this.enqueue(w, rel, f, 'delete');
      }
    }
  }

  private enqueue(w: Watched, rel: string, f: FileState, what: 'upload' | 'delete'): void {
    if (this.signal.aborted) return;
    f.busy = true;
    this.queue.push(() => (what === 'upload' ? this.upload(w, rel, f) : this.remove(w, rel, f)));
    this.pump();
  }

  private pump(): void {
    const limit = this.o.fileConcurrency ?? 4;
    while (this.active < limit && this.queue.length > 0) {
      const task = this.queue.shift() as () => Promise<void>;
      this.active++;
      void task().finally(() => {
        this.active--;
        this.pump();
        if (this.active === 0 && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
  }

  private drained(): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async upload(w: Watched, rel: string, f: FileState): Promise<void> {
    const { store, state, jobId, log } = this.o;
    const file = path.join(w.base, rel);
    const key = keyFor(w.rule.prefix, rel);
    const snapshot = path.join(this.o.snapshotDir, `${jobId}-${process.pid}-${++this.snapshotSeq}`);
    let listed = false;
    try {
      // Snapshot only a version that holds still for the copy; else wait for the next scan.
      const before = await signature(file);
      if (!before) return;
      await copyFile(file, snapshot, constants.COPYFILE_FICLONE);
      if ((await signature(file)) !== before) return;
      listed = true;
      noteState(this.o, state.uploadStarted(jobId, file));
      await uploadFile(store, snapshot, w.rule.bucket, key, { ...this.o.transfer, signal: this.signal });
      f.uploadedSig = before;
      f.failures = 0;
      this.uploaded.set(`${w.rule.bucket}\0${key}`, before);
      this.uploads++;
      log.info({ job: jobId, bucket: w.rule.bucket, key, file }, 'uploaded');
    } catch (err) {
      if (this.signal.aborted) return;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return; // removed or moved meanwhile: the next scan sees what is there
      f.failures++;
      f.retryAt = Date.now() + Math.min(60_000, 1000 * 2 ** (f.failures - 1));
      log.warn({ job: jobId, bucket: w.rule.bucket, key, file, err: errorMessage(err), failures: f.failures }, 'upload failed; it is retried on the next scan');
    } finally {
      f.busy = false;
      if (listed) noteState(this.o, state.uploadDone(jobId, file));
      await unlink(snapshot).catch(() => {});
    }
  }

  private async remove(w: Watched, rel: string, f: FileState): Promise<void> {
    const key = keyFor(w.rule.prefix, rel);
    try {
      await this.o.transfer.beforeCommit?.(); // a delete is a write too: fenced like uploads
      await this.o.store.delete(w.rule.bucket, key);
      w.files.delete(rel);
      this.uploaded.delete(`${w.rule.bucket}\0${key}`);
      this.deletes++;
      this.o.log.info({ job: this.o.jobId, bucket: w.rule.bucket, key }, 'deleted (removed locally)');
    } catch (err) {
      if (!this.signal.aborted) this.o.log.warn({ job: this.o.jobId, bucket: w.rule.bucket, key, err: errorMessage(err) }, 'delete failed; retried on the next scan');
    } finally {
      f.busy = false;
    }
  }
}

/** After-sync: uploads each rule's folder, skipping files `during` already uploaded as they are. */
export function uploadAfter(rules: readonly SyncRule[], ctx: SyncContext, during?: DuringSync): Promise<FolderResult> {
  return eachRule(rules, async (rule) => {
    const skip = new Set<string>();
    if (during) {
      for (const rel of await listLocalFiles(rule.localPath)) {
        const done = during.uploadedVersion(rule.bucket, keyFor(rule.prefix, rel));
        if (done !== undefined && done === (await signature(path.join(rule.localPath, rel)))) skip.add(rel);
      }
    }
    const r = await uploadFolder(ctx.store, rule.localPath, rule.bucket, rule.prefix, {
      ...ctx.transfer,
      ...stateHooks(ctx, 'upload'),
      filter: (rel) => rule.matches(rel) && !skip.has(rel),
    });
    ctx.log.info({ job: ctx.jobId, bucket: rule.bucket, prefix: rule.prefix, files: r.files, bytes: r.bytes, skipped: skip.size }, 'uploaded after exit');
    return r;
  });
}
