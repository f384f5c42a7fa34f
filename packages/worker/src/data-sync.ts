// Moving a job's data (design.md, "Worker data sync"):
// - before: every object under bucket/prefix that matches the pattern comes down into local_path;
// - during: the folders are scanned while the job runs; a new or changed file is uploaded once it
//   has stopped changing (settle), or, if it never stops, once max-wait has passed since its first
//   change not yet uploaded (so a checkpoint rewritten every 100 ms still reaches the bucket while
//   the job runs); a removed one is deleted from the bucket. Each upload reads a snapshot (a reflink
//   or copy taken while the file held still, or for a file that only grows, the part already
//   written), so the object is always one whole version; a file that changed during its upload is
//   uploaded again, so the newest version of every file lands last (Kelpie ignored such changes
//   and could lose the last checkpoint);
// - after: once the job exited 0, its folders are uploaded (skipping files the during-sync
//   already put there unchanged).
import { constants, createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, truncate, unlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { backoffDelay } from '@drover/common';
import {
  downloadPrefix, errorMessage, gzipKey, keyFor, listLocalFiles, uploadFile, uploadFolder, uploadGzipped,
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
  /** The job's `compression`: gzip uploads under `<key>.gz`, gunzip `.gz` downloads. */
  gzip?: boolean;
}

/** A state-file update must never fail a transfer: it is a courtesy to the app. */
function noteState(ctx: SyncContext, p: Promise<void>): void {
  p.catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'could not update the state file'));
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
    const r = await downloadPrefix(ctx.store, rule.bucket, rule.prefix, rule.localPath, { ...ctx.transfer, ...stateHooks(ctx, 'download'), filter: rule.matches, gzip: ctx.gzip });
    ctx.log.info({ bucket: rule.bucket, prefix: rule.prefix, local_path: rule.localPath, files: r.files, bytes: r.bytes }, 'downloaded');
    return r;
  });
}

/** Identity of one version of a file: size, modification time (ns) and inode. */
async function signature(file: string): Promise<string | undefined> {
  return (await version(file))?.sig;
}

interface Version {
  sig: string;
  size: number;
  ino: bigint;
}

async function version(file: string): Promise<Version | undefined> {
  try {
    const st = await lstat(file, { bigint: true });
    return st.isFile() ? { sig: `${st.size}:${st.mtimeNs}:${st.ino}`, size: Number(st.size), ino: st.ino } : undefined;
  } catch {
    return undefined;
  }
}

