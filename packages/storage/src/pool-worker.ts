// Runs in the transfer engine's worker threads (see worker-pool.ts). Three kinds of task:
// - `digest`: the MD5 (and, if asked, the CRC32) of bytes in shared memory (a body read for
//   upload), so the main thread does not spend ~1.3 ms per MiB hashing;
// - `file-digest`: the MD5 or CRC32 of a whole file, read from the page cache (optionally fsync'd):
//   a file just downloaded, or one about to go up in parts;
// - `get`: a GET (whole object or a range), already signed by the main thread, streamed into a
//   file (a whole object checked as it arrives: CRC32 against the object's drover-crc32 metadata
//   when it has it, else MD5 against its ETag; a range's CRC32 computed for the caller to combine),
//   checked for length and, if asked, fsync'd and renamed into place. Run here, the response's bytes never reach the main thread's heap: there,
//   their churn (1 MiB per MiB downloaded) kept V8 busy with full garbage collections. The GET
//   goes out on raw-http.ts's keep-alive connections, which read into one reused buffer: no
//   allocation per read here either.
// Only Node built-ins (and raw-http.ts, which has only those) are imported: the thread starts fast
// and stays small.
import { createHash, type Hash } from 'node:crypto';
import { close, closeSync, fsync, fsyncSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { CRC32_METADATA, crc32, hex8 } from './checksum.js';
import { get as httpGet, type Exchange } from './raw-http.js';

export interface GetTask {
  kind: 'get';
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number | undefined;
  path: string;
  headers: Record<string, string>;
  /** Temp file to write: created or truncated for a whole object; for a range, an existing file. */
  file: string;
  /** Where a range's bytes go in `file`; undefined for a whole object. */
  position?: number;
  /** Exact number of bytes expected. */
  length: number;
  /** Whole objects: the MD5 (hex) the bytes must have (their ETag); checked unless CRC32 is. */
  md5?: string;
  /**
   * If the response carries the drover-crc32 metadata: for a whole object, check the bytes' CRC32
   * against it instead of their MD5; for a range, compute the range's CRC32 and answer it with
   * the metadata, for the caller to check once all the ranges are in.
   */
  crc32: boolean;
  /** fsync the file once the bytes are written (and checked). */
  sync: boolean;
  /** Whole objects: rename the file to this path once it is complete, checked and fsync'd as asked. */
  renameTo?: string;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
}

export type PoolTask =
  | { kind: 'digest'; data: Uint8Array; crc32: boolean }
  | { kind: 'file-digest'; file: string; algorithm: FileDigest; sync: boolean }
  | GetTask;

/** A `digest` task's answer: the MD5 (hex) and, if asked (and this Node has it), the CRC32. */
export interface Digests {
  md5: string;
  crc32?: number;
}

/** What the bytes of a whole object were checked against (none for a range, or nothing to check with). */
export type Verified = 'crc32' | 'md5' | undefined;

/** The checksums a whole file can be read back for, each answered in hex (CRC32: 8 digits). */
export type FileDigest = 'md5' | 'crc32';

/** A range's CRC32 and the object's drover-crc32 metadata (from the same response). */
export interface RangeCrc32 {
  bytes: number;
  object: number;
}

/** What a `get` task ends with; errors are described, not thrown, so they keep their shape. */
export type GetResult =
  | { ok: true; verified: Verified; rangeCrc32?: RangeCrc32 }
  /** The server answered with a non-2xx status; `body` is the start of its error document. */
  | { ok: false; kind: 'status'; status: number; body: string; requestId?: string }
  /** Socket, timeout or file-system failure, or a body of the wrong length or checksum (`integrity`). */
  | { ok: false; kind: 'error'; name: string; code?: string; message: string; integrity?: boolean };

const readChunk = Buffer.allocUnsafe(1024 * 1024);

function digestFile(file: string, algorithm: FileDigest, sync: boolean): string {
  const hash = algorithm === 'md5' ? createHash('md5') : undefined;
  let crc = 0;
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, readChunk, 0, readChunk.length, null)) > 0;) {
      const chunk = readChunk.subarray(0, n);
      if (hash) hash.update(chunk);
      else crc = crc32!(chunk, crc);
    }
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return hash ? hash.digest('hex') : hex8(crc);
}

/** Writes all of `data` at `position`, finishing short writes. */
function writeAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length;) done += writeSync(fd, data, done, data.length - done, position + done);
}

