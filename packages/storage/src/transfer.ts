// The transfer engine: whole files between a local disk and an ObjectStore.
// - uploadFile: above `multipartThreshold` on a store with multipart uploads, the file goes up in
//   `partSize` parts (10 MiB), `concurrency` (8) at a time, each with its Content-MD5, the whole
//   file's CRC32 as metadata; the upload is aborted if any part finally fails, or if the parts'
//   CRC32s do not add up to the file's (it changed meanwhile). Otherwise one put: a file of at
//   most one part is read whole and sent with its Content-MD5 and its CRC32 as metadata
//   (checksum.ts; no HEAD afterwards when the ETag is that MD5), a larger one (stores without
//   multipart uploads) is streamed.
// - downloadFile: large objects come down as parallel ranged GETs written at their offsets into a
//   temp file beside the target, renamed into place once complete and verified; every GET is
//   pinned to the ETag seen first (If-Match), so an object replaced midway is a ChangedError.
// - Every step (part, range, put, get) is retried with exponential backoff and full jitter on
//   throttling, 5xx, timeouts, connection resets and short/corrupt reads; then RetryLimitError.
// - Size is always verified; on upload, MD5 too when the ETag is a plain or multipart S3 MD5; on a
//   download, the CRC32 of Drover's metadata when the object has it (a download in ranges by
//   worker threads: the ranges' CRC32s combined), else, for a whole object, the MD5 when the ETag
//   is a plain one.
// - The heavy lifting is off the main thread (worker-pool.ts): MD5s of parts and single-PUT bodies
//   of 128 KiB or more are computed in worker threads; on a store that can GET into a file there
//   (S3Store on its lean path), whole objects and ranges are downloaded by the workers, which hash
//   (whole objects), length-check and fsync them; with any other store a large whole object's MD5
//   is computed by a worker reading the written file back.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { retry } from '@drover/common';
import {
  ChangedError, IntegrityError, RetryLimitError, isRetryable,
  type CompletedPart, type ObjectInfo, type ObjectStore,
} from './object-store.js';
import { GET_TO_FILE, type WithGetToFile } from './file-get.js';
import { BodyCheck, CRC32_METADATA, checkMd5, checkPiecesCrc32, crc32, crc32OfPieces, hex8 } from './checksum.js';
import { OFFLOAD_MIN, acquireBuffer, digestOfFile, digestsOf, releaseBuffer, type RangeCrc32 } from './worker-pool.js';

export const MiB = 1024 * 1024;

export interface RetryOptions {
  /** Total attempts per step, first try included; default 6. */
  attempts?: number;
  /** Delay before the first retry is random in [0, baseDelayMs]; doubles each retry. Default 200. */
  baseDelayMs?: number;
  /** Upper bound of the backoff window; default 20 000. */
  maxDelayMs?: number;
  /** Called before each retry (for logs and tests). */
  onRetry?: (info: { operation: string; attempt: number; delayMs: number; error: unknown }) => void;
}

export interface Progress {
  /** Bytes transferred so far (may step back when a failed part or range is retried). */
  bytes: number;
  total: number;
}

export interface TransferOptions {
  partSize?: number;
  concurrency?: number;
  /** Files/objects larger than this use multipart / parallel ranges; default = partSize. */
  multipartThreshold?: number;
  retry?: RetryOptions;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  contentType?: string;
  /**
   * Downloads: fsync the file before renaming it into place (default false). The temp file and
   * rename already mean a process that dies never leaves a partial file under the real name; the
   * fsync only adds survival of a power loss, and the object is still in the bucket to download
   * again. It costs ~16 ms per file on this project's VMs (rclone does not fsync either).
   */
  durable?: boolean;
  /**
   * Uploads: called just before each request that makes an upload visible (a PUT, or the
   * CompleteMultipartUpload), retries included; a rejection aborts the upload with that error. The
   * worker fences its writes with it: it must still hold the job's lease when the object lands.
   */
  beforeCommit?: () => Promise<void>;
}

export interface TransferResult {
  size: number;
  etag?: string;
  /** Number of parts (uploads) or ranges (downloads); 1 for a single request. */
  parts: number;
}

