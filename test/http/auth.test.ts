// Authentication and isolation: who may call what, and that one user never sees or touches
// another user's jobs through any route.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import Database from 'better-sqlite3';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

interface Answer {
  status: number;
  body: unknown;
}

type Auth = { key?: string; bearer?: string; authorization?: string };

async function call(srv: TestServer, method: string, path: string, auth: Auth = {}, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (auth.key !== undefined) headers['x-kelpie-key'] = auth.key;
  if (auth.bearer !== undefined) headers.authorization = `Bearer ${auth.bearer}`;
  if (auth.authorization !== undefined) headers.authorization = auth.authorization;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${srv.url}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (docs, metrics)
  }
  return { status: res.status, body: parsed };
}

function assertError(a: Answer, status: number, error: string) {
  assert.equal(a.status, status, JSON.stringify(a.body));
  const body = a.body as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message']);
  assert.equal(body.error, error);
  assert.equal(typeof body.message, 'string');
  assert.ok((body.message as string).length > 0);
}

/** The secret part of `drv_<16 hex id>_<43 char secret>`. */
function secretOf(token: string): string {
  const m = /^drv_[0-9a-f]{16}_([A-Za-z0-9_-]{43})$/.exec(token);
  assert.ok(m, `token shape: ${token}`);
  return m[1]!;
}

const machine = (machine_id: string, container_group_id: string) => ({ machine_id, container_group_id });

/** Every authenticated route, with a body that passes validation. */
function protectedRoutes(jobId: string, userId: string): [string, string, unknown?][] {
  const m = machine('m1', 'g');
  return [
    ['POST', '/jobs', { command: 'x', container_group_id: 'g' }],
    ['POST', '/jobs/batch', [{ command: 'x', container_group_id: 'g' }]],
    ['GET', '/jobs'],
    ['GET', `/jobs/${jobId}`],
    ['GET', `/jobs/${jobId}/events`],
    ['DELETE', `/jobs/${jobId}`],
    ['DELETE', '/jobs/container-groups/g'],
    ['DELETE', '/jobs'],
    ['GET', '/work?machine_id=m1&container_group_id=g'],
    ['POST', `/jobs/${jobId}/heartbeat`, m],
    ['POST', `/jobs/${jobId}/completed`, m],
    ['POST', `/jobs/${jobId}/failed`, m],
    ['POST', `/jobs/${jobId}/release`, m],
    ['GET', '/users/me'],
    ['POST', '/users', { username: 'nobody' }],
    ['POST', `/users/${userId}/token`, {}],
    ['GET', `/users/${userId}/tokens`],
    ['DELETE', '/tokens/0123456789abcdef'],
    ['DELETE', `/users/${userId}`],
    ['GET', '/metrics'],
  ];
}