function get(task: GetTask): Promise<GetResult> {
  return new Promise<GetResult>((resolve) => {
    let done = false;
    let fd: number | undefined;
    let status = 0;
    let requestId: string | undefined;
    const errorBody: Buffer[] = [];
    let errorBytes = 0;
    let hash: Hash | undefined;
    /** The CRC32 the bytes must have (from the object's metadata) and the running CRC32 of them. */
    let crcExpected: number | undefined;
    let crc = 0;
    let position = task.position ?? 0;
    let got = 0;
    let abort = (): void => undefined;
    const finish = (result: GetResult): void => {
      if (done) return;
      done = true;
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch {
          // Already failing; the caller removes the file.
        }
        fd = undefined;
      }
      resolve(result);
    };
    const describe = (err: unknown, integrity = false): GetResult => {
      const e = err as NodeJS.ErrnoException;
      return { ok: false, kind: 'error', name: e?.name ?? 'Error', code: e?.code, message: e?.message ?? String(err), integrity };
    };
    const failWith = (err: unknown, integrity = false): void => {
      abort();
      finish(describe(err, integrity));
    };
    const ok = (): boolean => status >= 200 && status < 300;
    const exchange: Exchange = {
      onHead(head) {
        status = head.status;
        if (!ok()) {
          requestId = head.headers.get('x-amz-request-id');
          return;
        }
        const length = head.headers.get('content-length');
        if (length !== undefined && Number(length) !== task.length) {
          failWith(new Error(`server sends ${length} bytes, expected ${task.length}`), true);
          return;
        }
        try {
          fd = openSync(task.file, task.position === undefined ? 'w' : 'r+');
        } catch (err) {
          failWith(err);
          return;
        }
        const meta = task.crc32 && crc32 ? head.headers.get(`x-amz-meta-${CRC32_METADATA}`) : undefined;
        // a range's CRC32 is computed the same way; the caller checks the ranges' combination
        if (meta !== undefined && /^[0-9a-f]{8}$/.test(meta)) crcExpected = Number.parseInt(meta, 16);
        else if (task.md5 !== undefined) hash = createHash('md5');
      },
      onBody(chunk) {
        if (done) return;
        if (!ok()) {
          if (errorBytes < 64 * 1024) {
            errorBody.push(Buffer.from(chunk));
            errorBytes += chunk.length;
          }
          return;
        }
        got += chunk.length;
        if (got > task.length) {
          failWith(new Error(`server sent more than ${task.length} bytes`), true);
          return;
        }
        // The chunk lives in the connection's read buffer until this returns: hash and write it now.
        if (crcExpected !== undefined) crc = crc32!(chunk, crc);
        else hash?.update(chunk);
        try {
          writeAll(fd!, chunk, position);
        } catch (err) {
          failWith(err);
          return;
        }
        position += chunk.length;
      },
      onEnd() {
        if (done) return;
        if (!ok()) {
          finish({ ok: false, kind: 'status', status, body: Buffer.concat(errorBody).toString('utf8'), requestId });
          return;
        }
        if (got !== task.length) {
          failWith(new Error(`got ${got} of ${task.length} bytes`), true);
          return;
        }
        const target = fd;
        if (target === undefined) return;
        // A wrong checksum is an integrity error, retried by the caller; the file is not renamed.
        let verified: Verified;
        let rangeCrc32: RangeCrc32 | undefined;
        if (crcExpected !== undefined && task.position !== undefined) {
          rangeCrc32 = { bytes: crc >>> 0, object: crcExpected };
        } else if (crcExpected !== undefined) {
          if (crc !== crcExpected) {
            failWith(new Error(`CRC32 ${hex8(crc)} of the bytes received, the object's ${CRC32_METADATA} is ${hex8(crcExpected)}`), true);
            return;
          }
          verified = 'crc32';
        } else if (hash) {
          const md5 = hash.digest('hex');
          if (md5 !== task.md5) {
            failWith(new Error(`MD5 ${md5} of the bytes received, the object's ETag is ${task.md5}`), true);
            return;
          }
          verified = 'md5';
        }
        const renamed = (): void => {
          if (task.renameTo !== undefined) {
            try {
              renameSync(task.file, task.renameTo);
            } catch (err) {
              finish(describe(err));
              return;
            }
          }
          finish(rangeCrc32 ? { ok: true, verified, rangeCrc32 } : { ok: true, verified });
        };
        if (!task.sync) {
          fd = undefined;
          try {
            closeSync(target);
          } catch (err) {
            finish(describe(err));
            return;
          }
          renamed();
          return;
        }
        // The fsync goes to the libuv pool, so this thread's other downloads carry on meanwhile.
        fsync(target, (err) => {
          if (done) return; // failed meanwhile: `finish` has closed the file
          if (err) {
            failWith(err);
            return;
          }
          fd = undefined;
          close(target, (closeErr) => {
            if (closeErr) finish(describe(closeErr));
            else renamed();
          });
        });
      },
      onError(err) {
        finish(describe(err));
      },
    };
    try {
      abort = httpGet(task, exchange);
    } catch (err) {
      finish(describe(err));
    }
  });
}

export default function run(task: PoolTask): Digests | string | Promise<GetResult> {
  switch (task.kind) {
    case 'digest':
      return { md5: createHash('md5').update(task.data).digest('hex'), crc32: task.crc32 && crc32 ? crc32(task.data) : undefined };
    case 'file-digest':
      return digestFile(task.file, task.algorithm, task.sync);
    case 'get':
      return get(task);
  }
}
