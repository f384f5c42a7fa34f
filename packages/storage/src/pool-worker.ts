// Runs in the transfer engine's worker threads (see worker-pool.ts). Three kinds of task:
// - `md5`: the MD5 of bytes in shared memory (a body read for upload), so the main thread does not
//   spend ~1.3 ms per MiB hashing;
// - `md5-file`: the MD5 of a file just written, read back from the page cache (optionally fsync'd);
// - `get`: a GET (whole object or a range), already signed by the main thread, streamed into a
//   file (a whole object hashed as it arrives), checked for length and, if asked, fsync'd. Run here,
//   the response's socket buffers never reach the main thread's heap: there, their churn (1 MiB per
//   MiB downloaded) kept V8 busy with full garbage collections, and a 1 MiB download cost ~4.5 ms
//   of CPU in all threads; here ~3.
// Only Node built-ins are imported: the thread starts fast and stays small.
import { createHash } from 'node:crypto';
import { close, closeSync, fsync, fsyncSync, openSync, readSync, writevSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';

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
  /** Hash the bytes (the result's `md5`). */
  hash: boolean;
  /** The MD5 (hex) the bytes must have to be fsync'd. */
  md5?: string;
  /** fsync the file once the bytes are written (and match `md5`, if given). */
  sync: boolean;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
}

export type PoolTask =
  | { kind: 'md5'; data: Uint8Array }
  | { kind: 'md5-file'; file: string; sync: boolean }
  | GetTask;

/** What a `get` task ends with; errors are described, not thrown, so they keep their shape. */
export type GetResult =
  | { ok: true; md5?: string }
  /** The server answered with a non-2xx status; `body` is the start of its error document. */
  | { ok: false; kind: 'status'; status: number; body: string; requestId?: string }
  /** Socket, timeout or file-system failure, or a body of the wrong length. */
  | { ok: false; kind: 'error'; name: string; code?: string; message: string; integrity?: boolean };

const readChunk = Buffer.allocUnsafe(1024 * 1024);

function md5File(file: string, sync: boolean): string {
  const hash = createHash('md5');
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, readChunk, 0, readChunk.length, null)) > 0;) hash.update(readChunk.subarray(0, n));
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

const agents = new Map<string, http.Agent>();

function agentFor(protocol: 'http:' | 'https:'): http.Agent {
  let agent = agents.get(protocol);
  if (!agent) {
    agent = protocol === 'https:' ? new https.Agent({ keepAlive: true, maxSockets: 50 }) : new http.Agent({ keepAlive: true, maxSockets: 50 });
    agents.set(protocol, agent);
  }
  return agent;
}

/** Writes at least this much at once (one writev of the chunks gathered). */
const WRITE_BATCH = 1024 * 1024;

function get(task: GetTask): Promise<GetResult> {
  return new Promise<GetResult>((resolve) => {
    let done = false;
    let fd: number | undefined;
    let connectTimer: NodeJS.Timeout | undefined;
    const finish = (result: GetResult): void => {
      if (done) return;
      done = true;
      clearTimeout(connectTimer);
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
    const failWith = (err: unknown, integrity = false): void => {
      const e = err as NodeJS.ErrnoException;
      req.destroy();
      finish({ ok: false, kind: 'error', name: e?.name ?? 'Error', code: e?.code, message: e?.message ?? String(err), integrity });
    };
    const timeout = (message: string): void => failWith(Object.assign(new Error(message), { name: 'TimeoutError' }));

    const req = (task.protocol === 'https:' ? https : http).request({
      hostname: task.hostname, port: task.port, method: 'GET', path: task.path, headers: task.headers, agent: agentFor(task.protocol),
    });
    req.on('error', (err) => failWith(err));
    req.on('socket', (socket) => {
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => timeout(`could not connect to ${task.hostname} within ${task.connectionTimeoutMs} ms`), task.connectionTimeoutMs);
      socket.once('connect', () => clearTimeout(connectTimer));
    });
    req.setTimeout(task.requestTimeoutMs, () => timeout(`GET ${task.path}: no data from ${task.hostname} for ${task.requestTimeoutMs} ms`));
    req.on('response', (res: IncomingMessage) => {
      clearTimeout(connectTimer);
      res.on('error', (err) => failWith(err));
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          if (body.length < 64 * 1024) body += s;
        });
        res.on('end', () => {
          const id = res.headers['x-amz-request-id'];
          finish({ ok: false, kind: 'status', status, body, requestId: typeof id === 'string' ? id : undefined });
        });
        return;
      }
      try {
        fd = openSync(task.file, task.position === undefined ? 'w' : 'r+');
      } catch (err) {
        failWith(err);
        return;
      }
      const hash = task.hash ? createHash('md5') : undefined;
      let position = task.position ?? 0;
      let got = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const write = (): void => {
        if (pendingBytes === 0 || fd === undefined) return;
        let written = writevSync(fd, pending, position);
        // A short write (rare): finish it from one buffer.
        if (written < pendingBytes) {
          const all = Buffer.concat(pending, pendingBytes);
          while (written < pendingBytes) written += writevSync(fd, [all.subarray(written)], position + written);
        }
        position += pendingBytes;
        pending = [];
        pendingBytes = 0;
      };
      res.on('data', (chunk: Buffer) => {
        if (done) return;
        got += chunk.length;
        if (got > task.length) {
          failWith(new Error(`server sent more than ${task.length} bytes`), true);
          return;
        }
        hash?.update(chunk);
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= WRITE_BATCH) {
          try {
            write();
          } catch (err) {
            failWith(err);
          }
        }
      });
      res.on('end', () => {
        if (done) return;
        if (got !== task.length) {
          failWith(new Error(`got ${got} of ${task.length} bytes`), true);
          return;
        }
        try {
          write();
        } catch (err) {
          failWith(err);
          return;
        }
        const md5 = hash?.digest('hex');
        const target = fd;
        if (target === undefined) return;
        if (!task.sync || (task.md5 !== undefined && md5 !== task.md5)) {
          finish({ ok: true, md5 });
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
            if (closeErr) finish({ ok: false, kind: 'error', name: closeErr.name, code: closeErr.code, message: closeErr.message });
            else finish({ ok: true, md5 });
          });
        });
      });
    });
    req.end();
  });
}

export default function run(task: PoolTask): string | Promise<GetResult> {
  switch (task.kind) {
    case 'md5':
      return createHash('md5').update(task.data).digest('hex');
    case 'md5-file':
      return md5File(task.file, task.sync);
    case 'get':
      return get(task);
  }
}
