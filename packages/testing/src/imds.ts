// A stand-in for SaladCloud's instance metadata service on loopback, for tests that run real
// worker (or app) processes: it records every request and answers 204, as SaladCloud's IMDS spec
// (shared/reference/saladcloud-imds-api.yaml) answers PUT /v1/deletion-cost, /v1/reallocate and /v1/recreate.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ImdsRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Date.now() when it arrived. */
  at: number;
}

export interface RecordingImds {
  url: string;
  requests: ImdsRequest[];
  close(): Promise<void>;
}

export async function startRecordingImds(): Promise<RecordingImds> {
  const requests: ImdsRequest[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, at: Date.now() });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
