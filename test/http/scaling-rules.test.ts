// The /scaling-rules API on both stores: Kelpie's routes, status codes and defaults, Drover's
// additions, per-user scoping, and bad input answered 400 naming the field with nothing changed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { DroverApiError, type ScalingRule } from '@drover/sdk';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

async function status(p: Promise<unknown>): Promise<{ status: number; message: string; error: string }> {
  try {
    await p;
    return { status: 200, message: '', error: '' };
  } catch (e) {
    if (!(e instanceof DroverApiError)) throw e;
    return { status: e.status, message: e.message, error: e.error };
  }
}

/** A raw request, for what the SDK would not send. */
async function raw(srv: TestServer, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> | undefined }> {
  const res = await fetch(`${srv.url}${path}`, {
    method,
    headers: { 'x-kelpie-key': key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

for (const kind of STORES) {
  describe(`scaling rules API (${kind})`, () => {
    let srv: TestServer;
    let a: TestUser;
    let b: TestUser;
    let n = 0;
    const group = () => `group-${++n}-${randomUUID().slice(0, 8)}`;
    /** The first evaluation of a new rule writes its state: wait for it before comparing snapshots. */
    const settled = async (u: TestUser, g: string) => {
      const deadline = Date.now() + 15_000;
      while ((await u.client.getScalingRule(g)).evaluated === null) {
        if (Date.now() > deadline) throw new Error(`rule ${g} was never evaluated`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    before(async () => {
      // Provider none only: these tests are about the API, not about driving anything.
      srv = await startTestServer(kind, { autoscaling: { intervalMs: 60_000 } });
      a = await srv.user();
      b = await srv.user();
    });
    after(() => srv?.close());

    test("a rule is created with 201 and Kelpie's defaults, and read back by its container group", async () => {
      const g = group();
      const res = await raw(srv, a.token, 'POST', '/scaling-rules', { container_group_id: g });
      assert.equal(res.status, 201);
      const rule = res.json as unknown as ScalingRule;
      assert.equal(rule.container_group_id, g);
      assert.equal(rule.min_replicas, 0);
      assert.equal(rule.max_replicas, 100);
      assert.equal(rule.idle_threshold_seconds, 300);
      assert.equal(rule.user_id, a.id);
      assert.equal(rule.provider, 'none', 'a coordinator with no SaladCloud key and no local workers records decisions only');
      assert.equal(rule.jobs_per_replica, 1);
      assert.equal(rule.cooldown_seconds, 0);
      assert.equal(rule.enabled, true);
      assert.equal(rule.disabled_reason, null);
      assert.equal(rule.org_name, null);
      assert.ok(Date.parse(rule.created) > 0 && rule.updated === rule.created);
      const got = await a.client.getScalingRule(g);
      assert.equal(got.container_group_id, g);
      assert.equal(got.max_replicas, 100);
    });

    test('GET /scaling-rules lists only the caller\'s rules, as {_count, rules}', async () => {
      const mine = [group(), group()];
      for (const g of mine) await a.client.createScalingRule({ container_group_id: g, max_replicas: 3 });
      await b.client.createScalingRule({ container_group_id: group() });
      const list = await a.client.listScalingRules();
      assert.equal(list._count, list.rules.length);
      for (const g of mine) assert.ok(list.rules.some((r) => r.container_group_id === g));
      assert.ok(list.rules.every((r) => r.user_id === a.id));
    });

    test("another user's rule is 404 on get, patch and decisions, and their delete leaves it", async () => {
      const g = group();
      await a.client.createScalingRule({ container_group_id: g });
      for (const call of [() => b.client.getScalingRule(g), () => b.client.updateScalingRule(g, { max_replicas: 1 }), () => b.client.scalingDecisions(g)]) {
        const r = await status(call());
        assert.equal(r.status, 404);
        assert.match(r.message, /scaling rule for container group .* not found/);
      }
      await b.client.deleteScalingRule(g);
      assert.equal((await a.client.getScalingRule(g)).max_replicas, 100, "a's rule is untouched");
      // and b may have a rule of its own for a group of the same name
      assert.equal((await b.client.createScalingRule({ container_group_id: g, max_replicas: 2 })).max_replicas, 2);
    });

    test('a second rule for the same container group is 409 and changes nothing', async () => {
      const g = group();
      await a.client.createScalingRule({ container_group_id: g, max_replicas: 4 });
      await settled(a, g);
      const before = await srv.snapshot();
      const r = await status(a.client.createScalingRule({ container_group_id: g, max_replicas: 9 }));
      assert.equal(r.status, 409);
      assert.match(r.message, /has a scaling rule already: PATCH/);
      assert.ok((await srv.snapshot()) === before, 'nothing changed');
    });

    test('bad input is a 400 naming the field, and changes nothing', async () => {
      const g = group();
      await a.client.createScalingRule({ container_group_id: g, min_replicas: 1, max_replicas: 4 });
      await settled(a, g);
      const cases: [string, string, unknown, RegExp][] = [
        ['POST', '/scaling-rules', { container_group_id: group(), max_replica: 3 }, /body\/max_replica is not a known field/],
        ['POST', '/scaling-rules', { max_replicas: 3 }, /body\/container_group_id is required/],
        ['POST', '/scaling-rules', { container_group_id: group(), min_replicas: -1 }, /body\/min_replicas must be >= 0/],
        ['POST', '/scaling-rules', { container_group_id: group(), max_replicas: 501 }, /body\/max_replicas must be <= 500/],
        ['POST', '/scaling-rules', { container_group_id: group(), idle_threshold_seconds: 3601 }, /body\/idle_threshold_seconds must be <= 3600/],
        ['POST', '/scaling-rules', { container_group_id: group(), max_replicas: '4' }, /body\/max_replicas must be integer/],
        ['POST', '/scaling-rules', { container_group_id: group(), jobs_per_replica: 0 }, /body\/jobs_per_replica must be >= 1/],
        ['POST', '/scaling-rules', { container_group_id: group(), min_replicas: 5, max_replicas: 4 }, /body\/min_replicas \(5\) must not be greater than body\/max_replicas \(4\)/],
        ['POST', '/scaling-rules', { container_group_id: group(), min_replicas: 101 }, /body\/min_replicas \(101\) must not be greater than the default max_replicas \(100\)/],
        ['POST', '/scaling-rules', { container_group_id: group(), provider: 'aws' }, /body\/provider must be one of "saladcloud", "local", "none"/],
        ['POST', '/scaling-rules', { container_group_id: randomUUID(), provider: 'saladcloud' }, /body\/provider saladcloud: this coordinator has no SaladCloud API key/],
        ['POST', '/scaling-rules', { container_group_id: group(), provider: 'local' }, /body\/provider local: this coordinator runs no local workers/],
        ['POST', '/scaling-rules', { container_group_id: group(), org_name: 'acme' }, /body\/org_name is for provider saladcloud only/],
        ['POST', '/scaling-rules', { container_group_id: group(), org_name: 'Acme!' }, /body\/org_name must match pattern/],
        ['POST', '/scaling-rules', '{"container_group_id": ', /JSON/i],
        ['PATCH', `/scaling-rules/${g}`, { min_replicas: 5 }, /body\/min_replicas \(5\) must not be greater than the rule's max_replicas \(4\)/],
        ['PATCH', `/scaling-rules/${g}`, { max_replicas: 0 }, /the rule's min_replicas \(1\) must not be greater than body\/max_replicas \(0\)/],
        ['PATCH', `/scaling-rules/${g}`, { container_group_id: 'elsewhere' }, /body\/container_group_id must be the path's/],
        ['PATCH', `/scaling-rules/${g}`, { idle_threshold: 5 }, /body\/idle_threshold is not a known field/],
        ['PATCH', `/scaling-rules/${g}`, { enabled: 'yes' }, /body\/enabled must be boolean/],
        ['GET', `/scaling-rules/${g}/decisions?limit=0`, undefined, /querystring\/limit must be >= 1/],
      ];
      const before = await srv.snapshot();
      for (const [method, path, body, message] of cases) {
        const res = await raw(srv, a.token, method, path, body);
        assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.json)}`);
        assert.equal(typeof res.json?.error, 'string');
        assert.match(String(res.json?.message), message, `${method} ${path} ${JSON.stringify(body)}`);
      }
      assert.ok((await srv.snapshot()) === before, 'no bad request changed anything');
    });

    test('PATCH changes only the fields it names and answers the whole rule', async () => {
      const g = group();
      const created = await a.client.createScalingRule({ container_group_id: g, min_replicas: 1, max_replicas: 4, idle_threshold_seconds: 30 });
      const patched = await a.client.updateScalingRule(g, { max_replicas: 8, cooldown_seconds: 60 });
      assert.equal(patched.max_replicas, 8);
      assert.equal(patched.cooldown_seconds, 60);
      assert.equal(patched.min_replicas, 1);
      assert.equal(patched.idle_threshold_seconds, 30);
      assert.equal(patched.created, created.created);
      assert.ok(Date.parse(patched.updated) >= Date.parse(created.updated));
      // A Kelpie client may send the whole rule back, its own container_group_id included.
      const whole = await a.client.updateScalingRule(g, { container_group_id: g, min_replicas: 0, max_replicas: 2, idle_threshold_seconds: 300 });
      assert.deepEqual([whole.min_replicas, whole.max_replicas, whole.idle_threshold_seconds], [0, 2, 300]);
      const paused = await a.client.updateScalingRule(g, { enabled: false });
      assert.equal(paused.enabled, false);
      assert.equal(paused.disabled_reason, null);
    });

    test('DELETE answers 204, also when there is no rule (as Kelpie), and takes the decisions with it', async () => {
      const g = group();
      await a.client.createScalingRule({ container_group_id: g });
      assert.equal((await raw(srv, a.token, 'DELETE', `/scaling-rules/${g}`)).status, 204);
      assert.equal((await status(a.client.getScalingRule(g))).status, 404);
      assert.equal((await status(a.client.scalingDecisions(g))).status, 404);
      assert.equal((await raw(srv, a.token, 'DELETE', `/scaling-rules/${g}`)).status, 204);
    });

    test('only the admin may delete every rule of every user', async () => {
      const g = group();
      await a.client.createScalingRule({ container_group_id: g });
      const refused = await raw(srv, a.token, 'DELETE', '/scaling-rules');
      assert.equal(refused.status, 403);
      assert.ok(await a.client.getScalingRule(g));
      assert.equal((await raw(srv, srv.adminKey, 'DELETE', '/scaling-rules')).status, 204);
      assert.equal((await a.client.listScalingRules())._count, 0);
      assert.equal((await b.client.listScalingRules())._count, 0);
    });

    test('a rule with provider none records its decisions (inputs, from, to, why) and changes nothing', async () => {
      const g = group();
      await a.client.createScalingRule({ container_group_id: g, max_replicas: 4, idle_threshold_seconds: 600 });
      await a.client.createJobs(Array.from({ length: 6 }, () => ({ command: 'true', container_group_id: g })));
      const deadline = Date.now() + 15_000;
      let decisions = (await a.client.scalingDecisions(g)).decisions;
      while (!decisions.some((d) => d.action === 'start' && d.outcome !== 'pending') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        decisions = (await a.client.scalingDecisions(g)).decisions;
      }
      const up = decisions.find((d) => d.action === 'start');
      assert.ok(up, `a start decision: ${JSON.stringify(decisions)}`);
      assert.equal(up.provider, 'none');
      assert.equal(up.outcome, 'applied');
      assert.equal(up.pending, 6);
      assert.equal(up.running, 0);
      assert.equal(up.desired, 4);
      assert.equal(up.from, 0);
      assert.equal(up.to, 4);
      assert.match(up.reason, /6 jobs \(6 pending, 0 running, 0 ended in the last 600 s\) need 6 \(max_replicas 4\)/);
      assert.match(up.coordinator, /:\d+$/);
      const rule = await a.client.getScalingRule(g);
      assert.equal(rule.replicas, 4);
      assert.ok(rule.evaluated);
    });

    test('the OpenAPI document describes the scaling routes with their schemas', async () => {
      const doc = (await (await fetch(`${srv.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, unknown> } };
      assert.ok(doc.paths['/scaling-rules']?.post && doc.paths['/scaling-rules']?.get && doc.paths['/scaling-rules']?.delete);
      const one = doc.paths['/scaling-rules/{container_group_id}'];
      assert.ok(one?.get && one.patch && one.delete);
      assert.ok(doc.paths['/scaling-rules/{container_group_id}/decisions']?.get);
      for (const s of ['ScalingRule', 'ScalingRuleList', 'CreateScalingRuleBody', 'PatchScalingRuleBody', 'ScalingDecision', 'ScalingDecisionList']) {
        assert.ok(doc.components.schemas[s], `components.schemas.${s}`);
      }
    });
  });
}
