// The worker threads' minimal HTTP/1.1 client (packages/storage/src/raw-http.ts), against real TCP
// and TLS servers that answer with hand-written bytes: keep-alive reuse, bodies framed by
// Content-Length, chunked or by the end of the connection, heads split across reads, 1xx answers,
// `Connection: close`, extra bytes, connections cut or silent, malformed answers, and TLS.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { get, type GetRequest, type ResponseHead } from '../../packages/storage/src/raw-http.js';

interface Answer {
  head?: ResponseHead;
  body: Buffer;
}

/** A GET through raw-http, as a promise of the answer (head and whole body). */
function fetch(port: number, path = '/x', opts: Partial<GetRequest> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let head: ResponseHead | undefined;
    get({
      protocol: 'http:', hostname: '127.0.0.1', port, path, headers: { host: `127.0.0.1:${port}` },
      requestTimeoutMs: 5_000, connectionTimeoutMs: 5_000, ...opts,
    }, {
      onHead: (h) => { head = h; },
      // The chunk is only valid during the call (the read buffer is reused): copy it.
      onBody: (c) => { chunks.push(Buffer.from(c)); },
      onEnd: () => resolve({ head, body: Buffer.concat(chunks) }),
      onError: reject,
    });
  });
}

/**
 * A TCP server that reads each request head and answers with whatever `answer` writes. It counts
 * connections and keeps the request heads it saw.
 */
