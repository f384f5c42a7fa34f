// The app-side Checkpointer: the seeds' "upload thread and local queue" (demo app 3, for jobs
// submitted with `sync: {}`, whose application manages its own data).
//
// - save(files) snapshots each file NOW into a private folder (`<localDir>/.checkpointer/<pid>-<id>/`,
//   on the same file system as the files so COPYFILE_FICLONE can reflink where the file system
//   allows it), queues the snapshots and returns without waiting for the network. The app may
//   rewrite its files as soon as save() has resolved: the upload reads the snapshot, never the file.
// - One queue entry per target: a newer save of a file whose upload has not started replaces the
//   waiting one (its snapshot is deleted, a `replaced` event fires); the same target is never
//   uploaded twice at once, so the newest version is always the last to land.
// - Uploads go through uploadFile (multipart, per-step retries with backoff, size/MD5 checks),
//   `concurrency` files at a time. An upload that still fails is dropped and counted in
//   stats().errors; the app's next save of that file queues a fresh copy. Snapshots are deleted
//   once their upload has ended, either way.
// - Where the uploads run: with `storeSettings` (Checkpointer.fromEnv sets them) a worker thread
//   opens its own store from those settings and does all the uploading, so the MD5 and SigV4
//   SHA-256 hashing of every byte and the HTTP work never take time from the app's thread; on
//   Linux that thread also runs at a higher niceness (10 by default), so when the app and the
//   uploads compete for a core the app wins. With only a `store` object (which cannot cross
//   threads) the uploads run on the calling thread.
// - The `.checkpointer/` folder is never uploaded or restored, and its files are named
//   `.drover-snap-*`, which the worker's folder sync skips as well.
import { constants as fsConstants, readlinkSync } from 'node:fs';
import { copyFile, mkdir, readdir, rm, rmdir, stat } from 'node:fs/promises';
import { getPriority, setPriority } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isMainThread, parentPort, workerData, Worker } from 'node:worker_threads';
import {
  downloadPrefix, errorMessage, isTempName, keyFor, openStore, storeSettingsFromEnv, uploadFile,
  type ObjectStore, type RetryOptions, type StoreSettings,
} from '@drover/storage';

export interface CheckpointerEvent {
  type: 'uploaded' | 'error' | 'replaced';
  /** The file's path relative to localDir, with `/`. */
  path: string;
  /** uploaded: the bytes stored; replaced: the size of the snapshot that was dropped. */
  bytes?: number;
  /** error: why the upload failed (after its retries). */
  error?: unknown;
}

export interface CheckpointerOptions {
  store: ObjectStore;
  bucket: string;
  /** Remote folder: object key = prefix (normalised to end with '/') + path relative to localDir. */
  prefix: string;
  /** The files saved live under this folder; save() takes paths relative to it or absolute inside it. */
  localDir: string;
  /** Uploads in flight (default 2). */
  concurrency?: number;
  /** Attempts per upload step (each part, the put, the check) before the upload counts as an error and is dropped (default 5). */
  maxAttempts?: number;
  /** Base backoff between attempts, doubling each retry, with full jitter (default 500). */
  retryDelayMs?: number;
  onEvent?: (e: CheckpointerEvent) => void;
  /**
   * Settings to open the store again inside a worker thread, which then does every upload (so the
   * app's thread does none of the hashing and HTTP work). fromEnv sets this. Without it, uploads
   * run on the calling thread through `store`. `store` is still used for restore() and as the
   * fallback should the thread die.
   */
  storeSettings?: StoreSettings;
  /**
   * Niceness of the upload thread (Linux; 0..19, default 10): when the app's threads and the
   * uploads want the same CPU core, the app wins. Only used with storeSettings; 0 leaves it alone.
   */
  uploadThreadNice?: number;
}

export interface CheckpointerStats {
  /** Queued, not yet started. */
  pending: number;
  inFlight: number;
  /** Uploads that failed after maxAttempts (seed 000's app reallocates when errors > 3). */
  errors: number;
  /** Uploads done. */
  uploaded: number;
  bytesUploaded: number;
  /** Recent upload throughput (bytes sent in the last few seconds of activity). */
  bytesPerSecond: number;
}

