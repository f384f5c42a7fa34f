// The transfer engine's worker threads (piscina; the tasks are in pool-worker.ts): MD5s (and
// CRC32s) of upload bodies in shared memory, MD5s or CRC32s of whole files, and GETs (whole
// objects and ranges) streamed to a file.
// Below OFFLOAD_MIN bytes a message round trip would cost more than the work, so small inputs are
// hashed in place. The pool starts on first use, with as many threads as the machine has cores
// (2 to 4; each runs several GETs at once); idle threads are unref'd, so they never keep a process
// alive. If the worker script is not there (running the TypeScript sources directly), everything
// runs on the calling thread. A piscina task costs the main thread ~0.1 ms (measured), small next
// to the ~1.3 ms an MD5 of 1 MiB would, or the ~2 ms of CPU a 1 MiB GET costs on the main thread.
//
// The shared buffers (file bodies read for upload) are recycled: allocating and zero-filling a
// fresh SharedArrayBuffer per file cost ~0.15 ms of main-thread time per MiB, and the churn of
// external memory set off full garbage collections.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { crc32, hex8 } from './checksum.js';
import type { Digests, FileDigest, GetResult, GetTask, PoolTask } from './pool-worker.js';

export type { GetResult, GetTask, RangeCrc32, Verified } from './pool-worker.js';

type PoolResult = Digests | string | GetResult;

/** Inputs smaller than this are hashed on the calling thread. */
export const OFFLOAD_MIN = 128 * 1024;
/** Shared buffers up to this size are recycled (in power-of-two size classes). */
const RECYCLE_MAX = 16 * 1024 * 1024;
/** At most this many bytes of idle buffers are kept for reuse. */
const IDLE_MAX = 64 * 1024 * 1024;

const WORKER_FILE = fileURLToPath(new URL('./pool-worker.js', import.meta.url));

let pool: Piscina<PoolTask, PoolResult> | null | undefined;
let workerFileThere: boolean | undefined;

/** True when tasks can run in worker threads (the worker script is there); starts no thread. */
export function hasWorkers(): boolean {
  workerFileThere ??= existsSync(WORKER_FILE);
  return workerFileThere;
}

/** How the pool is set up (bench/http-transport.ts sets up its own pool the same way). */
export function poolOptions(filename: string): NonNullable<ConstructorParameters<typeof Piscina>[0]> {
  return {
    filename,
    minThreads: 1,
    maxThreads: Math.max(2, Math.min(4, availableParallelism())),
    // GETs wait on the network most of the time: several share a thread.
    concurrentTasksPerWorker: 8,
    // Async tasks need the thread's event loop running between messages.
    atomics: 'async',
    idleTimeout: 30_000,
    recordTiming: false,
    // Plain Node in the workers: no loaders (tsx...) of the parent, which only slow their start.
    execArgv: [],
  };
}

function getPool(): Piscina<PoolTask, PoolResult> | null {
  if (pool === undefined) pool = hasWorkers() ? new Piscina<PoolTask, PoolResult>(poolOptions(WORKER_FILE)) : null;
  return pool;
}

const idle = new Map<number, SharedArrayBuffer[]>();
let idleBytes = 0;

function sizeClass(size: number): number {
  return Math.max(OFFLOAD_MIN, 2 ** Math.ceil(Math.log2(size)));
}

/**
 * A Buffer of `size` bytes (contents undefined) that digestsOf can hash in a worker: a view over a
 * SharedArrayBuffer when `size` is at least OFFLOAD_MIN. Hand it back with releaseBuffer once
 * nothing uses it any more (a request that sent it has finished, its hash is computed).
 */
export function acquireBuffer(size: number): Buffer {
  if (size < OFFLOAD_MIN || !getPool()) return Buffer.allocUnsafe(size);
  if (size > RECYCLE_MAX) return Buffer.from(new SharedArrayBuffer(size));
  const cls = sizeClass(size);
  const sab = idle.get(cls)?.pop();
  if (sab) {
    idleBytes -= cls;
    return Buffer.from(sab, 0, size);
  }
  return Buffer.from(new SharedArrayBuffer(cls), 0, size);
}

/** Returns a buffer from acquireBuffer for reuse; the caller must not touch it afterwards. */
export function releaseBuffer(buf: Buffer): void {
  const sab = buf.buffer;
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength > RECYCLE_MAX || sab.byteLength !== sizeClass(sab.byteLength)) return;
  if (idleBytes + sab.byteLength > IDLE_MAX) return;
  const list = idle.get(sab.byteLength) ?? [];
  list.push(sab);
  idle.set(sab.byteLength, list);
  idleBytes += sab.byteLength;
}

/**
 * MD5 digest (16 bytes) of `data` and, with `withCrc32` (and a Node that has zlib.crc32), its
 * CRC32; in a worker when `data` lives in shared memory (acquireBuffer).
 */
export async function digestsOf(data: Buffer, withCrc32 = false): Promise<{ md5: Buffer; crc32?: number }> {
  const p = getPool();
  if (p && data.length >= OFFLOAD_MIN && data.buffer instanceof SharedArrayBuffer) {
    const d = (await p.run({ kind: 'digest', data, crc32: withCrc32 })) as Digests;
    return { md5: Buffer.from(d.md5, 'hex'), crc32: d.crc32 };
  }
  return { md5: createHash('md5').update(data).digest(), crc32: withCrc32 && crc32 ? crc32(data) : undefined };
}

/**
 * The MD5 or CRC32 (hex) of the whole file at `file`, read back by a worker (from the page cache)
 * when there is one. With `sync`, the file's data is also flushed to disk (fsync) before this
 * resolves. CRC32 needs a Node with zlib.crc32 (checksum.ts).
 */
export async function digestOfFile(file: string, algorithm: FileDigest, opts: { sync?: boolean } = {}): Promise<string> {
  const p = getPool();
  if (p) return (await p.run({ kind: 'file-digest', file, algorithm, sync: opts.sync === true })) as string;
  let hex: string;
  if (algorithm === 'md5') {
    const hash = createHash('md5');
    await pipeline(createReadStream(file), hash);
    hex = hash.digest('hex');
  } else {
    let crc = 0;
    for await (const chunk of createReadStream(file)) crc = crc32!(chunk as Buffer, crc);
    hex = hex8(crc);
  }
  if (opts.sync) {
    const fh = await open(file, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  return hex;
}

/** Runs a signed whole-object GET into a file in a worker thread (callers check hasWorkers first). */
export async function getInWorker(task: Omit<GetTask, 'kind'>): Promise<GetResult> {
  const p = getPool();
  if (!p) throw new Error('no worker threads');
  return (await p.run({ kind: 'get', ...task })) as GetResult;
}