/** A digest of a file's first `length` bytes. */
async function digestOfPrefix(file: string, length: number): Promise<string> {
  const h = createHash('sha1');
  if (length > 0) for await (const chunk of createReadStream(file, { start: 0, end: length - 1 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** After a failed upload the file waits 1 s before its next try, doubling per failure up to a minute. */
const UPLOAD_RETRY = { baseMs: 1000, maxMs: 60_000, jitter: 'none' } as const;

interface FileState {
  sig: string;
  /** When `sig` was first seen (ms). */
  since: number;
  /** The version last uploaded, or present when the job started (it came from the bucket). */
  uploadedSig?: string;
  /** The version whose snapshot is being uploaded now. */
  takenSig?: string;
  /** When a version neither uploaded nor being uploaded was first seen (ms): max-wait counts from here. */
  dirtySince?: number;
  busy: boolean;
  failures: number;
  /** After a failed upload, not before this time (ms): see UPLOAD_RETRY. */
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
  /**
   * A file that keeps changing is uploaded anyway once this long has passed since its first change
   * not yet uploaded (Kelpie's FILE_WATCHER_MAX_WAIT_MS). Default 5000.
   */
  maxWaitMs?: number;
  /** Time between two scans of the folders; default half the settle time, within 100–500 ms. */
  scanIntervalMs?: number;
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
    const every = this.o.scanIntervalMs ?? Math.max(100, Math.min(500, this.o.settleMs / 2));
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
    const maxWait = this.o.maxWaitMs ?? 5000;
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
        if (f.sig === (f.takenSig ?? f.uploadedSig)) f.dirtySince = undefined;
        else f.dirtySince ??= now;
        const settled = now - f.since >= this.o.settleMs;
        const overdue = f.dirtySince !== undefined && now - f.dirtySince >= maxWait;
        const due = final || ((settled || overdue) && now >= f.retryAt);
        if (!f.busy && f.sig !== f.uploadedSig && due) this.enqueue(w, rel, f, 'upload', overdue && !settled && !final);
      }
      for (const [rel, f] of w.files) {
        if (present.has(rel) || f.busy) continue;
        if (f.uploadedSig === undefined) w.files.delete(rel);
        else this.enqueue(w, rel, f, 'delete');
      }
    }
  }

  private enqueue(w: Watched, rel: string, f: FileState, what: 'upload' | 'delete', moving = false): void {
    if (this.signal.aborted) return;
    f.busy = true;
    this.queue.push(() => (what === 'upload' ? this.upload(w, rel, f, moving) : this.remove(w, rel, f)));
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

  /** The object key of a file of rule `w` (with `.gz` when the job compresses). */
  private keyOf(w: Watched, rel: string): string {
    const key = keyFor(w.rule.prefix, rel);
    return this.o.gzip ? gzipKey(key) : key;
  }

  /**
   * Copies `file` to `snapshot` and returns the version the copy holds, or undefined when no
   * consistent copy could be had this time (the next scan tries again). A copy is consistent when
   * the file held still while it was copied. A file that is still `moving` (due by max-wait, not
   * settled) may instead have grown during the copy: then the copy is cut to the length the file
   * had before it, and kept if a second read of that part of the file gives the same digest, which
   * an append-only writer (a log, a trajectory) satisfies and a rewrite in place does not.
   */
  private async snapshot(file: string, snapshot: string, moving: boolean): Promise<Version | undefined> {
    const before = await version(file);
    if (!before) return undefined;
    await copyFile(file, snapshot, constants.COPYFILE_FICLONE);
    const after = await version(file);
    if (after?.sig === before.sig) return before;
    if (!moving || !after || after.ino !== before.ino || after.size < before.size) return undefined;
    await truncate(snapshot, before.size);
    const [copied, again] = await Promise.all([digestOfPrefix(snapshot, before.size), digestOfPrefix(file, before.size)]);
    return copied === again ? before : undefined;
  }

  private async upload(w: Watched, rel: string, f: FileState, moving: boolean): Promise<void> {
    const { store, state, jobId, log } = this.o;
    const file = path.join(w.base, rel);
    const key = this.keyOf(w, rel);
    const snapshot = path.join(this.o.snapshotDir, `${jobId}-${process.pid}-${++this.snapshotSeq}`);
    let listed = false;
    const dirtySince = f.dirtySince;
    try {
      // Snapshot only a version that holds still for the copy (or an append's written part); else wait for the next scan.
      const taken = await this.snapshot(file, snapshot, moving);
      if (!taken) return;
      f.takenSig = taken.sig;
      if (f.sig === taken.sig) f.dirtySince = undefined;
      listed = true;
      noteState(this.o, state.uploadStarted(jobId, file));
      const startedAt = Date.now();
      const transfer = { ...this.o.transfer, signal: this.signal };
      if (this.o.gzip) await uploadGzipped(store, snapshot, w.rule.bucket, key, transfer);
      else await uploadFile(store, snapshot, w.rule.bucket, key, transfer);
      f.uploadedSig = taken.sig;
      f.failures = 0;
      this.uploaded.set(`${w.rule.bucket}\0${key}`, taken.sig);
      this.uploads++;
      log.info({ bucket: w.rule.bucket, key, file, bytes: taken.size, durationMs: Date.now() - startedAt, ...(moving ? { stillChanging: true } : {}) }, 'uploaded');
    } catch (err) {
      if (this.signal.aborted) return;
      // Not uploaded after all: max-wait still counts from the first change this upload was for.
      if (dirtySince !== undefined) f.dirtySince = Math.min(dirtySince, f.dirtySince ?? Infinity);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return; // removed or moved meanwhile: the next scan sees what is there
      f.failures++;
      f.retryAt = Date.now() + backoffDelay(UPLOAD_RETRY, f.failures);
      log.warn({ bucket: w.rule.bucket, key, file, err: errorMessage(err), failures: f.failures }, 'upload failed; it is retried on the next scan');
    } finally {
      f.busy = false;
      f.takenSig = undefined;
      if (listed) noteState(this.o, state.uploadDone(jobId, file));
      await unlink(snapshot).catch(() => {});
    }
  }

  private async remove(w: Watched, rel: string, f: FileState): Promise<void> {
    const key = this.keyOf(w, rel);
    try {
      await this.o.transfer.beforeCommit?.(); // a delete is a write too: fenced like uploads
      await this.o.store.delete(w.rule.bucket, key);
      w.files.delete(rel);
      this.uploaded.delete(`${w.rule.bucket}\0${key}`);
      this.deletes++;
      this.o.log.info({ bucket: w.rule.bucket, key }, 'deleted (removed locally)');
    } catch (err) {
      if (!this.signal.aborted) this.o.log.warn({ bucket: w.rule.bucket, key, err: errorMessage(err) }, 'delete failed; retried on the next scan');
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
        const key = keyFor(rule.prefix, rel);
        const done = during.uploadedVersion(rule.bucket, ctx.gzip ? gzipKey(key) : key);
        if (done !== undefined && done === (await signature(path.join(rule.localPath, rel)))) skip.add(rel);
      }
    }
    const r = await uploadFolder(ctx.store, rule.localPath, rule.bucket, rule.prefix, {
      ...ctx.transfer,
      ...stateHooks(ctx, 'upload'),
      filter: (rel) => rule.matches(rel) && !skip.has(rel),
      gzip: ctx.gzip,
    });
    ctx.log.info({ bucket: rule.bucket, prefix: rule.prefix, files: r.files, bytes: r.bytes, skipped: skip.size }, 'uploaded after exit');
    return r;
  });
}