/** The snapshot folder's name inside localDir: never uploaded, never restored. */
export const CHECKPOINTER_DIR = '.checkpointer';
const SNAPSHOT_PREFIX = '.drover-snap-';
const WORKER_TAG = 'drover-checkpointer-uploader/1';
/** Throughput is measured over this much recent time. */
const RATE_WINDOW_MS = 5_000;

interface Job {
  rel: string;
  key: string;
  snapshot: string;
  size: number;
}

/** Runs uploads of snapshot files: on this thread, or in a worker thread. */
interface Uploader {
  upload(file: string, key: string, onProgress: (bytes: number) => void): Promise<number>;
  close(): Promise<void>;
}

class InlineUploader implements Uploader {
  constructor(private readonly store: ObjectStore, private readonly bucket: string, private readonly retry: RetryOptions) {}

  async upload(file: string, key: string, onProgress: (bytes: number) => void): Promise<number> {
    const r = await uploadFile(this.store, file, this.bucket, key, { retry: this.retry, onProgress: (p) => onProgress(p.bytes) });
    return r.size;
  }

  async close(): Promise<void> {}
}

interface WorkerInit {
  tag: typeof WORKER_TAG;
  settings: StoreSettings;
  bucket: string;
  retry: { attempts: number; baseDelayMs: number };
  nice: number;
}
type ToWorker = { type: 'upload'; id: number; file: string; key: string };
type FromWorker =
  | { type: 'progress'; id: number; bytes: number }
  | { type: 'done'; id: number; size: number }
  | { type: 'failed'; id: number; error: { name: string; message: string; code?: string } };

interface Call {
  resolve: (size: number) => void;
  reject: (err: unknown) => void;
  onProgress: (bytes: number) => void;
}

/**
 * Uploads in a worker thread that runs this same module (see runUploaderThread at the end). The
 * thread starts with the first upload; it keeps the process alive only while uploads are in it.
 * If it dies, the calls in it fail (counted as errors) and later uploads run inline.
 */
class ThreadUploader implements Uploader {
  private worker: Worker | undefined;
  private broken = false;
  private nextId = 1;
  private readonly calls = new Map<number, Call>();

  constructor(private readonly init: WorkerInit, private readonly fallback: Uploader) {}

  private start(): Worker {
    const w = new Worker(new URL(import.meta.url), { workerData: this.init });
    w.unref();
    w.on('message', (m: FromWorker) => {
      const call = this.calls.get(m.id);
      if (!call) return;
      if (m.type === 'progress') {
        call.onProgress(m.bytes);
        return;
      }
      this.calls.delete(m.id);
      if (this.calls.size === 0) w.unref();
      if (m.type === 'done') call.resolve(m.size);
      else call.reject(Object.assign(new Error(m.error.message), { name: m.error.name, code: m.error.code }));
    });
    w.on('error', (err) => this.fail(w, err));
    w.on('exit', (code) => this.fail(w, new Error(`the checkpointer's upload thread exited (code ${code})`)));
    return w;
  }

  private fail(w: Worker, err: unknown): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    this.broken = true;
    process.emitWarning(`Checkpointer: the upload thread failed (${errorMessage(err)}); uploading on the app's thread from now on`);
    const calls = [...this.calls.values()];
    this.calls.clear();
    for (const c of calls) c.reject(err);
  }

  upload(file: string, key: string, onProgress: (bytes: number) => void): Promise<number> {
    if (this.broken) return this.fallback.upload(file, key, onProgress);
    const w = (this.worker ??= this.start());
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      this.calls.set(id, { resolve, reject, onProgress });
      w.ref();
      w.postMessage({ type: 'upload', id, file, key } satisfies ToWorker);
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.broken = true;
    if (w) await w.terminate();
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === code;
}

