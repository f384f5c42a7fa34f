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
// Only Node built-ins (and raw-http.ts, checksum.ts and object-store.ts, which have only those) are
// imported: the thread starts fast and stays small. The checks of the bytes are checksum.ts's BodyCheck.
import { createHash } from 'node:crypto';
import { close, closeSync, fsync, fsyncSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { BodyCheck, CRC32_METADATA, crc32, hex8, type Verified } from './checksum.js';
import { IntegrityError } from './object-store.js';
import { get as httpGet, type Exchange, type GetRequest } from './raw-http.js';

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

export type { Verified } from './checksum.js';

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

/** How a GET goes out: raw-http.ts's `get`; the transport benchmark (bench/http-transport.ts) swaps in another. */
export type Transport = (req: GetRequest, exchange: Exchange) => () => void;

/** A `get` task: the response streamed into the file through a BodyCheck, then fsync'd and renamed as asked. */
export function runGet(task: GetTask, transport: Transport = httpGet): Promise<GetResult> {
  return new Promise<GetResult>((resolve) => {
    let done = false;
    let fd: number | undefined;
    let status = 0;
    let requestId: string | undefined;
    const errorBody: Buffer[] = [];
    let errorBytes = 0;
    let check: BodyCheck | undefined;
    /** A range's object CRC32 (from the response's metadata), answered beside the range's own. */
    let objectCrc32: number | undefined;
    let position = task.position ?? 0;
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
    const describe = (err: unknown): GetResult => {
      const e = err as NodeJS.ErrnoException;
      return { ok: false, kind: 'error', name: e?.name ?? 'Error', code: e?.code, message: e?.message ?? String(err), integrity: err instanceof IntegrityError };
    };
    const failWith = (err: unknown): void => {
      abort();
      finish(describe(err));
    };
    const ok = (): boolean => status >= 200 && status < 300;
    const exchange: Exchange = {
      onHead(head) {
        status = head.status;
        if (!ok()) {
          requestId = head.headers.get('x-amz-request-id');
          return;
        }
        const meta = task.crc32 ? head.headers.get(`x-amz-meta-${CRC32_METADATA}`) : undefined;
        const metaCrc32 = meta !== undefined && /^[0-9a-f]{8}$/.test(meta) ? Number.parseInt(meta, 16) : undefined;
        const whole = task.position === undefined;
        // A whole object is checked by its CRC32 metadata, else its MD5; a range's CRC32 is
        // computed for the caller, who checks the ranges' combination.
        check = whole
          ? new BodyCheck({ size: task.length, crc32: metaCrc32, md5: task.md5 })
          : new BodyCheck({ size: task.length, computeCrc32: metaCrc32 !== undefined && crc32 !== undefined });
        if (!whole && metaCrc32 !== undefined && crc32 !== undefined) objectCrc32 = metaCrc32;
        try {
          const length = head.headers.get('content-length');
          if (length !== undefined) check.declared(Number(length));
          fd = openSync(task.file, whole ? 'w' : 'r+');
        } catch (err) {
          failWith(err);
        }
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
        // The chunk lives in the connection's read buffer until this returns: check and write it now.
        try {
          check!.update(chunk);
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
        const target = fd;
        if (target === undefined || !check) return;
        // A wrong count or checksum is an integrity error, retried by the caller; the file is not renamed.
        let verified: Verified;
        try {
          verified = check.end();
        } catch (err) {
          failWith(err);
          return;
        }
        const rangeCrc32: RangeCrc32 | undefined = objectCrc32 === undefined ? undefined : { bytes: check.crc32, object: objectCrc32 };
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
      abort = transport(task, exchange);
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
      return runGet(task);
  }
}