/** Runs `fn` until it succeeds, a non-retryable error occurs, or the attempts run out. */
export function withRetry<T>(operation: string, fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}, signal?: AbortSignal): Promise<T> {
  return retry(fn, {
    attempts: opts.attempts ?? 6,
    backoff: { baseMs: opts.baseDelayMs ?? 200, maxMs: opts.maxDelayMs ?? 20_000, jitter: 'full' },
    retryable: isRetryable,
    onRetry: (r) => opts.onRetry?.({ operation, attempt: r.attempt, delayMs: r.delayMs, error: r.error }),
    giveUp: (err, attempts) => new RetryLimitError(operation, attempts, err),
    signal,
  });
}

/** Runs tasks with at most `limit` in flight; the first failure stops new tasks and is thrown. */
async function runPool(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failed) throw firstError;
}

function settings(opts: TransferOptions): { partSize: number; concurrency: number; threshold: number } {
  const partSize = opts.partSize ?? 10 * MiB;
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  if (!(partSize > 0)) throw new RangeError('partSize must be positive');
  return { partSize, concurrency, threshold: opts.multipartThreshold ?? partSize };
}

function progressReporter(total: number, onProgress?: (p: Progress) => void): (delta: number) => void {
  let bytes = 0;
  return (delta) => {
    bytes += delta;
    onProgress?.({ bytes, total });
  };
}

/**
 * Reads `length` bytes at `position` into a buffer from acquireBuffer (shared memory, so digestsOf can
 * hash it in a worker); the caller hands it back with releaseBuffer.
 */
async function readRange(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = acquireBuffer(length);
  try {
    let off = 0;
    while (off < length) {
      const { bytesRead } = await fh.read(buf, off, length - off, position + off);
      if (bytesRead === 0) throw new Error(`file shrank while uploading (short read at ${position + off})`);
      off += bytesRead;
    }
    return buf;
  } catch (err) {
    releaseBuffer(buf);
    throw err;
  }
}

const MD5_ETAG = /^[0-9a-f]{32}$/;
const MULTIPART_ETAG = /^([0-9a-f]{32})-(\d+)$/;