for (const kind of STORES) {
  describe(`auth and isolation (${kind})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind);
    });
    after(async () => {
      await srv?.close();
    });

    test('a request without a key is refused with 401 {error, message} on every protected route, and changes nothing', async () => {
      const u = await srv.user();
      const job = await u.client.createJob({ command: 'x', container_group_id: 'g' });
      for (const [method, path, body] of protectedRoutes(job.id, u.id)) {
        assertError(await call(srv, method, path, {}, body), 401, 'unauthorized');
        assertError(await call(srv, method, path, { key: '' }, body), 401, 'unauthorized');
        assertError(await call(srv, method, path, { authorization: 'Bearer ' }, body), 401, 'unauthorized');
        assertError(await call(srv, method, path, { authorization: `Basic ${u.token}` }, body), 401, 'unauthorized');
      }
      const { jobs } = await u.client.listJobs();
      assert.deepEqual(
        jobs.map((j) => [j.id, j.status]),
        [[job.id, 'pending']],
      );
    });

    test('an unknown or malformed key is refused with 403 on every protected route', async () => {
      const u = await srv.user();
      const job = await u.client.createJob({ command: 'x', container_group_id: 'g' });
      await u.client.me(); // the key is now verified and remembered: a forged secret for its id must still fail
      const [, id, secret] = /^drv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(u.token) ?? assert.fail('token shape drv_<id>_<secret>');
      const forgedSecret = `drv_${id}_${secret!.slice(0, -1)}${secret!.endsWith('A') ? 'B' : 'A'}`;
      const keys = [
        `drv_0123456789abcdef_${'a'.repeat(43)}`, // well-formed, unknown id
        forgedSecret, // known id, wrong secret
        `${u.token}x`,
        u.token.slice(0, -1),
        u.token.toUpperCase(),
        'drv_',
        'not-a-key',
        srv.adminKey.slice(0, -1),
      ];
      for (const [method, path, body] of protectedRoutes(job.id, u.id)) {
        for (const key of keys) {
          assertError(await call(srv, method, path, { key }, body), 403, 'forbidden');
        }
        assertError(await call(srv, method, path, { bearer: forgedSecret }, body), 403, 'forbidden');
      }
      assert.equal((await u.client.getJob(job.id)).status, 'pending');
      assert.equal((await u.client.listJobs()).jobs.length, 1);
    });

    test('a user who is not the admin is refused with 403 on the admin routes, and nothing changes', async () => {
      const u = await srv.user();
      const job = await u.client.createJob({ command: 'x', container_group_id: 'g' });
      const name = `wannabe-${randomUUID().slice(0, 8)}`;
      assertError(await call(srv, 'POST', '/users', { key: u.token }, { username: name }), 403, 'forbidden');
      assertError(await call(srv, 'POST', `/users/${u.id}/token`, { key: u.token }, {}), 403, 'forbidden');
      assertError(await call(srv, 'DELETE', '/jobs', { key: u.token }), 403, 'forbidden');
      assertError(await call(srv, 'DELETE', '/jobs', { bearer: u.token }), 403, 'forbidden');
      assert.equal((await u.client.getJob(job.id)).status, 'pending', 'jobs were not cleared');
      const created = await srv.admin.createUser(name);
      assert.equal(created.username, name, 'the refused user creation did not take the name');
    });

    test('Authorization: Bearer <token> works like X-Kelpie-Key', async () => {
      const u = await srv.user();
      const me = await call(srv, 'GET', '/users/me', { bearer: u.token });
      assert.equal(me.status, 200);
      assert.equal((me.body as { id: string }).id, u.id);
      const lower = await call(srv, 'GET', '/users/me', { authorization: `bearer   ${u.token}` });
      assert.equal((lower.body as { id: string }).id, u.id);
      const created = await call(srv, 'POST', '/jobs', { bearer: u.token }, { command: 'x', container_group_id: 'g' });
      assert.equal(created.status, 202);
      const jobId = (created.body as { id: string }).id;
      assert.equal((await u.client.getJob(jobId)).user_id, u.id);
      const claim = await call(srv, 'GET', '/work?machine_id=m1&container_group_id=g', { bearer: u.token });
      assert.deepEqual(
        (claim.body as { id: string }[]).map((j) => j.id),
        [jobId],
      );
      const done = await call(srv, 'POST', `/jobs/${jobId}/completed`, { bearer: u.token }, machine('m1', 'g'));
      assert.deepEqual(done, { status: 200, body: { message: 'Completed reported' } });
      // the admin's key works as a bearer token on admin routes
      const user = await call(srv, 'POST', '/users', { bearer: srv.adminKey }, { username: `bearer-${randomUUID().slice(0, 8)}` });
      assert.equal(user.status, 201);
    });

    test("another user's job is 404 on every job route, and is left exactly as it was", async () => {
      const owner = await srv.user();
      const other = await srv.user();
      const group = 'iso-routes';
      const job = await owner.client.createJob({ command: 'x', container_group_id: group, max_failures: 1 });
      const m = machine('m1', group);
      await owner.client.claimWork(m);
      await owner.client.heartbeat(job.id, m, { fraction: 0.25, message: 'owner' });
      const before = await owner.client.getJob(job.id);
      const eventsBefore = await owner.client.jobEvents(job.id);
      const tries: [string, string, unknown?][] = [
        ['GET', `/jobs/${job.id}`],
        ['GET', `/jobs/${job.id}/events`],
        ['DELETE', `/jobs/${job.id}`],
        ['POST', `/jobs/${job.id}/heartbeat`, { ...m, progress: { fraction: 0.9, message: 'intruder' } }],
        ['POST', `/jobs/${job.id}/completed`, m],
        ['POST', `/jobs/${job.id}/failed`, m],
        ['POST', `/jobs/${job.id}/release`, m],
      ];
      for (const [method, path, body] of tries) {
        assertError(await call(srv, method, path, { key: other.token }, body), 404, 'not_found');
      }
      // not even the admin reaches it through the user routes
      assertError(await call(srv, 'DELETE', `/jobs/${job.id}`, { key: srv.adminKey }), 404, 'not_found');
      assert.deepEqual(await owner.client.getJob(job.id), before, 'not canceled, completed, failed, released or heartbeated');
      assert.deepEqual(await owner.client.jobEvents(job.id), eventsBefore);
      assert.deepEqual(await owner.client.heartbeat(job.id, m), { status: 'running' }, 'the owner still holds the lease');
    });

    test("GET /work never hands a machine another user's job, even in a container group of the same name", async () => {
      const owner = await srv.user();
      const other = await srv.user();
      const group = 'iso-work';
      const job = await owner.client.createJob({ command: 'x', container_group_id: group });
      assert.equal(await other.client.claimWork(machine('m-other', group)), undefined);
      // a long-poll of the other user is not answered with the owner's new job either
      const waiting = other.client.claimWork(machine('m-other', group), 1);
      const second = await owner.client.createJob({ command: 'y', container_group_id: group });
      assert.equal(await waiting, undefined);
      assert.equal((await owner.client.claimWork(machine('m-owner', group)))?.id, job.id);
      assert.equal((await owner.client.claimWork(machine('m-owner2', group)))?.id, second.id);
      // an orphaned running job (released) is not the other user's either
      await owner.client.releaseJob(job.id, machine('m-owner', group));
      assert.equal(await other.client.claimWork(machine('m-other', group)), undefined);
      assert.equal((await owner.client.getJob(job.id)).machine_id, null);
    });

    test('GET /jobs lists only your own jobs, whatever the filter', async () => {
      const a = await srv.user();
      const b = await srv.user();
      const group = 'iso-list';
      const mine = await a.client.createJobs([
        { command: 'a1', container_group_id: group },
        { command: 'a2', container_group_id: group },
      ]);
      const theirs = await b.client.createJob({ command: 'b1', container_group_id: group });
      const ids = async (u: TestUser, q: Parameters<TestUser['client']['listJobs']>[0] = {}) =>
        (await u.client.listJobs(q)).jobs.map((j) => j.id).sort();
      assert.deepEqual(await ids(a), mine.map((j) => j.id).sort());
      assert.deepEqual(await ids(a, { container_group_id: group, status: 'pending' }), mine.map((j) => j.id).sort());
      assert.deepEqual(await ids(b), [theirs.id]);
      assert.deepEqual(await ids(b, { container_group_id: group, page_size: 1000, asc: true }), [theirs.id]);
      const list = await b.client.listJobs();
      assert.equal(list._count, 1);
    });

    test("a purge of a container group touches only the caller's jobs in it", async () => {
      const a = await srv.user();
      const b = await srv.user();
      const group = 'iso-purge';
      const aPending = await a.client.createJob({ command: 'a', container_group_id: group });
      const aRunning = await a.client.createJob({ command: 'a', container_group_id: group });
      await b.client.createJob({ command: 'b', container_group_id: group });
      await b.client.createJob({ command: 'b', container_group_id: group });
      // a's first claim takes its oldest job; make the second one the running one
      assert.equal((await a.client.claimWork(machine('ma', group)))?.id, aPending.id);
      await a.client.releaseJob(aPending.id, machine('ma', group));
      await a.client.cancelJob(aPending.id);
      const aThird = await a.client.createJob({ command: 'a', container_group_id: group });
      assert.equal((await a.client.claimWork(machine('ma2', group)))?.id, aRunning.id);
      assert.equal((await b.client.claimWork(machine('mb', group)))?.command, 'b');

      const before = (await a.client.listJobs({ page_size: 1000 })).jobs;
      assert.deepEqual(await b.client.purgeContainerGroup(group), { count: 2 });
      assert.deepEqual((await a.client.listJobs({ page_size: 1000 })).jobs, before, "a's jobs are untouched");
      assert.equal((await a.client.getJob(aRunning.id)).status, 'running');
      assert.equal((await a.client.getJob(aThird.id)).status, 'pending');
      assert.deepEqual(await a.client.heartbeat(aRunning.id, machine('ma2', group)), { status: 'running' });
      assert.equal((await b.client.listJobs()).jobs.filter((j) => j.status === 'pending').length, 0);
    });

    test('tokens are stored hashed: no column of the tokens table holds a token or its secret', async () => {
      const u = await srv.user();
      const second = (await srv.admin.createToken(u.id)).token;
      assert.equal((await srv.client(second).me()).id, u.id, 'a second token of the same user works');
      const rows = await readTable(kind, srv.database, 'tokens');
      const tokens = [u.token, second];
      const mine = rows.filter((r) => r.user_id === u.id);
      assert.equal(mine.length, 2, 'both tokens are on record');
      for (const token of tokens) {
        const secret = secretOf(token);
        for (const row of rows) {
          for (const [column, value] of Object.entries(row)) {
            const text = String(value);
            assert.ok(!text.includes(secret), `tokens.${column} does not contain a token's secret`);
            assert.ok(!text.includes(token), `tokens.${column} does not contain a token`);
          }
        }
      }
      // and no other table keeps it either
      for (const table of ['users', 'jobs', 'webhook_outbox']) {
        for (const row of await readTable(kind, srv.database, table)) {
          for (const token of tokens) assert.ok(!JSON.stringify(row).includes(secretOf(token)), `${table} holds no secret`);
        }
      }
    });

    test('/healthz, /openapi.json and /docs need no key; /metrics (every user\'s counts) needs the admin key', async () => {
      const health = await call(srv, 'GET', '/healthz');
      assert.deepEqual(health, { status: 200, body: { status: 'ok', store: kind } });
      assert.equal((await call(srv, 'GET', '/metrics')).status, 401);
      const alice = await srv.user();
      assert.equal((await call(srv, 'GET', '/metrics', { key: alice.token })).status, 403);
      const metrics = await call(srv, 'GET', '/metrics', { key: srv.adminKey });
      assert.equal(metrics.status, 200);
      assert.match(String(metrics.body), /drover_jobs/);
      const openapi = await call(srv, 'GET', '/openapi.json');
      assert.equal(openapi.status, 200);
      assert.equal(typeof (openapi.body as { openapi: string }).openapi, 'string');
      const docs = await fetch(`${srv.url}/docs`);
      assert.equal(docs.status, 200);
      assert.match(docs.headers.get('content-type') ?? '', /html/);
      await docs.text();
    });

    test('/openapi.json documents every route of the protocol', async () => {
      const { body } = await call(srv, 'GET', '/openapi.json');
      const paths = (body as { paths: Record<string, Record<string, unknown>> }).paths;
      const expected: [string, string][] = [
        ['post', '/jobs'],
        ['post', '/jobs/batch'],
        ['get', '/jobs'],
        ['get', '/jobs/{id}'],
        ['delete', '/jobs/{id}'],
        ['delete', '/jobs/container-groups/{container_group_id}'],
        ['delete', '/jobs'],
        ['get', '/work'],
        ['post', '/jobs/{id}/heartbeat'],
        ['post', '/jobs/{id}/completed'],
        ['post', '/jobs/{id}/failed'],
        ['post', '/jobs/{id}/release'],
        ['get', '/jobs/{id}/events'],
        ['get', '/users/me'],
        ['post', '/users'],
        ['post', '/users/{id}/token'],
        ['get', '/healthz'],
      ];
      const missing = expected.filter(([method, path]) => !paths[path]?.[method]);
      assert.deepEqual(missing, [], 'every route is in the document');
    });
  });
}

/** Every row of a table, read straight from the database with its own driver. */
async function readTable(kind: string, database: string, table: string): Promise<Record<string, unknown>[]> {
  if (kind === 'postgres') {
    const client = new pg.Client({ connectionString: database });
    await client.connect();
    try {
      return (await client.query(`select * from ${table}`)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  }
  const db = new Database(database, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`select * from ${table}`).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}
