// Real storage backends for the storage tests: a loopback S3-protocol server (fauxqs, in process,
// on 127.0.0.1 and a random port) behind a small HTTP proxy that can answer 503 to the next N
// requests, cut or stall them, corrupt a GET's body, check SigV4 signatures (opt-in), and records
// every request line; and a temp directory for the local backend.
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { buildApp } from 'fauxqs';
import { LocalStore, S3Store, type ObjectStore } from '@drover/storage';

export const BACKENDS = ['local', 's3'] as const;
export type BackendKind = (typeof BACKENDS)[number];

export interface Backend {
  kind: BackendKind;
  store: ObjectStore;
  bucket: string;
  /** Scratch directory for local files used by the test. */
  dir: string;
  /** How a separate process reaches this store: DROVER_STORAGE and the S3 variables. */
  env: Record<string, string>;
  /** S3 only: the proxy's request log ("METHOD /path?query") and its 503 switch. */
  requests: string[];
  failNext(n: number): void;
  /** S3 only: cut the connection (ECONNRESET) of the next N requests instead of answering. */
  resetNext(n: number): void;
  /** Requests answered with 503 or cut off so far. */
  failed(): number;
  /** S3 only: flip one byte of the body of the next N successful GETs (headers, ETag included, unchanged). */
  corruptNext(n: number): void;
  /** S3 only: never answer the next N requests (the client's timeout must end them). */
  stallNext(n: number): void;
  /** S3 only: awaited before each request is passed on (or answered by a fault). */
  beforeRequest?: (req: IncomingMessage) => Promise<void> | void;
  close(): Promise<void>;
}

export interface BackendOptions {
  /**
   * S3 only: the proxy checks every request's SigV4 signature against the credentials test/test
   * and answers 403 (InvalidAccessKeyId / SignatureDoesNotMatch, as S3 does) when it is wrong.
   */
  verifySignatures?: boolean;
}

export const ACCESS_KEY_ID = 'test';
const SECRET_ACCESS_KEY = 'test';

function strictEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Why a request's SigV4 signature is not valid for test/test, or undefined when it is. */
function signatureProblem(req: IncomingMessage): { code: string; message: string } | undefined {
  const auth = req.headers.authorization ?? '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return { code: 'AccessDenied', message: 'missing or malformed SigV4 Authorization header' };
  const [, keyId, day, region, service, signedHeaders, signature] = m as unknown as string[];
  if (keyId !== ACCESS_KEY_ID) return { code: 'InvalidAccessKeyId', message: 'The AWS Access Key Id you provided does not exist in our records.' };
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const [rawPath = '', rawQuery = ''] = (req.url ?? '').split(/\?(.*)/s);
  const query = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const [k = '', v = ''] = p.split(/=(.*)/s);
      return [strictEncode(decodeURIComponent(k)), strictEncode(decodeURIComponent(v))] as const;
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const names = signedHeaders!.split(';');
  const headers = names.map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const payload = String(req.headers['x-amz-content-sha256'] ?? '');
  const canonical = [req.method, rawPath, query, headers, signedHeaders, payload].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${SECRET_ACCESS_KEY}`).update(day!).digest();
  for (const part of [region!, service!, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  if (createHmac('sha256', key).update(toSign).digest('hex') !== signature) {
    return { code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.' };
  }
  return undefined;
}

function s3ErrorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>TESTPROXY</RequestId></Error>`;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

export async function startBackend(kind: BackendKind, options: BackendOptions = {}): Promise<Backend> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-storage-'));
  const bucket = 'jobs';
  if (kind === 'local') {
    const store = new LocalStore(join(dir, 'store'));
    return {
      kind, store, bucket, dir, requests: [], env: { DROVER_STORAGE: pathToFileURL(join(dir, 'store')).href },
      failNext: () => { throw new Error('the local backend has no proxy'); },
      resetNext: () => { throw new Error('the local backend has no proxy'); },
      failed: () => 0,
      corruptNext: () => { throw new Error('the local backend has no proxy'); },
      stallNext: () => { throw new Error('the local backend has no proxy'); },
      close: () => rm(dir, { recursive: true, force: true }),
    };
  }

  const s3 = buildApp({ logger: false });
  await s3.listen({ port: 0, host: '127.0.0.1' });
  const upstreamPort = (s3.server.address() as AddressInfo).port;
  const requests: string[] = [];
  let toFail = 0;
  let toReset = 0;
  let toCorrupt = 0;
  let toStall = 0;
  let failedCount = 0;
  // The Backend object, once built: tests set its `beforeRequest`.
  const self: { backend?: Backend } = {};
  const proxy = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const hook = self.backend?.beforeRequest;
    if (!hook) {
      handle(req, res);
      return;
    }
    Promise.resolve(hook(req)).then(() => handle(req, res), () => res.destroy());
  });
  const handle = (req: IncomingMessage, res: import('node:http').ServerResponse): void => {
    if (options.verifySignatures) {
      const problem = signatureProblem(req);
      if (problem) {
        req.resume();
        req.on('end', () => {
          res.writeHead(403, { 'content-type': 'application/xml' });
          res.end(req.method === 'HEAD' ? undefined : s3ErrorXml(problem.code, problem.message));
        });
        return;
      }
    }
    if (toStall > 0) {
      toStall--;
      failedCount++;
      req.resume();
      return;
    }
    if (toReset > 0) {
      toReset--;
      failedCount++;
      req.socket.destroy();
      return;
    }
    if (toFail > 0) {
      toFail--;
      failedCount++;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end(s3ErrorXml('ServiceUnavailable', 'try again'));
      });
      return;
    }
    const up = request(
      { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        const status = upRes.statusCode ?? 502;
        res.writeHead(status, upRes.headers);
        if (req.method === 'GET' && status >= 200 && status < 300 && !req.url?.includes('list-type') && toCorrupt > 0) {
          toCorrupt--;
          let flipped = false;
          upRes.on('data', (chunk: Buffer) => {
            if (!flipped && chunk.length > 0) {
              chunk[0] = chunk[0]! ^ 0xff;
              flipped = true;
            }
            res.write(chunk);
          });
          upRes.on('end', () => res.end());
          return;
        }
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  };
  const port = await listen(proxy);
  const store = new S3Store({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    forcePathStyle: true,
  });
  await store.client.send(new CreateBucketCommand({ Bucket: bucket }));
  const env = {
    DROVER_STORAGE: 's3',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  };
  const backend: Backend = {
    kind, store, bucket, dir, requests, env,
    failNext: (n) => { toFail = n; },
    resetNext: (n) => { toReset = n; },
    failed: () => failedCount,
    corruptNext: (n) => { toCorrupt = n; },
    stallNext: (n) => { toStall = n; },
    close: async () => {
      store.client.destroy();
      proxy.closeAllConnections();
      await new Promise<void>((r) => proxy.close(() => r()));
      await s3.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  self.backend = backend;
  return backend;
}

export async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

export async function keysOf(store: ObjectStore, bucket: string, prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(bucket, prefix)) keys.push(o.key);
  return keys;
}