/** Uploads a local file to bucket/key, then checks the stored size (and MD5 ETag when there is one). */
export async function uploadFile(store: ObjectStore, localPath: string, bucket: string, key: string, opts: TransferOptions = {}): Promise<TransferResult> {
  const { partSize, concurrency, threshold } = settings(opts);
  const size = (await stat(localPath)).size;
  const report = progressReporter(size, opts.onProgress);
  let etag: string | undefined;
  let expectedEtag: string | undefined;
  let parts = 1;

  if (store.multipart && size > threshold) {
    const mp = store.multipart;
    const count = Math.ceil(size / partSize);
    parts = count;
    // The whole file's CRC32 goes up as metadata, so it must be known before the first part: a
    // worker reads the file once for it (from the page cache). Before the upload completes, the
    // parts' CRC32s must add up to it, or the file changed while it went up.
    const fileCrc32 = crc32 ? await digestOfFile(localPath, 'crc32') : undefined;
    const metadata = fileCrc32 === undefined ? undefined : { [CRC32_METADATA]: fileCrc32 };
    const uploadId = await withRetry(`create multipart upload ${bucket}/${key}`, () => mp.create(bucket, key, { contentType: opts.contentType, metadata }), opts.retry, opts.signal);
    const done: CompletedPart[] = [];
    const digests: Buffer[] = new Array<Buffer>(count);
    const pieces: { crc32: number; length: number }[] = new Array(count);
    const fh = await open(localPath, 'r');
    try {
      await runPool(count, concurrency, async (i) => {
        const start = i * partSize;
        const length = Math.min(partSize, size - start);
        const body = await readRange(fh, start, length);
        let digest: Buffer;
        let partEtag: string;
        try {
          const d = await digestsOf(body, fileCrc32 !== undefined);
          digest = d.md5;
          digests[i] = digest;
          if (d.crc32 !== undefined) pieces[i] = { crc32: d.crc32, length };
          partEtag = await withRetry(
            `upload part ${i + 1}/${count} of ${bucket}/${key}`,
            () => mp.uploadPart(bucket, key, uploadId, i + 1, body, digest.toString('base64')),
            opts.retry, opts.signal,
          );
        } finally {
          releaseBuffer(body);
        }
        const plain = partEtag.replace(/^"|"$/g, '');
        if (MD5_ETAG.test(plain) && plain !== digest.toString('hex')) {
          throw new IntegrityError(`part ${i + 1} of ${bucket}/${key}: ETag ${plain} is not the MD5 of the bytes sent`);
        }
        done.push({ partNumber: i + 1, etag: partEtag });
        report(length);
      });
      if (fileCrc32 !== undefined) {
        const sent = hex8(crc32OfPieces(pieces));
        if (sent !== fileCrc32) {
          throw new IntegrityError(`${localPath} changed while it was being uploaded (CRC32 ${fileCrc32} before, ${sent} of the parts sent): ${bucket}/${key} not completed`);
        }
      }
      const out = await withRetry(`complete multipart upload ${bucket}/${key}`, async () => {
        await opts.beforeCommit?.();
        return mp.complete(bucket, key, uploadId, done);
      }, opts.retry, opts.signal);
      etag = out.etag;
      expectedEtag = `${createHash('md5').update(Buffer.concat(digests)).digest('hex')}-${count}`;
    } catch (err) {
      await mp.abort(bucket, key, uploadId).catch(() => undefined);
      throw err;
    } finally {
      await fh.close();
    }
  } else if (size <= partSize) {
    // A file of at most one part is read whole (one read) and sent as one buffer with its
    // Content-MD5, which the store checks, and its CRC32 as metadata, which downloads check; a
    // retry resends the same bytes.
    const fh = await open(localPath, 'r');
    let body: Buffer;
    try {
      body = await readRange(fh, 0, size);
    } finally {
      await fh.close();
    }
    let digest: Buffer;
    let out: { etag?: string };
    try {
      const d = await digestsOf(body, true);
      digest = d.md5;
      const metadata = d.crc32 === undefined ? undefined : { [CRC32_METADATA]: hex8(d.crc32) };
      out = await withRetry(`put ${bucket}/${key}`, async () => {
        await opts.beforeCommit?.();
        return store.put(bucket, key, body, { size, md5: digest.toString('base64'), contentType: opts.contentType, metadata });
      }, opts.retry, opts.signal);
    } finally {
      releaseBuffer(body);
    }
    report(size);
    etag = out.etag;
    expectedEtag = digest.toString('hex');
    // The store answered with the MD5 of the whole file: that already proves what a HEAD would
    // (size and content), so skip the extra request.
    if (etag === expectedEtag) return { size, etag, parts };
  } else {
    const out = await withRetry(`put ${bucket}/${key}`, async () => {
      await opts.beforeCommit?.();
      const hash = createHash('md5');
      let sent = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          sent += chunk.length;
          report(chunk.length);
          cb(null, chunk);
        },
      });
      const source = createReadStream(localPath);
      source.on('error', (e) => counter.destroy(e));
      try {
        const r = await store.put(bucket, key, source.pipe(counter), { size, contentType: opts.contentType });
        return { ...r, md5: hash.digest('hex') };
      } catch (err) {
        source.destroy();
        report(-sent);
        throw err;
      }
    }, opts.retry, opts.signal);
    etag = out.etag;
    expectedEtag = out.md5;
  }

  const info = await withRetry(`head ${bucket}/${key}`, () => store.head(bucket, key), opts.retry, opts.signal);
  if (info.size !== size) throw new IntegrityError(`uploaded ${bucket}/${key} is ${info.size} bytes, the file is ${size}`);
  const stored = info.etag ?? etag;
  if (stored && expectedEtag && (MD5_ETAG.test(stored) || MULTIPART_ETAG.test(stored)) && stored !== expectedEtag) {
    throw new IntegrityError(`uploaded ${bucket}/${key} has ETag ${stored}, expected ${expectedEtag}`);
  }
  return { size, etag: stored, parts };
}

/**
 * The CRC32s of an object's ranges and the object's own (its drover-crc32 metadata, as every range's
 * response carried it); undefined unless every range answered both.
 */
