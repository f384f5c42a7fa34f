// A minimal HTTP/1.1 client for the GETs of the transfer engine's worker threads (pool-worker.ts):
// keep-alive connections, one request at a time on each, and the response body handed over as it
// is read, straight from one read buffer per thread that is reused for every read (the `onread`
// option of net and tls sockets).
//
// Why not node:http: there every socket read allocates a fresh Buffer (fresh memory that the
// kernel has to fault in on this project's VMs), pushed through the stream machinery and later
// collected by the garbage collector. A 1 MiB GET from the loopback S3 server cost ~1.5 ms of CPU
// that way against ~0.35 ms here, which was most of a small-file download's client CPU beyond the
// MD5 and the write.
//
// Only what S3 GETs need: bodies framed by Content-Length, chunked, or by the end of the
// connection; 1xx answers skipped; `Connection: close` and HTTP/1.0 honoured. No pipelining, no
// proxies. Errors keep Node's shapes: socket errors their `code`, a connection that ends before
// the answer does is `socket hang up` (ECONNRESET), timeouts are errors named `TimeoutError`.
import net from 'node:net';
import tls from 'node:tls';

export interface Origin {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number | undefined;
}

export interface GetRequest extends Origin {
  /** Path and query, already encoded. */
  path: string;
  /** Sent as given (the signed headers, Host included). */
  headers: Record<string, string>;
  /** Socket idle time allowed while waiting for and reading the answer, ms. */
  requestTimeoutMs: number;
  /** Time allowed to establish a new connection, ms. */
  connectionTimeoutMs: number;
}

export interface ResponseHead {
  status: number;
  /** Lower-case names; a repeated header's values joined with `, `. */
  headers: Map<string, string>;
}

/** What a request reports to: onHead, then onBody any number of times, then onEnd; or onError at any point. */
export interface Exchange {
  onHead(head: ResponseHead): void;
  /** A piece of the body, valid only during the call: the buffer is reused for the next read. */
  onBody(chunk: Buffer): void;
  onEnd(): void;
  /** The request failed; its connection is closed. */
  onError(err: Error): void;
}

/** Reads go into this buffer (one per thread: each worker thread loads its own copy of this module). */
const READ_BUFFER = Buffer.allocUnsafe(1024 * 1024);
/** Idle connections are closed after this long (undici's default), before servers tend to close them. */
const IDLE_MS = 4_000;
const MAX_HEAD = 64 * 1024;
const MAX_LINE = 4 * 1024;
const CRLF2 = Buffer.from('\r\n\r\n');

function hangUp(): Error {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

function protocolError(message: string): Error {
  return Object.assign(new Error(`malformed HTTP response: ${message}`), { code: 'HPE_INVALID_RESPONSE' });
}

/** The shape the engine retries on for a timeout (s3-direct.ts uses it too). */
export function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError' });
}

const enum State { Head, Length, ChunkSize, ChunkData, ChunkEnd, Trailer, UntilClose }

const idle = new Map<string, Connection[]>();

class Connection {
  readonly socket: net.Socket;
  private exchange: Exchange | undefined;
  /** The request in progress (or the last one). */
  private request: GetRequest | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  // The answer being read.
  private state = State.Head;
  private head: Buffer[] = [];
  private headBytes = 0;
  private line = '';
  /** Bytes left of the body (Length) or of the current chunk (ChunkData). */
  private remaining = 0;
  private reusable = false;