function wholeNumber(name: string, v: number | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min) throw new RangeError(`CheckpointerOptions.${name} must be a whole number >= ${min}, got ${String(v)}`);
  return v;
}

/** Is `pid` a live process? (Signal 0 only checks.) */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

export class Checkpointer {
  readonly bucket: string;
  /** The remote folder, ending with '/' (or '' for the bucket's root). */
  readonly prefix: string;
  /** localDir, absolute. */
  readonly localDir: string;
  /** This instance's snapshot folder: `<localDir>/.checkpointer/<pid>-<random>`. */
  readonly snapshotDir: string;

  private readonly store: ObjectStore;
  private readonly concurrency: number;
  private readonly retry: RetryOptions;
  private readonly onEvent: CheckpointerOptions['onEvent'];
  private readonly uploader: Uploader;

  /** Waiting uploads, one per target, in the order their target was first queued. */
  private readonly pending = new Map<string, Job>();
  private readonly running = new Set<string>();
  private snapshotting = 0;
  private seq = 0;
  private errors = 0;
  private uploaded = 0;
  private bytesUploaded = 0;
  private samples: { t: number; bytes: number }[] = [];
  private busySince = 0;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;
  private swept = false;

  constructor(opts: CheckpointerOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('Checkpointer: options are required');
    if (!opts.store || typeof opts.store.list !== 'function') throw new TypeError('CheckpointerOptions.store must be an ObjectStore');
    if (typeof opts.bucket !== 'string' || opts.bucket.trim() === '') throw new TypeError('CheckpointerOptions.bucket must be a non-empty string');
    if (typeof opts.prefix !== 'string') throw new TypeError('CheckpointerOptions.prefix must be a string (use "" for the bucket\'s root)');
    if (typeof opts.localDir !== 'string' || opts.localDir === '') throw new TypeError('CheckpointerOptions.localDir must be a non-empty path');
    if (opts.retryDelayMs !== undefined && !(Number.isFinite(opts.retryDelayMs) && opts.retryDelayMs >= 0)) {
      throw new RangeError(`CheckpointerOptions.retryDelayMs must be a number >= 0, got ${String(opts.retryDelayMs)}`);
    }
    if (opts.uploadThreadNice !== undefined && !(Number.isInteger(opts.uploadThreadNice) && opts.uploadThreadNice >= 0 && opts.uploadThreadNice <= 19)) {
      throw new RangeError(`CheckpointerOptions.uploadThreadNice must be a whole number from 0 to 19, got ${String(opts.uploadThreadNice)}`);
    }
    if (opts.onEvent !== undefined && typeof opts.onEvent !== 'function') throw new TypeError('CheckpointerOptions.onEvent must be a function');
    this.store = opts.store;
    this.bucket = opts.bucket;
    this.prefix = opts.prefix === '' || opts.prefix.endsWith('/') ? opts.prefix : `${opts.prefix}/`;
    this.localDir = path.resolve(opts.localDir);
    this.snapshotDir = path.join(this.localDir, CHECKPOINTER_DIR, `${process.pid}-${randomBytes(4).toString('hex')}`);
    this.concurrency = wholeNumber('concurrency', opts.concurrency, 2, 1);
    this.retry = { attempts: wholeNumber('maxAttempts', opts.maxAttempts, 5, 1), baseDelayMs: opts.retryDelayMs ?? 500 };
    this.onEvent = opts.onEvent;
    // The worker thread would open the store from these settings; refuse bad ones here, at once.
    if (opts.storeSettings) openStore(opts.storeSettings);
    const inline = new InlineUploader(this.store, this.bucket, this.retry);
    this.uploader = opts.storeSettings
      ? new ThreadUploader({
        tag: WORKER_TAG,
        settings: { ...opts.storeSettings },
        bucket: this.bucket,
        retry: { attempts: this.retry.attempts!, baseDelayMs: this.retry.baseDelayMs! },
        nice: wholeNumber('uploadThreadNice', opts.uploadThreadNice, 10, 0),
      }, inline)
      : inline;
  }