function rangePieces(ranges: readonly (RangeCrc32 | undefined)[], lengthOf: (i: number) => number): { pieces: { crc32: number; length: number }[]; object: number } | undefined {
  const object = ranges[0]?.object;
  if (object === undefined || ranges.some((r) => r === undefined || r.object !== object)) return undefined;
  return { pieces: ranges.map((r, i) => ({ crc32: r!.bytes, length: lengthOf(i) })), object };
}

/** A download gathers this many bytes of a response before writing them (one writev). */
const WRITE_BATCH = MiB;

/** Writes `buffers` (`length` bytes in all) at `position`, finishing any short write. */
async function writeAt(fh: FileHandle, buffers: Buffer[], length: number, position: number): Promise<void> {
  let done = (await fh.writev(buffers, position)).bytesWritten;
  if (done === length) return;
  const all = Buffer.concat(buffers, length);
  while (done < length) done += (await fh.write(all, done, length - done, position + done)).bytesWritten;
}

/**
 * Downloads bucket/key to localPath. The bytes go to a temp file in the same directory, renamed
 * over localPath only after size (and MD5, for single-part MD5 ETags) checked out; on failure
 * the temp file is removed and localPath is untouched.
 */
export async function downloadFile(store: ObjectStore, bucket: string, key: string, localPath: string, opts: TransferOptions = {}): Promise<TransferResult> {
  const info: ObjectInfo = await withRetry(`head ${bucket}/${key}`, () => store.head(bucket, key), opts.retry, opts.signal);
  return fetchObject(store, bucket, key, info, localPath, opts);
}

/**
 * downloadFile for an object whose size and ETag a listing has just given (`object`), without
 * asking again (no HEAD). If the object has been replaced since (ChangedError, from the ETag pin),
 * it falls back to downloadFile, which looks it up afresh.
 */
export async function downloadListedObject(store: ObjectStore, bucket: string, object: ObjectInfo, localPath: string, opts: TransferOptions = {}): Promise<TransferResult> {
  try {
    return await fetchObject(store, bucket, object.key, object, localPath, opts);
  } catch (err) {
    if (err instanceof ChangedError && object.etag !== undefined) return downloadFile(store, bucket, object.key, localPath, opts);
    throw err;
  }
}