  constructor(readonly key: string, origin: Origin, connectionTimeoutMs: number) {
    const onread = {
      buffer: READ_BUFFER,
      callback: (n: number, buf: Uint8Array): boolean => {
        this.onBytes((buf as Buffer).subarray(0, n));
        return true;
      },
    };
    const port = origin.port ?? (origin.protocol === 'https:' ? 443 : 80);
    this.socket = origin.protocol === 'https:'
      ? tls.connect({ host: origin.hostname, port, servername: net.isIP(origin.hostname) ? undefined : origin.hostname, onread } as tls.ConnectionOptions)
      : net.connect({ host: origin.hostname, port, onread });
    this.socket.setNoDelay(true);
    this.connectTimer = setTimeout(
      () => this.fail(timeoutError(`could not connect to ${origin.hostname} within ${connectionTimeoutMs} ms`)),
      connectionTimeoutMs,
    );
    this.socket.once('connect', () => clearTimeout(this.connectTimer));
    this.socket.once('secureConnect', () => clearTimeout(this.connectTimer));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.onEof());
    this.socket.on('close', () => this.onEof());
    this.socket.on('timeout', () => {
      const req = this.request;
      if (this.exchange && req) this.fail(timeoutError(`GET ${req.path}: no data from ${req.hostname} for ${req.requestTimeoutMs} ms`));
      else this.fail(undefined);
    });
  }

  /** Sends the request head; `exchange` hears about the answer. */
  send(req: GetRequest, head: string, exchange: Exchange): void {
    this.exchange = exchange;
    this.request = req;
    this.state = State.Head;
    this.head = [];
    this.headBytes = 0;
    this.socket.ref();
    this.socket.setTimeout(req.requestTimeoutMs);
    this.socket.write(head, 'latin1');
  }

  /** Drops the request in progress (if it is still `exchange`'s) and closes the connection, silently. */
  abort(exchange: Exchange): void {
    if (this.exchange !== exchange) return;
    this.exchange = undefined;
    this.fail(undefined);
  }

  get usable(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  /** Closes the connection; the request in progress, if any, fails with `err`. */
  private fail(err: Error | undefined): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    if (!this.closed) {
      this.closed = true;
      clearTimeout(this.connectTimer);
      const list = idle.get(this.key);
      const at = list?.indexOf(this) ?? -1;
      if (at >= 0) list!.splice(at, 1);
      this.socket.destroy();
    }
    exchange?.onError(err ?? hangUp());
  }

  private onEof(): void {
    // A body framed by the end of the connection is complete; anything else is cut short.
    if (this.exchange && this.state === State.UntilClose) this.complete(false);
    this.fail(hangUp());
  }

  private onBytes(chunk: Buffer): void {
    if (!this.exchange) {
      // Bytes nobody asked for (on an idle connection): whatever the server means, not reusable.
      this.fail(undefined);
      return;
    }
    try {
      this.parse(chunk);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private parse(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const exchange = this.exchange;
      if (!exchange) {
        // The answer ended before this read did: the server sent more than it framed.
        this.fail(undefined);
        return;
      }
      switch (this.state) {
        case State.Head: {
          if (this.headBytes === 0) {
            // The usual case: the whole head is in this read; parse it from the read buffer.
            const end = chunk.indexOf(CRLF2, at);
            if (end >= 0) {
              const text = chunk.toString('latin1', at, end);
              at = end + 4;
              this.onHead(text, exchange);
              break;
            }
          }
          // A head split across reads: gather it (at most MAX_HEAD bytes).
          const before = this.headBytes;
          const take = Math.min(chunk.length - at, MAX_HEAD + 4 - before);
          const all = Buffer.concat([...this.head, chunk.subarray(at, at + take)]);
          const end = all.indexOf(CRLF2, Math.max(0, before - 3));
          if (end < 0) {
            if (all.length > MAX_HEAD) throw protocolError(`head longer than ${MAX_HEAD} bytes`);
            this.head = [all];
            this.headBytes = all.length;
            return;
          }
          at += end + 4 - before;
          this.head = [];
          this.headBytes = 0;
          this.onHead(all.toString('latin1', 0, end), exchange);
          break;
        }
        case State.Length:
        case State.ChunkData: {
          const n = Math.min(this.remaining, chunk.length - at);
          exchange.onBody(chunk.subarray(at, at + n));
          at += n;
          this.remaining -= n;
          if (this.remaining === 0) {
            if (this.state === State.Length) this.complete(at < chunk.length);
            else this.state = State.ChunkEnd;
          }
          break;
        }
        case State.UntilClose:
          exchange.onBody(chunk.subarray(at));
          return;
        case State.ChunkSize:
        case State.ChunkEnd:
        case State.Trailer: {
          const nl = chunk.indexOf(10, at);
          const upTo = nl < 0 ? chunk.length : nl;
          this.line += chunk.toString('latin1', at, upTo);
          if (this.line.length > MAX_LINE) throw protocolError('chunk line too long');
          if (nl < 0) return;
          at = nl + 1;
          const line = this.line.replace(/\r$/, '');
          this.line = '';
          if (this.state === State.ChunkEnd) {
            if (line !== '') throw protocolError('no CRLF after a chunk');
            this.state = State.ChunkSize;
          } else if (this.state === State.ChunkSize) {
            const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line)?.[1];
            if (size === undefined) throw protocolError(`bad chunk size ${JSON.stringify(line.slice(0, 40))}`);
            this.remaining = parseInt(size, 16);
            this.state = this.remaining === 0 ? State.Trailer : State.ChunkData;
          } else if (line === '') {
            this.complete(at < chunk.length);
          }
          break;
        }
      }
    }
  }

  private onHead(text: string, exchange: Exchange): void {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? '');
    if (!m) throw protocolError(`bad status line ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`);
    const status = Number(m[2]);
    if (status >= 100 && status < 200) {
      if (status === 101) throw protocolError('unexpected protocol switch');
      return; // an interim answer; the real one follows
    }
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) throw protocolError(`bad header line ${JSON.stringify(line.slice(0, 40))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const seen = headers.get(name);
      headers.set(name, seen === undefined ? value : `${seen}, ${value}`);
    }
    const connection = headers.get('connection')?.toLowerCase() ?? '';
    this.reusable = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    const te = headers.get('transfer-encoding');
    const length = headers.get('content-length');
    if (te !== undefined) {
      if (!/(?:^|,)\s*chunked\s*$/i.test(te)) throw protocolError(`unsupported transfer-encoding ${te}`);
      this.state = State.ChunkSize;
      // A message with both is suspect (request smuggling): read it, but do not reuse the connection.
      if (length !== undefined) this.reusable = false;
    } else if (status === 204 || status === 304) {
      this.state = State.Length;
      this.remaining = 0;
    } else if (length !== undefined) {
      if (!/^\d{1,15}$/.test(length)) throw protocolError(`bad content-length ${length}`);
      this.state = State.Length;
      this.remaining = Number(length);
    } else {
      this.state = State.UntilClose;
      this.reusable = false;
    }
    exchange.onHead({ status, headers });
    if (this.exchange === exchange && this.state === State.Length && this.remaining === 0) this.complete(false);
  }

  /** The answer is complete: the connection goes back to the idle list (or is closed), then onEnd. */
  private complete(extraBytes: boolean): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    if (this.reusable && !extraBytes && this.usable) {
      this.socket.setTimeout(IDLE_MS);
      this.socket.unref();
      const list = idle.get(this.key) ?? [];
      list.push(this);
      idle.set(this.key, list);
    } else {
      this.fail(undefined);
    }
    exchange?.onEnd();
  }
}

function checkToken(s: string, what: string): void {
  if (/[\r\n\0]/.test(s)) throw new TypeError(`invalid character in ${what} ${JSON.stringify(s)}`);
}

/**
 * Sends a GET on an idle keep-alive connection to the same origin, or a new one. `exchange` hears
 * exactly one onEnd or onError, unless the returned function is called first: that drops the
 * request (closing its connection) and nothing more is reported. Throws (TypeError) for a path or
 * header that cannot be sent.
 */
export function get(req: GetRequest, exchange: Exchange): () => void {
  checkToken(req.path, 'path');
  let head = `GET ${req.path} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(req.headers)) {
    checkToken(name, 'header name');
    checkToken(value, `header ${name}`);
    head += `${name}: ${value}\r\n`;
  }
  head += '\r\n';
  const key = `${req.protocol}//${req.hostname}:${req.port ?? ''}`;
  const list = idle.get(key);
  let conn: Connection | undefined;
  while (list && list.length > 0 && !conn?.usable) conn = list.pop();
  if (!conn?.usable) conn = new Connection(key, req, req.connectionTimeoutMs);
  const chosen = conn;
  chosen.send(req, head, exchange);
  return () => chosen.abort(exchange);
}
