// Bad input: every malformed request is a 4xx {error, message} naming what is wrong, never a
// 500, and never queues anything.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

interface SendOptions {
  /** sent as JSON */
  json?: unknown;
  /** sent as is */
  raw?: string;
  headers?: Record<string, string>;
  key?: string;
}

async function send(srv: TestServer, key: string, method: string, path: string, opts: SendOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'x-kelpie-key': opts.key ?? key };
  let body: string | undefined;
  if (opts.json !== undefined) body = JSON.stringify(opts.json);
  if (opts.raw !== undefined) body = opts.raw;
  if (body !== undefined) headers['content-type'] = 'application/json';
  Object.assign(headers, opts.headers);
  const res = await fetch(`${srv.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { unparsable: text };
  }
  return { status: res.status, body: parsed };
}

/** A client error in the one error shape, whose message mentions `mentions`. */
function assertRejected(a: Answer, status: number, mentions: string | RegExp, what: string) {
  assert.equal(a.status, status, `${what}: ${JSON.stringify(a.body).slice(0, 300)}`);
  const keys = Object.keys(a.body).sort();
  assert.ok(
    JSON.stringify(keys) === '["error","message"]' || JSON.stringify(keys) === '["error","index","message"]',
    `${what}: error shape, got ${JSON.stringify(a.body).slice(0, 300)}`,
  );
  assert.equal(typeof a.body.error, 'string');
  assert.equal(typeof a.body.message, 'string');
  if (typeof mentions === 'string') assert.ok((a.body.message as string).includes(mentions), `${what}: "${String(a.body.message)}" names ${mentions}`);
  else assert.match(a.body.message as string, mentions, what);
}

const jobCount = async (u: TestUser) => (await u.client.listJobs({ page_size: 1000 }))._count;

const VALID = { command: 'python', container_group_id: 'g' };
const UUID = '3f0c6e1a-8a52-4f7e-9d53-2b1f9c3a7e10';

for (const kind of STORES) {
  describe(`bad input (${kind})`, () => {
    let srv: TestServer;
    let u: TestUser;
    before(async () => {
      srv = await startTestServer(kind);
      u = await srv.user();
      await u.client.createJob(VALID); // so that "unchanged" means something other than zero
    });
    after(async () => {
      await srv?.close();
    });

    /** Each case is rejected as expected and leaves the user's job count as it was. */
    async function rejectsAll(cases: [string, string, SendOptions, number, string | RegExp][]) {
      const before = await jobCount(u);
      for (const [method, path, opts, status, mentions] of cases) {
        const what = `${method} ${path} ${(opts.raw ?? JSON.stringify(opts.json) ?? '').slice(0, 80)}`;
        assertRejected(await send(srv, u.token, method, path, opts), status, mentions, what);
      }
      assert.equal(await jobCount(u), before, 'nothing was queued');
    }

    test('malformed JSON is 400 bad_json', async () => {
      for (const raw of ['{bad', '{"command": "x",}', '[', 'nul', '{"command":"x","container_group_id":"g"}}']) {
        const a = await send(srv, u.token, 'POST', '/jobs', { raw });
        assertRejected(a, 400, /JSON|empty/i, raw);
        assert.equal(a.body.error, 'bad_json', raw);
      }
      assert.equal(await jobCount(u), 1);
    });

    test('an empty JSON body is no body: a route that needs one is 400 naming the body, a DELETE works', async () => {
      await rejectsAll([
        ['POST', '/jobs', { raw: '' }, 400, 'body'],
        ['POST', '/jobs/batch', { raw: ' ' }, 400, 'body'],
      ]);
      const victim = await u.client.createJob(VALID);
      const del = await send(srv, u.token, 'DELETE', `/jobs/${victim.id}`, { headers: { 'content-type': 'application/json' } });
      assert.equal(del.status, 202, JSON.stringify(del.body));
      assert.equal((await u.client.getJob(victim.id)).status, 'canceled');
    });

    test('a __proto__ key is 400 saying so, not "invalid JSON"', async () => {
      await rejectsAll([
        ['POST', '/jobs', { raw: '{"command":"x","container_group_id":"g","environment":{"__proto__":{"A":"b"}}}' }, 400, '__proto__'],
      ]);
    });

    test('"__proto__" as a value, not a key, is an ordinary string', async () => {
      const a = await send(srv, u.token, 'POST', '/jobs', { raw: '{"command":"__proto__","container_group_id":"g","environment":{"A":"__proto__"}}' });
      assert.equal(a.status, 202, JSON.stringify(a.body));
      const job = await u.client.getJob(a.body.id as string);
      assert.equal(job.command, '__proto__');
      assert.deepEqual(job.environment, { A: '__proto__' });
      // DELETE ignores any JSON body, this one included
      const del = await send(srv, u.token, 'DELETE', `/jobs/${job.id}`, { raw: '{"":{"":"__proto__"}}' });
      assert.equal(del.status, 202, JSON.stringify(del.body));
    });

    test('a sync local_path with ".." segments is 400 naming the field; a name with dots in it is fine', async () => {
      const entry = (local_path: string) => ({ bucket: 'b', prefix: 'p/', local_path, direction: 'upload' });
      const job = (local_path: string) => ({ ...VALID, sync: { during: [entry(local_path)] } });
      await rejectsAll([
        ['POST', '/jobs', { json: job('ck/../../etc') }, 400, 'body/sync/during/0/local_path must not contain ".." segments'],
        ['POST', '/jobs', { json: job('..') }, 400, 'body/sync/during/0/local_path must not contain ".." segments'],
        ['POST', '/jobs', { json: job('a\\..\\b') }, 400, 'body/sync/during/0/local_path must not contain ".." segments'],
        ['POST', '/jobs/batch', { json: [VALID, job('../up')] }, 400, 'body/1/sync/during/0/local_path must not contain ".." segments'],
      ]);
      for (const fine of ['a..b/ck', '..hidden', '/abs/in/root', './ck']) {
        const a = await send(srv, u.token, 'POST', '/jobs', { json: job(fine) });
        assert.equal(a.status, 202, `${fine}: ${JSON.stringify(a.body)}`);
      }
    });

    test('a wrong method on a path that exists is 405 with Allow; an unknown path stays 404', async () => {
      for (const [method, path, allow] of [['PUT', '/jobs', 'POST, GET, HEAD, DELETE'], ['POST', `/jobs/${UUID}`, 'GET, HEAD, DELETE'], ['GET', `/jobs/${UUID}/heartbeat`, 'POST'], ['DELETE', '/work', 'GET']] as const) {
        const res = await fetch(`${srv.url}${path}`, { method, headers: { 'x-kelpie-key': u.token } });
        const body = (await res.json()) as Record<string, unknown>;
        assertRejected({ status: res.status, body }, 405, `${method} is not allowed on ${path}`, `${method} ${path}`);
        assert.deepEqual(res.headers.get('allow')?.split(', ').sort(), allow.split(', ').sort(), `${method} ${path}`);
      }
      assertRejected(await send(srv, u.token, 'GET', '/nothing/here'), 404, 'no route GET /nothing/here', 'unknown path');
    });

    test('GET / leads a browser to the dashboard and links the API documentation', async () => {
      const res = await fetch(`${srv.url}/`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      const page = await res.text();
      assert.match(page, /url=\/ui\//);
      assert.match(page, /href="\/docs"/);
    });

    test('a field of the wrong type is 400 naming the field', async () => {
      const post = (json: unknown, field: string): [string, string, SendOptions, number, string] => [
        'POST',
        '/jobs',
        { json },
        400,
        field,
      ];
      await rejectsAll([
        post({ ...VALID, command: 5 }, 'body/command'),
        post({ ...VALID, command: null }, 'body/command'),
        post({ ...VALID, command: ['python'] }, 'body/command'),
        post({ ...VALID, container_group_id: 7 }, 'body/container_group_id'),
        post({ ...VALID, max_failures: '3' }, 'body/max_failures'),
        post({ ...VALID, heartbeat_interval: '30' }, 'body/heartbeat_interval'),
        post({ ...VALID, arguments: 'x' }, 'body/arguments'),
        post({ ...VALID, arguments: [1, 2] }, 'body/arguments/0'),
        post({ ...VALID, environment: 'A=1' }, 'body/environment'),
        post({ ...VALID, environment: { A: 1 } }, 'body/environment/A'),
        post({ ...VALID, environment: { A: null } }, 'body/environment/A'),
        post({ ...VALID, environment: { A: { nested: 'x' } } }, 'body/environment/A'),
        post({ ...VALID, compression: 'yes' }, 'body/compression'),
        post({ ...VALID, webhook: 42 }, 'body/webhook'),
        post({ ...VALID, webhook: 'ftp://example.com/x' }, 'body/webhook'),
        post({ ...VALID, webhook: 'not a url' }, 'body/webhook'),
        post({ ...VALID, sync: [] }, 'body/sync'),
        post({ ...VALID, sync: { before: [{ bucket: 'b', prefix: '', local_path: '/x', direction: 'sideways' }] } }, 'body/sync/before/0/direction'),
        post({ ...VALID, input_bucket: 5 }, 'body/input_bucket'),
        post(null, 'body'),
        post([], 'body'),
        post('python', 'body'),
        post(5, 'body'),
        ['POST', '/jobs/batch', { json: { ...VALID } }, 400, 'body'],
        ['POST', `/jobs/${UUID}/heartbeat`, { json: { machine_id: 5, container_group_id: 'g' } }, 400, 'body/machine_id'],
        ['POST', `/jobs/${UUID}/heartbeat`, { json: { machine_id: 'm', container_group_id: 'g', progress: 0.5 } }, 400, 'body/progress'],
        ['POST', `/jobs/${UUID}/heartbeat`, { json: { machine_id: 'm', container_group_id: 'g', progress: { fraction: 2 } } }, 400, 'body/progress/fraction'],
        ['POST', `/jobs/${UUID}/completed`, { json: { machine_id: 'm', container_group_id: ['g'] } }, 400, 'body/container_group_id'],
      ]);
    });

    test('a sync entry whose direction does not fit its phase is 400 naming it and the direction it must have', async () => {
      const entry = (direction: string) => ({ bucket: 'b', prefix: '', local_path: 'x', direction });
      await rejectsAll([
        ['POST', '/jobs', { json: { ...VALID, sync: { before: [entry('upload')] } } }, 400, 'body/sync/before/0/direction must be "download"'],
        ['POST', '/jobs', { json: { ...VALID, sync: { during: [entry('upload'), entry('download')] } } }, 400, 'body/sync/during/1/direction must be "upload"'],
        ['POST', '/jobs', { json: { ...VALID, sync: { after: [entry('download')] } } }, 400, 'body/sync/after/0/direction must be "upload"'],
        ['POST', '/jobs/batch', { json: [VALID, { ...VALID, sync: { before: [entry('upload')] } }] }, 400, 'body/1/sync/before/0/direction must be "download"'],
      ]);
    });

    test('an environment name that is not a shell identifier is 400 naming the environment and the name', async () => {
      const names = ['1A', 'A-B', 'A B', '', 'É', 'A=B', 'PATH\n', '$HOME', 'a.b'];
      await rejectsAll(
        names.map((name) => [
          'POST',
          '/jobs',
          { json: { ...VALID, environment: { GOOD: 'x', [name]: 'value' } } },
          400,
          new RegExp(`^body/environment .*${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
        ]),
      );
      await rejectsAll([['POST', '/jobs/batch', { json: [VALID, { ...VALID, environment: { '9lives': 'x' } }] }, 400, 'body/1/environment']]);
      const ok = await u.client.createJob({ ...VALID, environment: { A: '1', _b: '', PATH_2: 'x' } });
      assert.deepEqual(ok.environment, { A: '1', _b: '', PATH_2: 'x' }, 'identifiers are accepted');
      await u.client.cancelJob(ok.id);
    });

    test('a missing required field is 400 naming it', async () => {
      const m = { machine_id: 'm', container_group_id: 'g' };
      await rejectsAll([
        ['POST', '/jobs', { json: { container_group_id: 'g' } }, 400, 'body/command'],
        ['POST', '/jobs', { json: { command: 'x' } }, 400, 'body/container_group_id'],
        ['POST', '/jobs', { json: {} }, 400, 'is required'],
        ['POST', '/jobs', { json: { ...VALID, command: '' } }, 400, 'body/command'],
        ['POST', '/jobs', { json: { ...VALID, container_group_id: '' } }, 400, 'body/container_group_id'],
        ['POST', '/jobs/batch', { json: [VALID, { command: 'x' }] }, 400, 'body/1/container_group_id'],
        ['POST', `/jobs/${UUID}/heartbeat`, { json: { container_group_id: 'g' } }, 400, 'body/machine_id'],
        ['POST', `/jobs/${UUID}/completed`, { json: { machine_id: 'm' } }, 400, 'body/container_group_id'],
        ['POST', `/jobs/${UUID}/failed`, { json: {} }, 400, 'is required'],
        ['POST', `/jobs/${UUID}/release`, { json: { container_group_id: 'g' } }, 400, 'body/machine_id'],
        ['GET', '/work?machine_id=m', {}, 400, 'querystring/container_group_id'],
        ['GET', '/work?container_group_id=g', {}, 400, 'querystring/machine_id'],
        ['POST', '/users', { json: {}, key: srv.adminKey }, 400, 'body/username'],
        ['POST', `/jobs/${UUID}/heartbeat`, { json: { ...m, progress: {} } }, 400, 'body/progress/fraction'],
      ]);
    });

    test('an unknown field is 400 naming it: a misspelt field is never silently dropped', async () => {
      await rejectsAll([
        ['POST', '/jobs', { json: { ...VALID, max_failure: 5 } }, 400, 'body/max_failure'],
        ['POST', '/jobs', { json: { ...VALID, heartbeatInterval: 5 } }, 400, 'body/heartbeatInterval'],
        ['POST', '/jobs', { json: { ...VALID, status: 'completed' } }, 400, 'body/status'],
        ['POST', '/jobs', { json: { ...VALID, id: UUID } }, 400, 'body/id'],
        ['POST', '/jobs', { json: { ...VALID, user_id: UUID } }, 400, 'body/user_id'],
        ['POST', '/jobs', { json: { ...VALID, sync: { before: [], sometimes: [] } } }, 400, 'body/sync/sometimes'],
        [
          'POST',
          '/jobs',
          { json: { ...VALID, sync: { after: [{ bucket: 'b', prefix: '', local_path: '/o', direction: 'upload', glob: '*' }] } } },
          400,
          'body/sync/after/0/glob',
        ],
        ['POST', '/jobs/batch', { json: [VALID, VALID, { ...VALID, colour: 'red' }] }, 400, 'body/2/colour'],
        ['GET', '/jobs?state=pending', {}, 400, 'querystring/state'],
        ['GET', '/work?machine_id=m&container_group_id=g&timeout=5', {}, 400, 'querystring/timeout'],
        ['POST', '/users', { json: { username: 'someone', admin: true }, key: srv.adminKey }, 400, 'body/admin'],
      ]);
    });

    test('a number out of range is 400 naming the field: heartbeat_interval 0, max_failures 0, fractions', async () => {
      const post = (extra: object, field: string): [string, string, SendOptions, number, string] => [
        'POST',
        '/jobs',
        { json: { ...VALID, ...extra } },
        400,
        field,
      ];
      await rejectsAll([
        post({ heartbeat_interval: 0 }, 'body/heartbeat_interval'),
        post({ heartbeat_interval: -30 }, 'body/heartbeat_interval'),
        post({ heartbeat_interval: 1.5 }, 'body/heartbeat_interval'),
        post({ heartbeat_interval: 86401 }, 'body/heartbeat_interval'),
        post({ max_failures: 0 }, 'body/max_failures'),
        post({ max_failures: 1001 }, 'body/max_failures'),
        post({ max_failures: 2.5 }, 'body/max_failures'),
        ['POST', '/jobs', { raw: '{"command":"x","container_group_id":"g","max_failures":1e400}' }, 400, 'body/max_failures'],
        ['GET', '/work?machine_id=m&container_group_id=g&wait=61', {}, 400, 'querystring/wait'],
        ['GET', '/work?machine_id=m&container_group_id=g&wait=-1', {}, 400, 'querystring/wait'],
        ['GET', '/work?machine_id=m&container_group_id=g&wait=soon', {}, 400, 'querystring/wait'],
      ]);
    });

    test('an id that is not a UUID is 400 naming the id on every :id route', async () => {
      const m = { machine_id: 'm', container_group_id: 'g' };
      for (const id of ['abc', '123', `${UUID}0`, UUID.replace(/-/g, ''), "1' or '1'='1", '%20']) {
        await rejectsAll([
          ['GET', `/jobs/${id}`, {}, 400, 'params/id'],
          ['GET', `/jobs/${id}/events`, {}, 400, 'params/id'],
          ['DELETE', `/jobs/${id}`, {}, 400, 'params/id'],
          ['POST', `/jobs/${id}/heartbeat`, { json: m }, 400, 'params/id'],
          ['POST', `/jobs/${id}/completed`, { json: m }, 400, 'params/id'],
          ['POST', `/jobs/${id}/failed`, { json: m }, 400, 'params/id'],
          ['POST', `/jobs/${id}/release`, { json: m }, 400, 'params/id'],
          ['POST', `/users/${id}/token`, { json: {}, key: srv.adminKey }, 400, 'params/id'],
        ]);
      }
      // a well-formed id of no job is 404, not 400
      assertRejected(await send(srv, u.token, 'GET', `/jobs/${UUID}`), 404, 'job', 'unknown job');
      assertRejected(await send(srv, u.token, 'POST', `/users/${UUID}/token`, { json: {}, key: srv.adminKey }), 404, 'user', 'unknown user');
    });

    test('a bad query (unknown status, page_size 0, ...) is 400 naming the parameter', async () => {
      await rejectsAll([
        ['GET', '/jobs?status=done', {}, 400, 'querystring/status'],
        ['GET', '/jobs?status=PENDING', {}, 400, 'querystring/status'],
        ['GET', '/jobs?status=pending&status=running', {}, 400, 'querystring/status'],
        ['GET', '/jobs?page_size=0', {}, 400, 'querystring/page_size'],
        ['GET', '/jobs?page_size=-5', {}, 400, 'querystring/page_size'],
        ['GET', '/jobs?page_size=1001', {}, 400, 'querystring/page_size'],
        ['GET', '/jobs?page_size=ten', {}, 400, 'querystring/page_size'],
        ['GET', '/jobs?page=0', {}, 400, 'querystring/page'],
        ['GET', '/jobs?asc=maybe', {}, 400, 'querystring/asc'],
        ['GET', '/jobs?container_group_id=', {}, 400, 'querystring/container_group_id'],
        ['GET', '/jobs?container_group_id=%00', {}, 400, 'querystring/container_group_id'],
      ]);
    });

    test('a body over the default limit of 1 MiB is 413, for one job and for a batch', async () => {
      const huge = 'x'.repeat(1024 * 1024 + 16);
      await rejectsAll([
        ['POST', '/jobs', { json: { ...VALID, arguments: [huge] } }, 413, /too large/i],
        ['POST', '/jobs/batch', { json: [VALID, { ...VALID, arguments: [huge] }] }, 413, /too large/i],
      ]);
      const a = await send(srv, u.token, 'POST', '/jobs', { json: { ...VALID, arguments: [huge] } });
      assert.equal(a.body.error, 'payload_too_large');
    });

    test('a chunked body over the limit, sent without a length, is 413 too', async () => {
      const before = await jobCount(u);
      const answer = await new Promise<Answer>((resolve, reject) => {
        const req = httpRequest(`${srv.url}/jobs`, {
          method: 'POST',
          headers: { 'x-kelpie-key': u.token, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }));
        });
        req.on('error', reject);
        req.write(`{"command":"x","container_group_id":"g","arguments":["`);
        const chunk = 'y'.repeat(64 * 1024);
        let sent = 0;
        const pump = () => {
          while (sent < 20) {
            sent++;
            if (!req.write(chunk)) return void req.once('drain', pump);
          }
          req.end('"]}');
        };
        pump();
      });
      assertRejected(answer, 413, /too large/i, 'chunked 1.25 MiB');
      assert.equal(await jobCount(u), before);
    });

    test('a batch with one bad item is 400 with the index of that item, and none of the batch is queued', async () => {
      const before = await jobCount(u);
      const batch = Array.from({ length: 5 }, (_, i) => ({ ...VALID, command: `job-${i}` }));
      const bad: [number, object, string][] = [
        [0, { command: 5 }, 'body/0/command'],
        [2, { max_failures: 0 }, 'body/2/max_failures'],
        [4, { unknown: true }, 'body/4/unknown'],
        [3, { environment: { 'not-ok': 'x' } }, 'body/3/environment'],
        [1, { webhook: 'mailto:x@example.com' }, 'body/1/webhook'],
      ];
      for (const [index, change, field] of bad) {
        const items = batch.map((d, i) => (i === index ? { ...d, ...change } : d));
        const a = await send(srv, u.token, 'POST', '/jobs/batch', { json: items });
        assertRejected(a, 400, field, `bad item ${index}`);
        assert.equal(a.body.index, index);
      }
      // two bad items: the first is reported
      const two = await send(srv, u.token, 'POST', '/jobs/batch', {
        json: batch.map((d, i) => (i === 1 || i === 3 ? { ...d, command: 0 } : d)),
      });
      assertRejected(two, 400, 'body/1/command', 'two bad items');
      assert.equal(two.body.index, 1);
      assertRejected(await send(srv, u.token, 'POST', '/jobs/batch', { json: [] }), 400, 'body', 'empty batch');
      assert.equal(await jobCount(u), before, 'nothing queued');
    });

    test('a URL with broken percent-encoding is 400 in the one error shape', async () => {
      await rejectsAll([
        ['GET', '/jobs/%E0%A4%A', {}, 400, /%E0%A4%A/],
        ['DELETE', '/jobs/container-groups/%ED%A0%80', {}, 400, /container-groups/],
        ['POST', '/jobs/%zz/heartbeat', { json: { machine_id: 'm', container_group_id: 'g' } }, 400, /%zz/],
      ]);
    });

    test('a container group id of the maximum length (256 characters) works on every route that takes it', async () => {
      const group = `g${'x'.repeat(255)}`;
      const job = await u.client.createJob({ command: 'x', container_group_id: group });
      assert.equal((await u.client.listJobs({ container_group_id: group }))._count, 1);
      assert.equal((await u.client.claimWork({ machine_id: 'm', container_group_id: group }))?.id, job.id);
      assert.deepEqual(await u.client.purgeContainerGroup(group), { count: 1 });
      assert.equal((await u.client.getJob(job.id)).status, 'canceled');
      await rejectsAll([
        ['POST', '/jobs', { json: { command: 'x', container_group_id: `${group}y` } }, 400, 'body/container_group_id'],
        ['DELETE', `/jobs/container-groups/${group}y`, {}, 400, 'params/container_group_id'],
      ]);
    });

    test('an identifier with a lone UTF-16 surrogate, which no database stores as given, is 400 naming it', async () => {
      // Valid JSON ("\ud800" escapes), but not representable in UTF-8: SQLite and PostgreSQL would each
      // store something else, and the job could not be claimed under the name it was given.
      const m = { machine_id: 'm', container_group_id: 'g' };
      await rejectsAll([
        ['POST', '/jobs', { json: { ...VALID, container_group_id: 'gpu\ud800' } }, 400, 'body/container_group_id'],
        ['POST', '/jobs', { json: { ...VALID, container_group_id: '\udc00x' } }, 400, 'body/container_group_id'],
        ['POST', '/jobs/batch', { json: [VALID, { ...VALID, container_group_id: 'a\udbff' }] }, 400, 'body/1/container_group_id'],
        ['POST', `/jobs/${UUID}/heartbeat`, { json: { ...m, machine_id: 'm\ud800' } }, 400, 'body/machine_id'],
        ['POST', `/jobs/${UUID}/completed`, { json: { ...m, container_group_id: 'g\udfff' } }, 400, 'body/container_group_id'],
      ]);
      const astral = await u.client.createJob({ ...VALID, container_group_id: 'gpu-\u{1F680}' });
      assert.equal(astral.container_group_id, 'gpu-🚀', 'a paired surrogate (astral character) is fine');
      assert.equal((await u.client.claimWork({ machine_id: 'm', container_group_id: 'gpu-🚀' }))?.id, astral.id);
      await u.client.cancelJob(astral.id);
    });

    test('a body that is not JSON is refused with a 4xx naming the body', async () => {
      const before = await jobCount(u);
      const plain = await send(srv, u.token, 'POST', '/jobs', {
        raw: JSON.stringify(VALID),
        headers: { 'content-type': 'text/plain' },
      });
      assert.ok(plain.status >= 400 && plain.status < 500, String(plain.status));
      assertRejected(plain, plain.status, /body|content-type|media type/i, 'text/plain');
      const form = await send(srv, u.token, 'POST', '/jobs', {
        raw: 'command=x&container_group_id=g',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      assertRejected(form, 415, /content-type|media type/i, 'form');
      const none = await fetch(`${srv.url}/jobs`, { method: 'POST', headers: { 'x-kelpie-key': u.token } });
      assertRejected({ status: none.status, body: (await none.json()) as Record<string, unknown> }, 400, 'body', 'no body');
      assert.equal(await jobCount(u), before);
    });
  });

  describe(`body limit (${kind})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind, { bodyLimit: 2048 });
    });
    after(async () => {
      await srv?.close();
    });

    test('a server started with bodyLimit 2048 refuses a 3 KB body with 413 and accepts a smaller one', async () => {
      const u = await srv.user();
      const big = await send(srv, u.token, 'POST', '/jobs', { json: { ...VALID, arguments: ['z'.repeat(3 * 1024)] } });
      assertRejected(big, 413, /too large: the limit is 2048 bytes/i, '3 KB');
      const items = Array.from({ length: 70 }, () => VALID);
      assert.ok(JSON.stringify(items).length > 3 * 1000);
      const batch = await send(srv, u.token, 'POST', '/jobs/batch', { json: items });
      assertRejected(batch, 413, /too large/i, '3 KB batch');
      assert.equal(await jobCount(u), 0);
      const small = await send(srv, u.token, 'POST', '/jobs', { json: { ...VALID, arguments: ['z'.repeat(1024)] } });
      assert.equal(small.status, 202);
      assert.equal(await jobCount(u), 1);
    });
  });
}
