// The log routes and the dashboard's files over HTTP, on both stores: a follower's long-poll is
// answered as soon as a line is stored; another user's job is 404; only the machine that ran the
// attempt may ship; a bad batch is 400 naming the field and stores nothing; /ui/ is served without
// a key, its assets cached for good, and no API route is opened by it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DroverApiError } from '@drover/sdk';
import { send } from '@drover/testing/fuzz';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

const line = (seq: number, text: string) => ({ seq, at: new Date().toISOString(), stream: 'stdout' as const, text });

for (const kind of STORES) {
  describe(`job log routes (${kind})`, () => {
    let srv: TestServer;
    let a: TestUser;
    let b: TestUser;
    before(async () => {
      srv = await startTestServer(kind);
      a = await srv.user();
      b = await srv.user();
    });
    after(async () => srv?.close());

    async function runningJob(group: string) {
      const job = await a.client.createJob({ command: 'app', container_group_id: group });
      const machine = { machine_id: `m-${group}`, container_group_id: group };
      assert.equal((await a.client.claimWork(machine))?.id, job.id);
      return { job, machine };
    }

    test('a follower waiting with ?wait= gets the line as soon as it is stored, then the next page from its cursor', async () => {
      const { job, machine } = await runningJob('g-follow');
      const started = Date.now();
      const waiting = a.client.jobLogs(job.id, { after: -1, wait: 20 });
      await new Promise((r) => setTimeout(r, 300));
      await a.client.shipLogs(job.id, { ...machine, attempt: 1, lines: [line(0, 'hello')] });
      const page = await waiting;
      assert.deepEqual(page.lines.map((l) => l.text), ['hello']);
      assert.ok(Date.now() - started < 15_000, 'answered by the line, not by the wait running out');
      assert.equal(page.next, 0);
      assert.equal(page.done, false);
      const empty = await a.client.jobLogs(job.id, { after: page.next, wait: 0.2 });
      assert.deepEqual(empty.lines, []);
      assert.equal(empty.next, 0, 'the cursor stays where it was');
      // the job completes: a follower is told the attempt is over at once
      await a.client.completeJob(job.id, machine);
      const over = await a.client.jobLogs(job.id, { after: 0, wait: 20 });
      assert.equal(over.done, true);
    });

    test("another user's job is 404 on both log routes, even for the machine that runs it", async () => {
      const { job, machine } = await runningJob('g-other');
      await assert.rejects(b.client.jobLogs(job.id), (e: unknown) => e instanceof DroverApiError && e.status === 404);
      await assert.rejects(b.client.shipLogs(job.id, { ...machine, attempt: 1, lines: [line(0, 'x')] }), (e: unknown) => e instanceof DroverApiError && e.status === 404);
      assert.equal((await a.client.jobLogs(job.id)).lines.length, 0);
    });

    test('a machine that did not run the attempt is 409 and stores nothing', async () => {
      const { job, machine } = await runningJob('g-holder');
      await assert.rejects(
        a.client.shipLogs(job.id, { ...machine, machine_id: 'someone-else', attempt: 1, lines: [line(0, 'x')] }),
        (e: unknown) => e instanceof DroverApiError && e.status === 409 && /did not run attempt 1/.test(e.message),
      );
      await assert.rejects(a.client.shipLogs(job.id, { ...machine, attempt: 2, lines: [line(0, 'x')] }), (e: unknown) => e instanceof DroverApiError && e.status === 409);
      assert.equal((await a.client.jobLogs(job.id)).lines.length, 0);
    });

    test('a bad batch is 400 naming the field, and stores nothing', async () => {
      const { job, machine } = await runningJob('g-bad');
      const send = (body: unknown) => fetch(`${srv.url}/jobs/${job.id}/logs`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-kelpie-key': a.token }, body: JSON.stringify(body) });
      const cases: [unknown, RegExp][] = [
        [{ ...machine, attempt: 0, lines: [] }, /body\/attempt must be >= 1/],
        [{ ...machine, attempt: 1, lines: [{ ...line(0, 'a'), stream: 'log' }] }, /body\/lines\/0\/stream/],
        [{ ...machine, attempt: 1, lines: [line(0, 'a\u0000b')] }, /body\/lines\/0\/text/],
        [{ ...machine, attempt: 1, lines: [line(0, 'x'.repeat(8193))] }, /body\/lines\/0\/text must NOT have more than 8192 characters/],
        [{ ...machine, attempt: 1, lines: [{ ...line(0, 'a'), at: 'yesterday' }] }, /body\/lines\/0\/at/],
        [{ ...machine, attempt: 1, lines: [], level: 'info' }, /body\/level is not a known field/],
      ];
      for (const [body, message] of cases) {
        const res = await send(body);
        assert.equal(res.status, 400, JSON.stringify(body).slice(0, 100));
        assert.match(((await res.json()) as { message: string }).message, message);
      }
      assert.equal((await a.client.jobLogs(job.id)).lines.length, 0);
    });

    test('the dashboard is served at /ui/ without a key, its assets cached for good; the API behind it still wants one', async () => {
      const page = await fetch(`${srv.url}/ui/`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('cache-control') ?? '', /no-cache/);
      const html = await page.text();
      const script = /<script type="module" crossorigin src="(\/ui\/assets\/[^"]+\.js)"/.exec(html)?.[1];
      assert.ok(script, html);
      const js = await fetch(`${srv.url}${script}`);
      assert.equal(js.status, 200);
      assert.match(js.headers.get('content-type') ?? '', /javascript/);
      assert.match(js.headers.get('cache-control') ?? '', /immutable/);
      assert.equal((await fetch(`${srv.url}/ui`, { redirect: 'manual' })).headers.get('location'), '/ui/');
      assert.equal((await fetch(`${srv.url}/container-groups`)).status, 401);
      // Sent as is (fetch would resolve the `..` itself): the route under /ui/ serves files only.
      for (const path of ['/ui/../jobs', '/ui/%2e%2e/jobs', '/ui/..%2fjobs', '/ui/../container-groups']) {
        const raw = await send(srv.url, { method: 'GET', path });
        assert.ok(raw.status >= 400 && raw.status < 500, `${path}: ${raw.status}`);
        assert.doesNotMatch(raw.text, /"jobs"|"groups"/, `${path} answers no API data`);
      }
    });
  });
}
