// The worker's SaladCloud IMDS client against a real loopback HTTP server that records every call.
import { ImdsClient, type ImdsLog, type ImdsOptions } from '@drover/worker';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';

interface Recorded {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

/** A fake IMDS: records each request; `answer` decides the response (default 204, as the IMDS spec answers every one of these). */
function fakeImds() {
  const calls: Recorded[] = [];
  let answer: (req: Recorded, res: http.ServerResponse) => void = (req, res) => {
    res.writeHead(204).end();
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const rec = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: text ? JSON.parse(text) : undefined };
      calls.push(rec);
      answer(rec, res);
    });
  });
  return {
    calls,
    server,
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answerWith(fn: typeof answer) {
      answer = fn;
    },
  };
}

/** A log that keeps its lines, so tests can see what was reported. */
function memoryLog(): ImdsLog & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`) };
}

/** An exit that records its code instead of ending the test process. */
function recordingExit() {
  const codes: number[] = [];
  return { codes, exit: (code: number) => void codes.push(code) };
}

describe('IMDS client', () => {
  const imds = fakeImds();
  let log: ReturnType<typeof memoryLog>;

  before(async () => {
    await new Promise<void>((resolve) => imds.server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    imds.server.closeAllConnections();
    await new Promise((resolve) => imds.server.close(resolve));
  });
  beforeEach(() => {
    imds.calls.length = 0;
    imds.answerWith((req, res) => void res.writeHead(req.path === '/v1/deletion-cost' ? 200 : 204).end());
    log = memoryLog();
  });

  function client(extra: ImdsOptions = {}) {
    const exit = recordingExit();
    return { exit, imdsClient: ImdsClient.fromEnv({ DROVER_IMDS_URL: imds.url(), SALAD_MACHINE_ID: 'machine-1' }, { log, exit: exit.exit, timeoutMs: 10_000, ...extra }) };
  }

  it('reallocation posts its reason to /v1/reallocate with the Metadata: true header', async () => {
    const { imdsClient, exit } = client();
    assert.equal(await imdsClient.reallocate('blocked from 5 jobs'), true);
    assert.equal(imds.calls.length, 1);
    const [call] = imds.calls;
    assert.equal(call!.method, 'POST');
    assert.equal(call!.path, '/v1/reallocate');
    assert.equal(call!.headers.metadata, 'true');
    assert.equal(call!.headers['content-type'], 'application/json');
    assert.deepEqual(call!.body, { reason: 'blocked from 5 jobs' });
    assert.deepEqual(exit.codes, []);
  });

  it('a reallocation reason is cut to the 1000 characters IMDS accepts, and an empty one is replaced', async () => {
    const { imdsClient } = client();
    await imdsClient.reallocate('x'.repeat(1500));
    await imdsClient.reallocate('   ');
    assert.deepEqual(imds.calls.map((c) => (c.body as { reason: string }).reason.length), [1000, 'no reason given'.length]);
  });

  it('the deletion cost is PUT to /v1/deletion-cost as {deletion_cost} with the Metadata: true header', async () => {
    const { imdsClient } = client();
    assert.equal(await imdsClient.setDeletionCost(250), true);
    assert.deepEqual(
      imds.calls.map((c) => ({ method: c.method, path: c.path, metadata: c.headers.metadata, body: c.body })),
      [{ method: 'PUT', path: '/v1/deletion-cost', metadata: 'true', body: { deletion_cost: 250 } }],
    );
  });

  it('a deletion cost that is not a 32-bit integer is logged and never sent', async () => {
    const { imdsClient } = client();
    assert.equal(await imdsClient.setDeletionCost(1.5), false);
    assert.equal(await imdsClient.setDeletionCost(2 ** 31), false);
    assert.equal(imds.calls.length, 0);
    assert.equal(log.lines.filter((l) => l.startsWith('warn') && l.includes('32-bit')).length, 2);
  });

  it('recreation posts to /v1/recreate with the Metadata: true header and no body', async () => {
    const { imdsClient, exit } = client();
    assert.equal(await imdsClient.recreate(), true);
    assert.deepEqual(
      imds.calls.map((c) => ({ method: c.method, path: c.path, metadata: c.headers.metadata, body: c.body })),
      [{ method: 'POST', path: '/v1/recreate', metadata: 'true', body: undefined }],
    );
    assert.deepEqual(exit.codes, []);
  });

  it('a deletion cost that keeps failing is logged once, and again after it worked in between', async () => {
    imds.answerWith((_req, res) => void res.writeHead(500).end('boom'));
    const { imdsClient } = client();
    for (const cost of [1, 3, 4]) assert.equal(await imdsClient.setDeletionCost(cost), false);
    assert.equal(imds.calls.length, 3, 'every cost is still sent');
    assert.equal(log.lines.filter((l) => l.startsWith('warn') && l.includes('answered 500')).length, 1);
    imds.answerWith((_req, res) => void res.writeHead(204).end());
    assert.equal(await imdsClient.setDeletionCost(5), true);
    imds.answerWith((_req, res) => void res.writeHead(500).end('boom'));
    assert.equal(await imdsClient.setDeletionCost(6), false);
    assert.equal(log.lines.filter((l) => l.startsWith('warn') && l.includes('answered 500')).length, 2);
  });

  it('an IMDS answering 500 is logged with its status and body, never thrown', async () => {
    imds.answerWith((_req, res) => void res.writeHead(500, { 'content-type': 'application/json' }).end('{"title":"broken"}'));
    const { imdsClient, exit } = client();
    assert.equal(await imdsClient.reallocate('slow node'), false);
    assert.equal(await imdsClient.setDeletionCost(1), false);
    assert.equal(await imdsClient.recreate(), false);
    assert.equal(imds.calls.length, 3);
    const warnings = log.lines.filter((l) => l.startsWith('warn'));
    assert.equal(warnings.length, 3);
    for (const w of warnings) assert.match(w, /answered 500: \{"title":"broken"\}/);
    assert.deepEqual(exit.codes, []);
  });

  it('an IMDS that is not listening is logged, never thrown', async () => {
    // A port that was just bound and released: nothing listens there.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));

    const exit = recordingExit();
    const imdsClient = new ImdsClient({ baseUrl: `http://127.0.0.1:${closedPort}`, machineId: 'machine-1', log, exit: exit.exit, timeoutMs: 2000 });
    assert.equal(await imdsClient.reallocate('bad gpu'), false);
    assert.equal(await imdsClient.setDeletionCost(10), false);
    assert.equal(await imdsClient.recreate(), false);
    const warnings = log.lines.filter((l) => l.startsWith('warn'));
    assert.equal(warnings.length, 3);
    for (const w of warnings) assert.match(w, /failed: .*ECONNREFUSED/);
    assert.deepEqual(exit.codes, []);
  });

  it('an IMDS that hangs past the timeout is logged, never thrown', async () => {
    const hung: http.ServerResponse[] = [];
    imds.answerWith((_req, res) => void hung.push(res));
    const { imdsClient } = client({ timeoutMs: 200 });
    assert.equal(await imdsClient.setDeletionCost(7), false);
    assert.equal(await imdsClient.reallocate('hang'), false);
    assert.equal(imds.calls.length, 2);
    const warnings = log.lines.filter((l) => l.startsWith('warn'));
    assert.equal(warnings.length, 2);
    for (const w of warnings) assert.match(w, /timed out after 200 ms/);
    for (const res of hung) res.destroy();
  });

  for (const machineId of ['LOCAL', undefined]) {
    const label = machineId ?? 'unset';
    it(`with the machine id ${label}, reallocation and recreation exit(1) without calling IMDS`, async () => {
      const exit = recordingExit();
      const env = machineId === undefined ? { DROVER_IMDS_URL: imds.url() } : { DROVER_IMDS_URL: imds.url(), SALAD_MACHINE_ID: machineId };
      const imdsClient = ImdsClient.fromEnv(env, { log, exit: exit.exit });
      assert.equal(imdsClient.onSalad, false);
      assert.equal(await imdsClient.reallocate('blocked'), false);
      assert.deepEqual(exit.codes, [1]);
      assert.equal(await imdsClient.recreate(), false);
      assert.deepEqual(exit.codes, [1, 1]);
      assert.equal(imds.calls.length, 0);
      assert.ok(log.lines.some((l) => l.includes('not on SaladCloud') && l.includes(label)));
    });

    it(`with the machine id ${label}, deletion costs are a no-op that calls nothing`, async () => {
      const exit = recordingExit();
      const env = machineId === undefined ? { DROVER_IMDS_URL: imds.url() } : { DROVER_IMDS_URL: imds.url(), SALAD_MACHINE_ID: machineId };
      const imdsClient = ImdsClient.fromEnv(env, { log, exit: exit.exit });
      assert.equal(await imdsClient.setDeletionCost(3), true);
      assert.equal(imds.calls.length, 0);
      assert.deepEqual(exit.codes, []);
    });
  }

  it('with the IMDS URL off (drover up), the node is not on SaladCloud: nothing is called', async () => {
    const exit = recordingExit();
    const imdsClient = ImdsClient.fromEnv({ DROVER_IMDS_URL: 'off', SALAD_MACHINE_ID: 'local-1' }, { log, exit: exit.exit });
    assert.equal(imdsClient.onSalad, false);
    assert.equal(await imdsClient.setDeletionCost(3), true);
    assert.equal(await imdsClient.reallocate('blocked'), false);
    assert.deepEqual(exit.codes, [1]);
    assert.equal(imds.calls.length, 0);
  });

  it('without DROVER_IMDS_URL the client targets SaladCloud\'s link-local IMDS address', () => {
    assert.equal(ImdsClient.fromEnv({ SALAD_MACHINE_ID: 'm' }).baseUrl, 'http://169.254.169.254');
    assert.equal(ImdsClient.fromEnv({ DROVER_IMDS_URL: 'http://127.0.0.1:9/' }).baseUrl, 'http://127.0.0.1:9');
  });
});
