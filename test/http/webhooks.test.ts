// Webhooks: which transitions owe one, what they carry and how they are signed, retries with
// backoff, durability across a restart, and the refusal of internal targets.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook } from '@drover/server';
import { DroverApiError } from '@drover/sdk';
import { STORES, freshDatabase, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

const FAST = { pollMs: 50, baseDelayMs: 100 };

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** when it arrived (ms) */
  at: number;
  /** the status the receiver answered */
  answered: number;
}

interface Receiver {
  url: string;
  received: Delivery[];
  at(path: string): Delivery[];
  close(): Promise<void>;
}

/** A loopback HTTP endpoint recording every request; `answer` picks the status (default 200). */
async function startReceiver(answer: (path: string, nth: number) => number = () => 200): Promise<Receiver> {
  const received: Delivery[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const nth = received.filter((d) => d.path === path).length;
      const status = answer(path, nth);
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString(), at: Date.now(), answered: status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 400 ? 'ok' : 'nope');
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    at: (path) => received.filter((d) => d.path === path),
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Expected {
  status: 'running' | 'completed' | 'failed' | 'canceled';
  machine_id: string | null;
}

/**
 * Wait until the job's outbox rows are all delivered and the receiver has one successful request
 * per row, then check each against `expected` (in transition order): body, event header, signature,
 * and that no API key travels with it.
 */
async function expectDeliveries(
  srv: TestServer,
  rcv: Receiver,
  path: string,
  user: TestUser,
  job: { id: string; container_group_id: string },
  expected: Expected[],
): Promise<Delivery[]> {
  const rows = await waitFor('every delivery to be made', async () => {
    const rows = await srv.server.store.getWebhookDeliveries(job.id);
    return rows.length === expected.length && rows.every((r) => r.state === 'delivered') ? rows : undefined;
  });
  const ok = rcv
    .at(path)
    .filter((d) => d.answered < 300)
    .sort((a, b) => Number(a.headers['x-drover-delivery']) - Number(b.headers['x-drover-delivery']));
  assert.equal(ok.length, expected.length, `one successful request per owed webhook at ${path}`);
  assert.deepEqual(
    ok.map((d) => Number(d.headers['x-drover-delivery'])),
    rows.map((r) => r.id),
  );
  const { webhook_secret } = await user.client.me();
  // the secret part of drv_<16 hex id>_<43 character secret> (which may itself contain "_")
  const secretPart = user.token.slice('drv_'.length + 16 + 1);
  assert.equal(secretPart.length, 43);
  ok.forEach((d, i) => {
    const want = expected[i]!;
    const body = JSON.parse(d.body) as unknown;
    assert.deepEqual(body, {
      status: want.status,
      job_id: job.id,
      machine_id: want.machine_id,
      container_group_id: job.container_group_id,
    });
    assert.equal(d.body, JSON.stringify(body), 'the body is compact JSON, the same on both stores');
    assert.equal(d.headers['content-type'], 'application/json');
    assert.equal(d.headers['x-drover-event'], want.status);
    const ts = d.headers['x-drover-timestamp'] as string;
    const sig = d.headers['x-drover-signature'] as string;
    assert.match(ts, /^\d+$/);
    assert.ok(verifyWebhook(webhook_secret, ts, d.body, sig), `signature of the ${want.status} webhook verifies`);
    assert.ok(!verifyWebhook(`${webhook_secret}x`, ts, d.body, sig), 'another secret does not verify it');
    assert.ok(!verifyWebhook(webhook_secret, ts, `${d.body} `, sig), 'another body does not verify it');
    assert.equal(d.headers['x-kelpie-key'], undefined);
    assert.equal(d.headers.authorization, undefined);
    for (const [name, value] of Object.entries(d.headers)) {
      const text = String(value);
      assert.ok(!text.includes(secretPart), `header ${name} does not carry the user's API key`);
      assert.ok(!text.includes(srv.adminKey), `header ${name} does not carry the admin key`);
    }
  });
  return ok;
}

for (const kind of STORES) {
  describe(`webhooks (${kind})`, () => {
    let srv: TestServer;
    let rcv: Receiver;
    const flaky = new Map<string, number[]>();
    before(async () => {
      // a path registered in `flaky` answers the listed statuses in turn, then 200
      rcv = await startReceiver((path, nth) => flaky.get(path)?.[nth] ?? 200);
      srv = await startTestServer(kind, { webhooks: FAST });
    });
    after(async () => {
      await srv?.close();
      await rcv?.close();
    });

    test('every claim sends running, completion sends completed, each signed with the body {status, job_id, machine_id, container_group_id}', async () => {
      const u = await srv.user();
      const group = 'wh-run';
      const job = await u.client.createJob({ command: 'run', container_group_id: group, webhook: `${rcv.url}/run` });
      const m = (id: string) => ({ machine_id: id, container_group_id: group });
      assert.equal((await u.client.claimWork(m('m1')))?.id, job.id);
      await u.client.failJob(job.id, m('m1')); // a failed attempt, retried: no webhook
      assert.equal((await u.client.claimWork(m('m2')))?.id, job.id);
      await u.client.releaseJob(job.id, m('m2')); // handed back: no webhook
      assert.equal((await u.client.claimWork(m('m3')))?.id, job.id);
      await u.client.heartbeat(job.id, m('m3'));
      await u.client.completeJob(job.id, m('m3'));
      await expectDeliveries(srv, rcv, '/run', u, job, [
        { status: 'running', machine_id: 'm1' },
        { status: 'running', machine_id: 'm2' },
        { status: 'running', machine_id: 'm3' },
        { status: 'completed', machine_id: 'm3' },
      ]);
    });

    test('failed is sent once, when the job fails for good, never for a failed attempt that is retried', async () => {
      const u = await srv.user();
      const group = 'wh-fail';
      const job = await u.client.createJob({
        command: 'crash',
        container_group_id: group,
        max_failures: 2,
        webhook: `${rcv.url}/fail`,
      });
      const m = (id: string) => ({ machine_id: id, container_group_id: group });
      await u.client.claimWork(m('m1'));
      await u.client.failJob(job.id, m('m1'));
      await u.client.claimWork(m('m2'));
      await u.client.failJob(job.id, m('m2'));
      assert.equal((await u.client.getJob(job.id)).status, 'failed');
      await expectDeliveries(srv, rcv, '/fail', u, job, [
        { status: 'running', machine_id: 'm1' },
        { status: 'running', machine_id: 'm2' },
        { status: 'failed', machine_id: 'm2' },
      ]);
    });

    test('cancel sends canceled, naming the holder of a running job and no machine for a pending one', async () => {
      const u = await srv.user();
      const group = 'wh-cancel';
      const running = await u.client.createJob({ command: 'a', container_group_id: group, webhook: `${rcv.url}/cancel-running` });
      const pending = await u.client.createJob({ command: 'b', container_group_id: group, webhook: `${rcv.url}/cancel-pending` });
      assert.equal((await u.client.claimWork({ machine_id: 'm1', container_group_id: group }))?.id, running.id);
      await u.client.cancelJob(running.id);
      await u.client.cancelJob(pending.id);
      await u.client.cancelJob(pending.id); // a repeated cancel owes nothing more
      await expectDeliveries(srv, rcv, '/cancel-running', u, running, [
        { status: 'running', machine_id: 'm1' },
        { status: 'canceled', machine_id: 'm1' },
      ]);
      await expectDeliveries(srv, rcv, '/cancel-pending', u, pending, [{ status: 'canceled', machine_id: null }]);
    });

    test('purging a container group sends canceled for each of its running jobs', async () => {
      const u = await srv.user();
      const group = 'wh-purge';
      const job = await u.client.createJob({ command: 'a', container_group_id: group, webhook: `${rcv.url}/purge` });
      await u.client.claimWork({ machine_id: 'm9', container_group_id: group });
      assert.deepEqual(await u.client.purgeContainerGroup(group), { count: 1 });
      await expectDeliveries(srv, rcv, '/purge', u, job, [
        { status: 'running', machine_id: 'm9' },
        { status: 'canceled', machine_id: 'm9' },
      ]);
    });

    test('a delivery the receiver refuses is retried, with growing gaps, until it is accepted', async () => {
      const u = await srv.user();
      flaky.set('/flaky', [500, 500]);
      const group = 'wh-retry';
      const job = await u.client.createJob({ command: 'a', container_group_id: group, webhook: `${rcv.url}/flaky` });
      await u.client.claimWork({ machine_id: 'm1', container_group_id: group });
      await expectDeliveries(srv, rcv, '/flaky', u, job, [{ status: 'running', machine_id: 'm1' }]);
      const tries = rcv.at('/flaky');
      assert.deepEqual(
        tries.map((d) => d.answered),
        [500, 500, 200],
      );
      assert.equal(new Set(tries.map((d) => d.headers['x-drover-delivery'])).size, 1, 'the same delivery each time');
      assert.equal(new Set(tries.map((d) => d.body)).size, 1, 'with the same body');
      const [row] = await srv.server.store.getWebhookDeliveries(job.id);
      assert.equal(row!.attempts, 3);
      // Backoff: the n-th retry waits at least 0.75 × baseDelay × 2^(n-1) (jitter is ±25 %).
      const gap1 = tries[1]!.at - tries[0]!.at;
      const gap2 = tries[2]!.at - tries[1]!.at;
      assert.ok(gap1 >= 0.75 * FAST.baseDelayMs, `first retry after ${gap1} ms`);
      assert.ok(gap2 >= 0.75 * 2 * FAST.baseDelayMs, `second retry after ${gap2} ms`);
    });

    test('a delivery still owed when the server stops is made by the next server on the same database', async () => {
      const db = await freshDatabase(kind);
      let receiverUp = false;
      const local = await startReceiver(() => (receiverUp ? 200 : 503));
      let first: TestServer | undefined;
      let second: TestServer | undefined;
      try {
        first = await startTestServer(kind, { database: db.database, webhooks: FAST });
        const u = await first.user();
        const group = 'wh-restart';
        const job = await u.client.createJob({ command: 'a', container_group_id: group, webhook: `${local.url}/restart` });
        await u.client.claimWork({ machine_id: 'm1', container_group_id: group });
        await waitFor('a failed attempt', () => local.received.length >= 1 || undefined);
        await first.stop();
        const failedAttempts = local.received.length;
        receiverUp = true;

        second = await startTestServer(kind, { database: db.database, webhooks: FAST });
        const user = { ...u, client: second.client(u.token) };
        await expectDeliveries(second, local, '/restart', user, job, [{ status: 'running', machine_id: 'm1' }]);
        assert.ok(failedAttempts >= 1);
        assert.ok(local.received.slice(0, failedAttempts).every((d) => d.answered === 503));
        const ids = new Set(local.received.map((d) => d.headers['x-drover-delivery']));
        assert.equal(ids.size, 1, 'the delivery that failed before the restart is the one made after it');
      } finally {
        await first?.stop();
        await second?.stop();
        await local.close();
        await db.cleanup();
      }
    });
  });

  describe(`webhook retries give up (${kind})`, () => {
    test('a delivery that keeps failing is given up ("dead") after maxAttempts attempts', async () => {
      const rcv = await startReceiver(() => 500);
      const srv = await startTestServer(kind, { webhooks: { ...FAST, baseDelayMs: 20, maxAttempts: 3 } });
      try {
        const u = await srv.user();
        const job = await u.client.createJob({ command: 'a', container_group_id: 'g', webhook: `${rcv.url}/down` });
        await u.client.claimWork({ machine_id: 'm1', container_group_id: 'g' });
        const [row] = await waitFor('the delivery to be given up', async () => {
          const rows = await srv.server.store.getWebhookDeliveries(job.id);
          return rows[0]?.state === 'dead' ? rows : undefined;
        });
        assert.equal(row!.attempts, 3);
        assert.equal(row!.last_error, 'HTTP 500');
        assert.equal(rcv.received.length, 3);
        assert.equal(await srv.server.store.nextWebhookDue(), undefined, 'nothing is left to deliver');
      } finally {
        await srv.close();
        await rcv.close();
      }
    });
  });

  describe(`webhook targets (${kind}, private webhooks not allowed)`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind, { allowPrivateWebhooks: false, webhooks: FAST });
    });
    after(async () => {
      await srv?.close();
    });

    const refusedBoth = async (u: TestUser, webhook: string) => {
      const single = await u.client.createJob({ command: 'a', container_group_id: 'g', webhook }).then(
        () => assert.fail(`${webhook} was accepted`),
        (e: unknown) => e,
      );
      assert.ok(single instanceof DroverApiError);
      assert.equal(single.status, 400, webhook);
      assert.equal(single.error, 'bad_request');
      assert.match(single.message, /^body\/webhook /, webhook);
      const batch = await u.client
        .createJobs([
          { command: 'a', container_group_id: 'g' },
          { command: 'b', container_group_id: 'g', webhook },
        ])
        .then(
          () => assert.fail(`${webhook} was accepted in a batch`),
          (e: unknown) => e,
        );
      assert.ok(batch instanceof DroverApiError);
      assert.equal(batch.status, 400);
      assert.equal(batch.index, 1);
      assert.match(batch.message, /^body\/1\/webhook /);
    };

    test('a webhook on a loopback, private or link-local (metadata) address is refused with 400 and nothing is stored', async () => {
      const u = await srv.user();
      for (const webhook of [
        'http://127.0.0.1/hook',
        'http://127.0.0.1:8080/hook',
        'http://10.0.0.1/hook',
        'http://192.168.1.10/hook',
        'http://172.16.0.1/hook',
        'http://localhost/',
        'http://LOCALHOST:9000/x',
        'http://api.localhost/',
        'http://[::1]/',
        'http://[::ffff:127.0.0.1]/',
        'http://169.254.169.254/latest/meta-data/',
        'http://2130706433/',
        'http://0.0.0.0/',
      ]) {
        await refusedBoth(u, webhook);
      }
      assert.equal((await u.client.listJobs()).jobs.length, 0, 'nothing stored');
      const ok = await u.client.createJob({ command: 'a', container_group_id: 'g', webhook: 'https://example.com/hook' });
      assert.equal(ok.webhook, 'https://example.com/hook', 'a public address is accepted');
      assert.equal((await u.client.listJobs()).jobs.length, 1);
    });

    test('a loopback host written with a trailing dot or inside an IPv6 address is refused like the address itself', async () => {
      const u = await srv.user();
      for (const webhook of [
        'http://localhost./',
        'http://api.localhost./hook',
        'http://[::127.0.0.1]/', // IPv4-compatible
        'http://[64:ff9b::a9fe:a9fe]/', // NAT64 of 169.254.169.254
        'http://[2002:7f00:1::]/', // 6to4 of 127.0.0.1
      ]) {
        await refusedBoth(u, webhook);
      }
      assert.equal((await u.client.listJobs()).jobs.length, 0, 'nothing stored');
    });
  });
}
