// A fault-injecting HTTP proxy for an S3-protocol server: every request is forwarded, except a
// share answered 500/503 (S3's InternalError / SlowDown) without reaching the server, a share whose
// connection is reset (before forwarding, or after the server answered, mid-response), and a share
// held back for a while first. It also records who wrote what: the access key of each request
// (from its SigV4 Authorization header), so a test can tell one worker's writes from another's.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FaultRates {
  /** Share of requests answered 500 or 503 without being forwarded. */
  error: number;
  /** Share of requests whose connection is reset (half before forwarding, half mid-response). */
  reset: number;
  /** Share of requests delayed by up to `slowMs` before being forwarded. */
  slow: number;
  slowMs: number;
}

export const NO_FAULTS: FaultRates = { error: 0, reset: 0, slow: 0, slowMs: 0 };

export interface ProxiedRequest {
  /** Date.now() when the request arrived. */
  at: number;
  method: string;
  /** Path and query, as sent. */
  url: string;
  accessKey: string | undefined;
  fault: 'error' | 'reset-before' | 'reset-after' | 'slow' | undefined;
  /** The server's status, or the injected one; undefined for a reset before forwarding. */
  status: number | undefined;
}

export interface FaultCounts {
  requests: number;
  errors: number;
  resets: number;
  slowed: number;
}

export interface FaultProxy {
  url: string;
  counts: FaultCounts;
  /** Every request, when started with `record: true`. */
  log: ProxiedRequest[];
  setRates(rates: FaultRates): void;
  close(): Promise<void>;
}

/** The access key id in a SigV4 `Authorization: AWS4-HMAC-SHA256 Credential=AKID/…` header. */
export function accessKeyOf(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  return auth ? /Credential=([^/,\s]+)\//.exec(auth)?.[1] : undefined;
}

/** Requests that change what the bucket holds (a PUT, a multipart completion, a DELETE). */
export function isWrite(r: Pick<ProxiedRequest, 'method' | 'url'>): boolean {
  return r.method === 'PUT' || r.method === 'DELETE' || (r.method === 'POST' && /[?&]uploadId=/.test(r.url));
}

function s3Error(res: ServerResponse, status: 500 | 503): void {
  const [code, message] = status === 503 ? ['SlowDown', 'Please reduce your request rate.'] : ['InternalError', 'We encountered an internal error. Please try again.'];
  res.writeHead(status, { 'content-type': 'application/xml', connection: 'close' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`);
}

export async function startFaultProxy(target: string, opts: { rates?: FaultRates; record?: boolean; random?: () => number } = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  const random = opts.random ?? Math.random;
  let rates = opts.rates ?? NO_FAULTS;
  const counts: FaultCounts = { requests: 0, errors: 0, resets: 0, slowed: 0 };
  const log: ProxiedRequest[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const server = http.createServer((req, res) => {
    counts.requests++;
    const entry: ProxiedRequest = { at: Date.now(), method: req.method ?? 'GET', url: req.url ?? '/', accessKey: accessKeyOf(req), fault: undefined, status: undefined };
    if (opts.record) log.push(entry);
    const roll = random();
    if (roll < rates.error) {
      counts.errors++;
      entry.fault = 'error';
      entry.status = random() < 0.5 ? 500 : 503;
      req.resume(); // the body is read and dropped, as a real server that failed would
      req.on('end', () => s3Error(res, entry.status as 500 | 503));
      return;
    }
    if (roll < rates.error + rates.reset / 2) {
      counts.resets++;
      entry.fault = 'reset-before';
      req.socket.destroy();
      return;
    }
    const resetAfter = roll < rates.error + rates.reset;
    if (resetAfter) {
      counts.resets++;
      entry.fault = 'reset-after';
    }
    let delay = 0;
    if (!resetAfter && roll < rates.error + rates.reset + rates.slow) {
      counts.slowed++;
      entry.fault = 'slow';
      delay = Math.round(random() * rates.slowMs);
    }
    const forward = () => {
      const out = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
        (up) => {
          entry.status = up.statusCode;
          if (resetAfter) {
            // The server did the work (a PUT landed); the client never hears so and must retry.
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.once('data', (chunk: Buffer) => {
              res.write(chunk.subarray(0, Math.floor(chunk.length / 2)));
              up.destroy();
              res.socket?.destroy();
            });
            up.once('end', () => res.socket?.destroy());
            return;
          }
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      out.on('error', () => res.socket?.destroy());
      req.pipe(out);
    };
    if (delay > 0) {
      req.pause();
      setTimeout(forward, delay);
    } else {
      forward();
    }
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    log,
    setRates: (r) => (rates = r),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