async function fetchObject(store: ObjectStore, bucket: string, key: string, info: ObjectInfo, localPath: string, opts: TransferOptions): Promise<TransferResult> {
  const { partSize, concurrency, threshold } = settings(opts);
  const size = info.size;
  const report = progressReporter(size, opts.onProgress);
  const temp = join(dirname(localPath), `.${basename(localPath)}.drover-dl-${randomBytes(6).toString('hex')}`);
  const count = size > threshold ? Math.ceil(size / partSize) : 1;
  const rangeOf = (i: number): { start: number; length: number } => {
    const start = count === 1 ? 0 : i * partSize;
    return { start, length: count === 1 ? size : Math.min(partSize, size - start) };
  };
  const what = (r: { start: number; length: number }): string => `get ${bucket}/${key} bytes ${r.start}-${r.start + r.length - 1}`;
  // A whole-object GET is checked against the object's CRC32 metadata (where the store can read it:
  // getToFile) or else, when its ETag is its MD5, against that, and retried like a short read if
  // the checksum is wrong.
  const md5Etag = count === 1 && info.etag !== undefined && MD5_ETAG.test(info.etag) ? info.etag : undefined;
  // Pinning every request to the ETag seen by head means a replaced object fails with ChangedError
  // instead of coming down as a mix of two versions.
  const ifMatch = info.etag;

  const durable = opts.durable === true;
  const getToFile = (store as WithGetToFile)[GET_TO_FILE];
  if (getToFile && size > 0) {
    // The store GETs straight into the temp file in worker threads (a whole object hashed as it
    // arrives, fsync'd if durable and renamed there; ranges written at their offsets): the main
    // thread only signs the requests (and renames a file of ranges). Progress is reported as each
    // range (or the object) completes.
    try {
      if (count > 1) {
        const fh = await open(temp, 'w');
        try {
          await fh.truncate(size);
        } finally {
          await fh.close();
        }
      }
      // After a wrong checksum, the next tries check the MD5 of the ETag where there is one: the
      // server checked it on upload, while the metadata is only what the uploader wrote.
      let checkCrc32 = true;
      const rangeCrcs = Array.from<RangeCrc32 | undefined>({ length: count });
      const fetchAll = (): Promise<void> => runPool(count, concurrency, async (i) => {
        const r = rangeOf(i);
        await withRetry(what(r), async () => {
          const range = count === 1 ? undefined : { start: r.start, end: r.start + r.length - 1 };
          // A whole object is renamed into place by the thread that wrote it, once it checks out.
          try {
            const got = await getToFile(bucket, key, temp, {
              length: r.length, range, ifMatch, md5: md5Etag, crc32: checkCrc32, sync: count === 1 && durable, renameTo: count === 1 ? localPath : undefined,
            });
            rangeCrcs[i] = got.rangeCrc32;
          } catch (err) {
            if (err instanceof IntegrityError && md5Etag !== undefined) checkCrc32 = false;
            throw err;
          }
        }, opts.retry, opts.signal);
        report(r.length);
      });
      if (count === 1) await fetchAll();
      else {
        // Each range is retried on its own; the CRC32 of them all (where the object carries one)
        // can only be checked once they are all in, and a mismatch refetches them all, at most
        // three times: it cannot say which range was wrong.
        const attempts = Math.min(3, opts.retry?.attempts ?? 3);
        await withRetry(`get ${bucket}/${key} in ${count} ranges`, async () => {
          await fetchAll();
          const ranges = rangePieces(rangeCrcs, (i) => rangeOf(i).length);
          try {
            if (ranges !== undefined) checkPiecesCrc32(ranges.pieces, ranges.object, `${bucket}/${key}`);
          } catch (err) {
            report(-size);
            throw err;
          }
        }, { ...opts.retry, attempts }, opts.signal);
      }
      if (count > 1 && durable) {
        const fh = await open(temp, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      if (count > 1) await rename(temp, localPath);
      return { size, etag: info.etag, parts: count };
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  // Any other store: ranges streamed through getStream into one open file. A whole object's MD5
  // is computed as it arrives when it is small, else by a worker thread reading the temp file back
  // (from the page cache), which also fsyncs it.
  const fh = await open(temp, 'w');
  let synced = false;
  try {
    await fh.truncate(size);
    await runPool(count, concurrency, async (i) => {
      const { start, length } = rangeOf(i);
      await withRetry(what({ start, length }), async () => {
        let got = 0;
        let written = 0;
        try {
          if (length === 0) return;
          const range = count === 1 ? undefined : { start, end: start + length - 1 };
          const stream = await store.getStream(bucket, key, { range, ifMatch });
          // A small whole object is hashed as it arrives; a larger one is read back by a worker below.
          const hashHere = md5Etag !== undefined && length < OFFLOAD_MIN;
          const check = new BodyCheck({ size: length, md5: hashHere ? md5Etag : undefined, label: `${bucket}/${key} (bytes ${start}-${start + length - 1})` });
          let batch: Buffer[] = [];
          const flush = async (): Promise<void> => {
            const bytes = got - written;
            if (bytes === 0) return;
            const buffers = batch;
            batch = [];
            await writeAt(fh, buffers, bytes, start + written);
            written += bytes;
            report(bytes);
          };
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            check.update(chunk);
            batch.push(chunk);
            got += chunk.length;
            if (got - written >= WRITE_BATCH) await flush();
          }
          await flush();
          check.end();
          if (md5Etag !== undefined && !hashHere) {
            checkMd5(await digestOfFile(temp, 'md5', { sync: durable }), md5Etag, `${bucket}/${key}`);
            synced = true;
          }
        } catch (err) {
          report(-written);
          throw err;
        }
      }, opts.retry, opts.signal);
    });
    if (durable && !synced) await fh.sync();
    await fh.close();
    const written = (await stat(temp)).size;
    if (written !== size) throw new IntegrityError(`downloaded ${written} bytes of ${bucket}/${key}, expected ${size}`);
    await rename(temp, localPath);
    if (size === 0) opts.onProgress?.({ bytes: 0, total: 0 });
    return { size, etag: info.etag, parts: count };
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}