async function scriptedServer(answer: (socket: Socket, request: string, n: number) => void | Promise<void>) {
  const requests: string[] = [];
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = '';
    socket.on('data', (d) => {
      pending += d.toString('latin1');
      let end;
      while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
        const request = pending.slice(0, end);
        pending = pending.slice(end + 4);
        requests.push(request);
        void answer(socket, request, requests.length);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const ok = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe('raw-http', () => {
  test('keeps one connection alive for GETs one after another, sending the headers as given', async () => {
    const s = await scriptedServer((socket, _req, n) => { socket.write(ok(`answer ${n}`, 'x-amz-request-id: R1\r\n')); });
    try {
      for (let i = 1; i <= 5; i++) {
        const a = await fetch(s.port, `/b/k${i}`, { headers: { host: `127.0.0.1:${s.port}`, 'if-match': '"abc"' } });
        assert.equal(a.head?.status, 200);
        assert.equal(a.head?.headers.get('x-amz-request-id'), 'R1');
        assert.equal(a.body.toString(), `answer ${i}`);
      }
      assert.equal(s.connections(), 1);
      assert.match(s.requests[4] ?? '', /^GET \/b\/k5 HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\nif-match: "abc"$/);
    } finally {
      await s.close();
    }
  });

  test('reads chunked bodies, heads split across reads and 1xx answers before the real one', async () => {
    const body = Buffer.alloc(70_000, 7);
    const s = await scriptedServer(async (socket) => {
      const bytes = Buffer.concat([
        Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Split:  yes \r\n\r\n'),
        Buffer.from('a;ext=1\r\n0123456789\r\n'), Buffer.from(`${(body.length - 10).toString(16)}\r\n`), body.subarray(10), Buffer.from('\r\n0\r\nx-trailer: t\r\n\r\n'),
      ]);
      // A byte at a time for the head, then the rest in pieces.
      for (let i = 0; i < 120; i++) {
        socket.write(bytes.subarray(i, i + 1));
        await sleep(1);
      }
      socket.write(bytes.subarray(120, 5000));
      await sleep(5);
      socket.write(bytes.subarray(5000));
    });
    try {
      const a = await fetch(s.port);
      assert.equal(a.head?.status, 200);
      assert.equal(a.head?.headers.get('x-split'), 'yes');
      assert.ok(a.body.equals(Buffer.concat([Buffer.from('0123456789'), body.subarray(10)])));
      // The connection is still good for the next request.
      await fetch(s.port);
      assert.equal(s.connections(), 1);
    } finally {
      await s.close();
    }
  });

  test('does not reuse a connection after Connection: close, a body framed by the close, or extra bytes', async () => {
    const s = await scriptedServer((socket, _req, n) => {
      if (n === 1) socket.write(ok('closing', 'connection: close\r\n'));
      else if (n === 2) socket.end('HTTP/1.1 200 OK\r\n\r\nuntil the end');
      else if (n === 3) socket.write(`${ok('short')}GARBAGE`);
      else socket.write(ok('fine'));
    });
    try {
      assert.equal((await fetch(s.port)).body.toString(), 'closing');
      assert.equal((await fetch(s.port)).body.toString(), 'until the end');
      assert.equal((await fetch(s.port)).body.toString(), 'short');
      assert.equal((await fetch(s.port)).body.toString(), 'fine');
      assert.equal(s.connections(), 4);
    } finally {
      await s.close();
    }
  });

  test('an idle connection the server closes is dropped: the next GET opens a new one', async () => {
    const s = await scriptedServer((socket) => {
      socket.write(ok('once'));
      setTimeout(() => socket.end(), 20);
    });
    try {
      await fetch(s.port);
      await sleep(100);
      assert.equal((await fetch(s.port)).body.toString(), 'once');
      assert.equal(s.connections(), 2);
    } finally {
      await s.close();
    }
  });

  test('a connection cut mid-answer is ECONNRESET; a silent server is a TimeoutError; a refused one ECONNREFUSED', async () => {
    const s = await scriptedServer((socket, req) => {
      if (req.startsWith('GET /cut')) socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part');
      // /silent: no answer at all
    });
    try {
      await assert.rejects(fetch(s.port, '/cut'), { code: 'ECONNRESET', message: 'socket hang up' });
      await assert.rejects(fetch(s.port, '/silent', { requestTimeoutMs: 200 }), { name: 'TimeoutError', message: /no data from 127\.0\.0\.1 for 200 ms/ });
    } finally {
      await s.close();
    }
    await assert.rejects(fetch(s.port), { code: 'ECONNREFUSED' });
  });

  test('malformed answers and unsendable requests are errors', async () => {
    const s = await scriptedServer((socket, req) => {
      if (req.startsWith('GET /status')) socket.write('HTTP/2 200 OK\r\n\r\n');
      else if (req.startsWith('GET /length')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n');
      else socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n');
    });
    try {
      await assert.rejects(fetch(s.port, '/status'), { code: 'HPE_INVALID_RESPONSE', message: /bad status line/ });
      await assert.rejects(fetch(s.port, '/length'), { code: 'HPE_INVALID_RESPONSE', message: /bad content-length/ });
      await assert.rejects(fetch(s.port, '/chunks'), { code: 'HPE_INVALID_RESPONSE', message: /bad chunk size/ });
      assert.throws(() => get({
        protocol: 'http:', hostname: '127.0.0.1', port: s.port, path: '/x', headers: { 'x-evil': 'a\r\nx-injected: 1' },
        requestTimeoutMs: 1000, connectionTimeoutMs: 1000,
      }, { onHead() {}, onBody() {}, onEnd() {}, onError() {} }), TypeError);
    } finally {
      await s.close();
    }
  });

  describe('over TLS', () => {
    let dir = '';
    let server: tls.Server | undefined;
    let port = 0;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'drover-raw-http-'));
      // A throwaway self-signed certificate for localhost (openssl is part of the machine's base system).
      const made = spawnSync('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      ]);
      if (made.status !== 0) throw new Error(`openssl could not make a test certificate: ${made.stderr?.toString() ?? made.error?.message}`);
      server = tls.createServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) }, (socket) => {
        socket.once('data', () => socket.end(ok('secret')));
        socket.on('error', () => undefined);
      });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
      port = (server.address() as AddressInfo).port;
    });
    after(async () => {
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      await rm(dir, { recursive: true, force: true });
    });

    test('a certificate the process does not trust is refused', async () => {
      await assert.rejects(fetch(port, '/x', { protocol: 'https:', hostname: 'localhost' }), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    });

    test('with the certificate trusted (NODE_EXTRA_CA_CERTS), the GET goes through, checked against the host name', async () => {
      const module = fileURLToPath(new URL('../../packages/storage/src/raw-http.ts', import.meta.url));
      const script = `
        const { get } = await import(${JSON.stringify(module)});
        const chunks = [];
        get({ protocol: 'https:', hostname: 'localhost', port: ${port}, path: '/x', headers: { host: 'localhost' }, requestTimeoutMs: 5000, connectionTimeoutMs: 5000 },
          { onHead() {}, onBody(c) { chunks.push(Buffer.from(c)); }, onEnd() { console.log(Buffer.concat(chunks).toString()); }, onError(e) { console.log('error', e.code); } });`;
      // Another process, since NODE_EXTRA_CA_CERTS is read at start; this one keeps serving meanwhile.
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') }, encoding: 'utf8',
      });
      assert.equal(stdout.trim(), 'secret');
    });
  });
});