  /**
   * A Checkpointer on the store described by the environment — DROVER_STORAGE, AWS_* or
   * CLOUDFLARE_* as the worker reads them (STORE_ENV) — uploading from a worker thread
   * (`thread: false` keeps the uploads on the calling thread).
   */
  static fromEnv(opts: Omit<CheckpointerOptions, 'store'> & { env?: NodeJS.ProcessEnv; thread?: boolean }): Checkpointer {
    const { env, thread, ...rest } = opts;
    const settings = storeSettingsFromEnv(env ?? process.env);
    const store = openStore(settings);
    return new Checkpointer({ ...rest, store, storeSettings: thread === false ? undefined : settings });
  }

  /**
   * Downloads the latest state: every object under prefix (or only `files`, paths relative to
   * localDir) into localDir, replacing local files of the same name. Returns the relative paths
   * restored, sorted ([] when there is nothing).
   */
  async restore(opts: { files?: string[] } = {}): Promise<string[]> {
    let wanted: Set<string> | undefined;
    if (opts.files !== undefined) {
      if (!Array.isArray(opts.files)) throw new TypeError('Checkpointer.restore: files must be an array of paths relative to localDir');
      wanted = new Set(opts.files.map((f) => this.target(f, 'restore').rel));
      if (wanted.size === 0) return [];
    }
    const restored: string[] = [];
    await downloadPrefix(this.store, this.bucket, this.prefix, this.localDir, {
      retry: this.retry,
      filter: (rel) => !this.isOwn(rel) && (wanted === undefined || wanted.has(rel)),
      onFileDone: (f) => restored.push(f.relativePath),
    });
    return restored.sort();
  }

