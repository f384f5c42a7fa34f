// Real storage backends for the storage tests: a loopback S3-protocol server (fauxqs, in process,
// on 127.0.0.1 and a random port) behind a small HTTP proxy that can answer 503 to the next N
// requests and records every request line, and a temp directory for the local backend.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
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
  close(): Promise<void>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

export async function startBackend(kind: BackendKind): Promise<Backend> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-storage-'));
  const bucket = 'jobs';
  if (kind === 'local') {
    const store = new LocalStore(join(dir, 'store'));
    return {
      kind, store, bucket, dir, requests: [], env: { DROVER_STORAGE: pathToFileURL(join(dir, 'store')).href },
      failNext: () => { throw new Error('the local backend has no proxy'); },
      resetNext: () => { throw new Error('the local backend has no proxy'); },
      failed: () => 0,
      close: () => rm(dir, { recursive: true, force: true }),
    };
  }

  const s3 = buildApp({ logger: false });
  await s3.listen({ port: 0, host: '127.0.0.1' });
  const upstreamPort = (s3.server.address() as AddressInfo).port;
  const requests: string[] = [];
  let toFail = 0;
  let toReset = 0;
  let failedCount = 0;
  const proxy = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
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
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>try again</Message></Error>');
      });
      return;
    }
    const up = request(
      { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
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
  return {
    kind, store, bucket, dir, requests, env,
    failNext: (n) => { toFail = n; },
    resetNext: (n) => { toReset = n; },
    failed: () => failedCount,
    close: async () => {
      store.client.destroy();
      proxy.closeAllConnections();
      await new Promise<void>((r) => proxy.close(() => r()));
      await s3.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
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
