// DroverClient's retries (@drover/common's policy), against a loopback HTTP server that answers
// as each test scripts it: idempotent calls are retried on gateway errors and network errors, the
// others are sent once; other errors are not retried; an abort gives up at once with its reason.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { DroverApiError, DroverClient, DroverNetworkError } from '@drover/sdk';

const JOB_ID = '00000000-0000-4000-8000-000000000001';

describe('DroverClient retries', () => {
  let server: Server;
  let url: string;
  /** Requests seen, as "METHOD path". */
  let seen: string[];
  /** How the n-th request (1 = the first) is answered. */
  let answer: (n: number, req: IncomingMessage, res: ServerResponse) => void;

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        seen.push(`${req.method} ${req.url}`);
        answer(seen.length, req, res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    seen = [];
  });

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const client = (o: { retries?: number; retryDelayMs?: number } = {}) => new DroverClient({ url, retries: 3, retryDelayMs: 1, ...o });

  test('an idempotent call is retried on 502, 503 and 504 until it is answered', async () => {
    const gateway = [502, 503, 504];
    answer = (n, _req, res) => (n <= 3 ? json(res, gateway[n - 1]!, { error: 'unavailable', message: 'later' }) : json(res, 200, { id: JOB_ID }));
    const job = await client().getJob(JOB_ID);
    assert.equal(job.id, JOB_ID);
    assert.equal(seen.length, 4);
  });

  test('once the retries run out, the last gateway error is thrown as the server sent it', async () => {
    answer = (_n, _req, res) => json(res, 503, { error: 'unavailable', message: 'draining' });
    await assert.rejects(client({ retries: 2 }).getJob(JOB_ID), (err) => err instanceof DroverApiError && err.status === 503 && err.message === 'draining');
    assert.equal(seen.length, 3, 'the first try and 2 retries');
  });

  test('a call that is not idempotent is sent once, whatever the answer', async () => {
    answer = (_n, _req, res) => json(res, 503, { error: 'unavailable', message: 'later' });
    await assert.rejects(client().createJob({ command: 'x', container_group_id: 'g' }), (err) => err instanceof DroverApiError && err.status === 503);
    assert.deepEqual(seen, ['POST /jobs']);
  });

  test('other errors are not retried, even on an idempotent call', async () => {
    for (const status of [500, 404, 409]) {
      seen = [];
      answer = (_n, _req, res) => json(res, status, { error: `e${status}`, message: `status ${status}` });
      await assert.rejects(client().getJob(JOB_ID), (err) => err instanceof DroverApiError && err.status === status && err.error === `e${status}`);
      assert.equal(seen.length, 1, `HTTP ${status} is sent once`);
    }
  });

  test('a connection cut before the answer is retried, then reported as DroverNetworkError', async () => {
    answer = (n, req, res) => (n === 1 ? req.socket.destroy() : json(res, 200, { id: JOB_ID }));
    assert.equal((await client().getJob(JOB_ID)).id, JOB_ID);
    assert.equal(seen.length, 2);

    seen = [];
    answer = (_n, req) => req.socket.destroy();
    await assert.rejects(client({ retries: 2 }).getJob(JOB_ID), (err) => err instanceof DroverNetworkError && err.message.startsWith(`cannot reach ${url}: `));
    assert.equal(seen.length, 3);

    seen = [];
    await assert.rejects(client().createJob({ command: 'x', container_group_id: 'g' }), DroverNetworkError);
    assert.equal(seen.length, 1, 'a POST is not resent after a cut connection');
  });

  test('an abort during the wait between tries gives up at once, with the signal\'s reason', { timeout: 20_000 }, async () => {
    const ac = new AbortController();
    const reason = new Error('shutting down');
    answer = (_n, _req, res) => {
      json(res, 503, { error: 'unavailable', message: 'later' });
      // Late enough for the client to have read the 503 and begun its wait.
      res.on('finish', () => setTimeout(() => ac.abort(reason), 300));
    };
    // The first retry would wait about a minute: only the abort ends this call in time.
    const call = client({ retryDelayMs: 60_000 }).request('GET', `/jobs/${JOB_ID}`, { idempotent: true, signal: ac.signal });
    await assert.rejects(call, (err) => err === reason);
    assert.equal(seen.length, 1);
  });

  test('an abort during a try gives up at once, with the signal\'s reason, and is not retried', async () => {
    const ac = new AbortController();
    const reason = new Error('stop waiting');
    answer = () => ac.abort(reason); // never answers
    await assert.rejects(client().request('GET', '/work', { idempotent: true, signal: ac.signal }), (err) => err === reason);
    assert.equal(seen.length, 1);
  });
});