  /**
   * Snapshots the files NOW, queues them and resolves without waiting for the network: once it
   * has resolved the app may rewrite the files. A newer queued version of the same target
   * replaces an older one still waiting. A missing file rejects and queues nothing.
   */
  async save(files: string | string[]): Promise<void> {
    if (this.closed) throw new Error('Checkpointer.save: the checkpointer is closed');
    const list = typeof files === 'string' ? [files] : files;
    if (!Array.isArray(list)) throw new TypeError('Checkpointer.save: expected a path or an array of paths');
    const targets = list.map((f) => this.target(f, 'save'));
    if (targets.length === 0) return;
    this.snapshotting++;
    let jobs: Job[] = [];
    const removals: Promise<void>[] = [];
    try {
      // Every file must be there before anything is copied or queued.
      const sources = await Promise.all(targets.map((t) => this.check(t)));
      await this.prepareSnapshotDir();
      const made = await Promise.allSettled(sources.map((t) => this.snapshot(t)));
      const failed = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        await Promise.all(made.map((r) => (r.status === 'fulfilled' ? rm(r.value.snapshot, { force: true }) : undefined)));
        throw failed.reason;
      }
      jobs = made.map((r) => (r as PromiseFulfilledResult<Job>).value);
    } finally {
      this.snapshotting--;
      for (const job of jobs) {
        const replaced = this.enqueue(job);
        if (replaced) removals.push(replaced);
      }
      this.pump();
    }
    await Promise.all(removals);
  }

  stats(): CheckpointerStats {
    return {
      pending: this.pending.size,
      inFlight: this.running.size,
      errors: this.errors,
      uploaded: this.uploaded,
      bytesUploaded: this.bytesUploaded,
      bytesPerSecond: this.rate(),
    };
  }

  /** Resolves when no save() is snapshotting, the queue is empty and nothing is in flight (failed uploads count in stats().errors). */
  flush(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** flush(), then stop the uploader and remove the snapshot folder. save() rejects afterwards. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      await this.flush();
      await this.uploader.close();
      await rm(this.snapshotDir, { recursive: true, force: true });
      await rmdir(path.dirname(this.snapshotDir)).catch(() => undefined); // only if empty
    })();
    return this.closing;
  }

  // ---------------------------------------------------------------------------------------------

  /** A save()/restore() argument as an absolute path and a `/`-separated path relative to localDir. */
  private target(file: unknown, op: 'save' | 'restore'): { abs: string; rel: string; key: string } {
    if (typeof file !== 'string' || file === '') throw new TypeError(`Checkpointer.${op}: file paths must be non-empty strings, got ${JSON.stringify(file)}`);
    const abs = path.resolve(this.localDir, file);
    const relNative = path.relative(this.localDir, abs);
    if (relNative === '' || relNative === '..' || relNative.startsWith(`..${path.sep}`) || path.isAbsolute(relNative)) {
      throw new Error(`Checkpointer.${op}: ${file} is not a file inside localDir (${this.localDir})`);
    }
    const rel = relNative.split(path.sep).join('/');
    if (this.isOwn(rel)) throw new Error(`Checkpointer.${op}: ${file} is inside the checkpointer's own snapshot folder ${CHECKPOINTER_DIR}/`);
    return { abs, rel, key: keyFor(this.prefix, rel) };
  }

  private isOwn(rel: string): boolean {
    return rel === CHECKPOINTER_DIR || rel.startsWith(`${CHECKPOINTER_DIR}/`) || isTempName(path.posix.basename(rel));
  }

  /** Creates this instance's snapshot folder; the first time, removes folders left by dead processes. */
  private async prepareSnapshotDir(): Promise<void> {
    await mkdir(this.snapshotDir, { recursive: true });
    if (this.swept) return;
    this.swept = true;
    const parent = path.dirname(this.snapshotDir);
    for (const name of await readdir(parent).catch(() => [] as string[])) {
      const pid = Number(/^(\d+)-[0-9a-f]+$/.exec(name)?.[1]);
      if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) {
        await rm(path.join(parent, name), { recursive: true, force: true }).catch(() => undefined);
      }
    }
  }

  private async check(t: { abs: string; rel: string; key: string }): Promise<{ abs: string; rel: string; key: string }> {
    let st;
    try {
      st = await stat(t.abs);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) throw new Error(`Checkpointer.save: no such file: ${t.rel} (${t.abs})`, { cause: err });
      throw new Error(`Checkpointer.save: cannot read ${t.rel}: ${errorMessage(err)}`, { cause: err });
    }
    if (!st.isFile()) throw new Error(`Checkpointer.save: ${t.rel} is not a regular file (${t.abs})`);
    return t;
  }

  private async snapshot(t: { abs: string; rel: string; key: string }): Promise<Job> {
    const snapshot = path.join(this.snapshotDir, `${SNAPSHOT_PREFIX}${++this.seq}`);
    try {
      // A reflink where the file system has them (btrfs, XFS), else an in-kernel copy, off the
      // app's thread either way.
      await copyFile(t.abs, snapshot, fsConstants.COPYFILE_FICLONE | fsConstants.COPYFILE_EXCL);
      return { rel: t.rel, key: t.key, snapshot, size: (await stat(snapshot)).size };
    } catch (err) {
      await rm(snapshot, { force: true });
      if (isErrno(err, 'ENOENT') && !(await stat(t.abs).then(() => true, () => false))) {
        throw new Error(`Checkpointer.save: no such file: ${t.rel} (${t.abs})`, { cause: err });
      }
      throw new Error(`Checkpointer.save: cannot snapshot ${t.rel}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Queues a snapshot; returns the removal of the one it replaced, if any. */
  private enqueue(job: Job): Promise<void> | undefined {
    const old = this.pending.get(job.rel);
    this.pending.set(job.rel, job); // an existing target keeps its place in the queue
    if (!old) return undefined;
    this.emit({ type: 'replaced', path: old.rel, bytes: old.size });
    return rm(old.snapshot, { force: true }).catch(() => undefined);
  }

  /** Starts waiting uploads while there is room, never two of the same target at once. */
  private pump(): void {
    for (const [rel, job] of this.pending) {
      if (this.running.size >= this.concurrency) break;
      if (this.running.has(rel)) continue;
      this.pending.delete(rel);
      this.running.add(rel);
      void this.run(job);
    }
    if (this.idle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async run(job: Job): Promise<void> {
    if (this.pruneSamples() === 0 && this.running.size === 1) this.busySince = Date.now();
    let sent = 0;
    try {
      const size = await this.uploader.upload(job.snapshot, job.key, (bytes) => {
        this.sample(bytes - sent);
        sent = bytes;
      });
      this.uploaded++;
      this.bytesUploaded += size;
      this.emit({ type: 'uploaded', path: job.rel, bytes: size });
    } catch (err) {
      this.errors++;
      this.emit({ type: 'error', path: job.rel, error: err });
    } finally {
      await rm(job.snapshot, { force: true }).catch(() => undefined);
      this.running.delete(job.rel);
      this.pump();
    }
  }

  private idle(): boolean {
    return this.snapshotting === 0 && this.pending.size === 0 && this.running.size === 0;
  }

  private emit(e: CheckpointerEvent): void {
    if (!this.onEvent) return;
    try {
      this.onEvent(e);
    } catch (err) {
      process.emitWarning(`Checkpointer onEvent handler threw on a ${e.type} event: ${errorMessage(err)}`);
    }
  }

  private sample(bytes: number): void {
    if (bytes !== 0) this.samples.push({ t: Date.now(), bytes });
  }

  private pruneSamples(): number {
    const since = Date.now() - RATE_WINDOW_MS;
    let i = 0;
    while (i < this.samples.length && this.samples[i]!.t <= since) i++;
    if (i > 0) this.samples = this.samples.slice(i);
    return this.samples.length;
  }

  private rate(): number {
    if (this.pruneSamples() === 0) return 0;
    const total = this.samples.reduce((a, s) => a + s.bytes, 0);
    const seconds = Math.max(0.001, Math.min(RATE_WINDOW_MS, Date.now() - this.busySince) / 1000);
    return Math.max(0, Math.round(total / seconds));
  }
}

/**
 * Raises this thread's niceness to `nice` (never lowers it). Linux keeps a niceness per thread,
 * and setpriority(PRIO_PROCESS, tid) sets that of one thread; elsewhere this does nothing.
 */
function lowerThreadPriority(nice: number): void {
  if (nice <= 0 || process.platform !== 'linux') return;
  try {
    const tid = Number(path.basename(readlinkSync('/proc/thread-self')));
    if (!Number.isInteger(tid) || tid <= 0) return;
    const target = Math.min(19, nice);
    if (getPriority(tid) < target) setPriority(tid, target);
  } catch {
    // No /proc or not allowed: uploads simply run at the app's priority.
  }
}

// ---------------------------------------------------------------------------------------------
// The upload thread: this module, loaded by ThreadUploader's Worker. It opens its own store and
// runs each upload it is sent, posting progress (at most every 100 ms) and the outcome.

function runUploaderThread(init: WorkerInit): void {
  const port = parentPort!;
  lowerThreadPriority(init.nice);
  const store = openStore(init.settings);
  port.on('message', (m: ToWorker) => {
    if (m.type !== 'upload') return;
    let lastPost = 0;
    const post = (msg: FromWorker): void => port.postMessage(msg);
    uploadFile(store, m.file, init.bucket, m.key, {
      retry: init.retry,
      onProgress: (p) => {
        const now = Date.now();
        if (now - lastPost >= 100 || p.bytes === p.total) {
          lastPost = now;
          post({ type: 'progress', id: m.id, bytes: p.bytes });
        }
      },
    }).then(
      (r) => post({ type: 'done', id: m.id, size: r.size }),
      (err: unknown) => {
        const e = err as { name?: unknown; code?: unknown };
        post({
          type: 'failed', id: m.id,
          error: { name: typeof e?.name === 'string' ? e.name : 'Error', message: errorMessage(err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) },
        });
      },
    );
  });
}

if (!isMainThread && (workerData as Partial<WorkerInit> | null)?.tag === WORKER_TAG) runUploaderThread(workerData as WorkerInit);
