// The SaladCloud client against a loopback server speaking the public API: the exact requests it
// sends, how it waits out 429s and retries 5xx, what it does not retry, and that its key appears
// only in its header.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RateLimiter, SaladCloudClient, SaladCloudError, parseRetryAfter } from '@drover/saladcloud';
import { FAKE_ORG, FAKE_PROJECT, startFakeSaladCloud, type FakeSaladCloud } from '@drover/testing/saladcloud';

const ref = (name: string) => ({ organization_name: FAKE_ORG, project_name: FAKE_PROJECT, container_group_name: name });
const base = `/api/public/organizations/${FAKE_ORG}/projects/${FAKE_PROJECT}/containers`;

describe('SaladCloud client', () => {
  let salad: FakeSaladCloud;
  let client: SaladCloudClient;

  before(async () => {
    salad = await startFakeSaladCloud();
    client = new SaladCloudClient({ apiKey: salad.apiKey, baseUrl: salad.url, backoff: { baseMs: 5, maxMs: 20 } });
  });
  after(() => salad?.close());

  const since = () => {
    const from = salad.requests.length;
    return () => salad.requests.slice(from);
  };

  test('calls are exactly the public API: paths, methods, the Salad-Api-Key header, merge-patch for updates, no body on start and stop', async () => {
    const g = salad.addGroup('exact-calls');
    const log = since();
    const got = await client.getContainerGroup(ref('exact-calls'));
    assert.equal(got.id, g.id);
    assert.equal(got.current_state.status, 'stopped');
    const updated = await client.setReplicas(ref('exact-calls'), 3);
    assert.equal(updated.replicas, 3);
    await client.startContainerGroup(ref('exact-calls'));
    await client.stopContainerGroup(ref('exact-calls'));
    const found = await client.findContainerGroupById(FAKE_ORG, FAKE_PROJECT, g.id);
    assert.equal(found?.name, 'exact-calls');
    assert.deepEqual(await client.listContainerGroupInstances(ref('exact-calls')), []);

    const calls = log();
    assert.deepEqual(
      calls.map((r) => [r.method, r.path, r.status]),
      [
        ['GET', `${base}/exact-calls`, 200],
        ['PATCH', `${base}/exact-calls`, 200],
        ['POST', `${base}/exact-calls/start`, 202],
        ['POST', `${base}/exact-calls/stop`, 202],
        ['GET', base, 200],
        ['GET', `${base}/exact-calls/instances`, 200],
      ],
    );
    for (const r of calls) assert.equal(r.headers['salad-api-key'], salad.apiKey);
    const patch = calls[1]!;
    assert.equal(patch.headers['content-type'], 'application/merge-patch+json');
    assert.deepEqual(JSON.parse(patch.body), { replicas: 3 });
    for (const r of [calls[2]!, calls[3]!]) assert.equal(r.body, '', 'start and stop carry no body');
  });

  test('a 429 is waited out for its Retry-After, then the call goes through', async () => {
    salad.addGroup('rate-limited');
    salad.fail(429, { retryAfter: '1', match: (r) => r.path.endsWith('/rate-limited') });
    const log = since();
    const got = await client.getContainerGroup(ref('rate-limited'));
    assert.equal(got.name, 'rate-limited');
    const [first, second] = log();
    assert.equal(first?.status, 429);
    assert.equal(second?.status, 200);
    assert.ok(second!.at - first!.at >= 950, `retried ${second!.at - first!.at} ms after the 429 (Retry-After: 1 s)`);
  });

  test('5xx answers are retried with backoff until one succeeds', async () => {
    salad.addGroup('flaky');
    salad.fail(500, { count: 2, match: (r) => r.method === 'PATCH' });
    const retries: number[] = [];
    const c = new SaladCloudClient({ apiKey: salad.apiKey, baseUrl: salad.url, backoff: { baseMs: 5, maxMs: 20 }, onRetry: (r) => retries.push(r.error.status) });
    const log = since();
    assert.equal((await c.setReplicas(ref('flaky'), 2)).replicas, 2);
    assert.deepEqual(log().map((r) => r.status), [500, 500, 200]);
    assert.deepEqual(retries, [500, 500]);
  });

  test('a start that met a 500 is not sent again (it may have taken effect); a 503 is', async () => {
    salad.addGroup('start-once');
    salad.fail(500, { match: (r) => r.path.endsWith('/start-once/start') });
    const log = since();
    await assert.rejects(client.startContainerGroup(ref('start-once')), (e: unknown) => e instanceof SaladCloudError && e.status === 500);
    assert.equal(log().length, 1);
    salad.fail(503, { match: (r) => r.path.endsWith('/start-once/start') });
    await client.startContainerGroup(ref('start-once'));
    assert.deepEqual(log().map((r) => r.status), [500, 503, 202]);
  });

  test('a group that does not exist is a 404 error at once, not retried', async () => {
    const log = since();
    await assert.rejects(client.getContainerGroup(ref('no-such-group')), (e: unknown) => e instanceof SaladCloudError && e.notFound && /HTTP 404/.test(e.message));
    assert.equal(log().length, 1);
  });

  test('a wrong key is refused, and no error message carries the key', async () => {
    const secret = `sk-${'x'.repeat(20)}-secret`;
    const c = new SaladCloudClient({ apiKey: secret, baseUrl: salad.url, attempts: 1 });
    const err = await c.getContainerGroup(ref('exact-calls')).catch((e: unknown) => e as SaladCloudError);
    assert.ok(err instanceof SaladCloudError);
    assert.equal(err.status, 401);
    assert.ok(!JSON.stringify({ ...err, message: err.message, stack: err.stack, problem: err.problem }).includes(secret));
    const down = new SaladCloudClient({ apiKey: secret, baseUrl: 'http://127.0.0.1:9/api/public', attempts: 1 });
    const net = await down.getContainerGroup(ref('x1')).catch((e: unknown) => e as SaladCloudError);
    assert.equal(net.kind, 'network');
    assert.ok(!`${net.message}${net.stack}`.includes(secret));
  });

  test('Retry-After is read as seconds or as an HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
  });

  test('the rate limiter lets at most `limit` requests through in any window, in order', async () => {
    let now = 0;
    const limiter = new RateLimiter(3, 1000, () => now);
    const order: number[] = [];
    const all = [0, 1, 2, 3, 4].map((i) => limiter.take().then(() => order.push(i)));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [0, 1, 2], 'three pass at once, the fourth waits for the window');
    now = 1000;
    await Promise.all(all);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
  });
});
