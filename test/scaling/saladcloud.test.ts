// The autoscaler driving SaladCloud container groups, on both stores: a coordinator (real HTTP,
// real store) whose SaladCloud is a loopback server speaking the public API. What is asserted is
// the request log: exactly the calls the protocol needs, no call twice.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { ScalingDecision } from '@drover/sdk';
import { FAKE_ORG, FAKE_PROJECT, startFakeSaladCloud, type FakeSaladCloud, type SaladRequest } from '@drover/testing/saladcloud';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';

const base = `/api/public/organizations/${FAKE_ORG}/projects/${FAKE_PROJECT}/containers`;
const calls = (rs: SaladRequest[]) => rs.map((r) => `${r.method} ${r.path.replace(base, '…')}${r.body ? ` ${r.body}` : ''} → ${r.status}`);

for (const kind of STORES) {
  describe(`autoscaling SaladCloud container groups (${kind})`, () => {
    let salad: FakeSaladCloud;
    const servers: TestServer[] = [];
    let n = 0;

    before(async () => {
      salad = await startFakeSaladCloud();
    });
    after(async () => {
      for (const s of servers) await s.close();
      await salad?.close();
    });

    /** A coordinator with a SaladCloud key; `intervalMs` long by default, so only signals and the idle-window timer drive decisions. */
    async function coordinator(opts: { intervalMs?: number } = {}): Promise<{ srv: TestServer; user: TestUser }> {
      const srv = await startTestServer(kind, {
        autoscaling: {
          saladcloud: { apiKey: salad.apiKey, baseUrl: salad.url, organization: FAKE_ORG, project: FAKE_PROJECT },
          intervalMs: opts.intervalMs ?? 120_000,
          debounceMs: 100,
          errorBackoff: { baseMs: 200, maxMs: 1000 },
        },
      });
      servers.push(srv);
      return { srv, user: await srv.user() };
    }

    /** A stopped group on SaladCloud and a rule for it; resolves once the rule's first decision is written. */
    async function ruleFor(user: TestUser, settings: { max_replicas?: number; min_replicas?: number; idle_threshold_seconds?: number; named?: boolean } = {}) {
      const name = `group-${kind}-${++n}`;
      const g = salad.addGroup(name);
      const { named, ...rest } = settings;
      await user.client.createScalingRule({ container_group_id: g.id, ...rest, ...(named ? { container_group_name: name } : {}) });
      await waitFor('the rule to be evaluated', async () => (await user.client.getScalingRule(g.id)).evaluated !== null);
      return { g, name, log: () => salad.requests.filter((r) => r.path.includes(`/containers/${name}`)) };
    }

    const jobs = (count: number, group: string) => Array.from({ length: count }, () => ({ command: 'true', container_group_id: group }));

    test('ten jobs queued to a group with a rule of min 0, max 4 have SaladCloud asked for 4 replicas and a start within 2 s', async () => {
      const { user } = await coordinator();
      const listed = salad.requests.length;
      const { g, name, log } = await ruleFor(user, { min_replicas: 0, max_replicas: 4 });
      // The rule named no group: it was found by its id in the project's list, once.
      assert.deepEqual(salad.requests.slice(listed).map((r) => `${r.method} ${r.path}`), [`GET ${base}`]);
      assert.equal((await user.client.getScalingRule(g.id)).container_group_name, name);

      const submitted = Date.now();
      await user.client.createJobs(jobs(10, g.id));
      await waitFor('SaladCloud to be asked to start the group', () => log().some((r) => r.path.endsWith('/start') && r.status === 202));
      const patch = log().find((r) => r.method === 'PATCH')!;
      const start = log().find((r) => r.path.endsWith('/start'))!;
      assert.ok(patch.at - submitted < 2000, `replicas asked for ${patch.at - submitted} ms after the submission`);
      assert.ok(start.at - submitted < 2000, `start asked for ${start.at - submitted} ms after the submission`);
      assert.deepEqual(calls(log()), [`GET …/${name} → 200`, `PATCH …/${name} {"replicas":4} → 200`, `POST …/${name}/start → 202`]);
      assert.equal(patch.headers['content-type'], 'application/merge-patch+json');
      assert.equal(patch.headers['salad-api-key'], salad.apiKey);
      assert.equal(salad.group(name)?.replicas, 4);

      await waitFor('the decision to be applied', async () => (await user.client.scalingDecisions(g.id)).decisions[0]?.outcome === 'applied');
      const [d] = (await user.client.scalingDecisions(g.id)).decisions as [ScalingDecision];
      assert.deepEqual([d.action, d.trigger, d.pending, d.running, d.recently_ended, d.desired, d.from, d.to], ['start', 'work', 10, 0, 0, 4, 0, 4]);
      assert.match(d.reason, /10 jobs .* need 10 \(max_replicas 4\): set 4 replicas and start the group/);
      const rule = await user.client.getScalingRule(g.id);
      assert.equal(rule.replicas, 4);
      assert.equal(rule.provider_status, 'deploying');
    });

    test('when every job has ended the group is stopped once the idle threshold has passed, and not before', async () => {
      const { user } = await coordinator();
      const { g, name, log } = await ruleFor(user, { max_replicas: 3, idle_threshold_seconds: 2 });
      const queued = await user.client.createJobs(jobs(3, g.id));
      await waitFor('the scale-up', () => log().some((r) => r.path.endsWith('/start')));
      let lastEnd = 0;
      for (let i = 0; i < queued.length; i++) {
        const machine = { machine_id: `node-${i}`, container_group_id: g.id };
        const job = await user.client.claimWork(machine);
        assert.ok(job);
        lastEnd = Date.now();
        await user.client.completeJob(job.id, machine);
      }
      await waitFor('the group to be stopped', () => log().some((r) => r.path.endsWith('/stop')), 20_000);
      const stop = log().find((r) => r.path.endsWith('/stop'))!;
      assert.ok(stop.at - lastEnd >= 2000, `stopped ${stop.at - lastEnd} ms after the last job ended (idle threshold 2 s)`);
      // Timed by the idle window, not by the 2-minute re-evaluation.
      assert.ok(stop.at - lastEnd < 12_000, `stopped ${stop.at - lastEnd} ms after the last job ended`);
      assert.equal(salad.group(name)?.status, 'stopped');
      // Each ended job holds its replica for the idle threshold from its own end: jobs that ended
      // earlier may have let replicas go one by one before the stop.
      const changes = calls(log().filter((r) => r.method !== 'GET'));
      assert.deepEqual(changes.slice(0, 2), [`PATCH …/${name} {"replicas":3} → 200`, `POST …/${name}/start → 202`]);
      assert.equal(changes.at(-1), `POST …/${name}/stop → 202`);
      const between = changes.slice(2, -1).map((c) => Number(/"replicas":(\d+)/.exec(c)?.[1]));
      assert.ok(between.every((r, i) => r < (between[i - 1] ?? 3) && r > 0), `only scale-downs in between: ${changes.join(', ')}`);
      await waitFor('the stop to be recorded', async () => (await user.client.scalingDecisions(g.id)).decisions[0]?.outcome === 'applied');
      const [d] = (await user.client.scalingDecisions(g.id)).decisions as [ScalingDecision];
      assert.deepEqual([d.action, d.pending, d.running, d.recently_ended, d.desired, d.from, d.to], ['stop', 0, 0, 0, 0, between.at(-1) ?? 3, 0]);
      assert.equal(d.trigger, 'timer');
    });

    test('fewer jobs scale a running group down by a PATCH of its replicas, not a stop', async () => {
      const { user } = await coordinator();
      const { g, name, log } = await ruleFor(user, { max_replicas: 4, idle_threshold_seconds: 1 });
      await user.client.createJobs(jobs(4, g.id));
      await waitFor('the scale-up', () => log().some((r) => r.path.endsWith('/start')));
      const held = [];
      for (let i = 0; i < 4; i++) {
        const machine = { machine_id: `node-${i}`, container_group_id: g.id };
        held.push({ job: (await user.client.claimWork(machine))!, machine });
      }
      for (const { job, machine } of held.slice(0, 3)) await user.client.completeJob(job.id, machine);
      await waitFor('the scale-down', () => log().some((r) => r.method === 'PATCH' && r.body === '{"replicas":1}'), 20_000);
      assert.equal(salad.group(name)?.replicas, 1);
      assert.ok(!log().some((r) => r.path.endsWith('/stop')), 'a group with a running job is never stopped');
    });

    test('a group stuck in deploying is neither started nor patched again on later evaluations', async (t) => {
      salad.stuckDeploying(true);
      t.after(() => salad.stuckDeploying(false));
      const { user } = await coordinator({ intervalMs: 150 });
      const { g, name, log } = await ruleFor(user, { max_replicas: 2, named: true });
      await user.client.createJobs(jobs(2, g.id));
      await waitFor('the start', () => log().some((r) => r.path.endsWith('/start')));
      const started = log().length;
      await waitFor('several evaluations of the deploying group', () => log().slice(started).filter((r) => r.method === 'GET').length >= 6, 20_000);
      assert.equal(salad.group(name)?.status, 'deploying');
      assert.deepEqual(calls(log().filter((r) => r.method !== 'GET')), [`PATCH …/${name} {"replicas":2} → 200`, `POST …/${name}/start → 202`]);
      // The evaluations found what the start left (deploying, 2 replicas): news to nobody, so not recorded again.
      const decisions = (await user.client.scalingDecisions(g.id)).decisions;
      assert.deepEqual(decisions.map((d) => d.action), ['start', 'none'], decisions.map((d) => d.reason).join('\n'));
      const rule = await user.client.getScalingRule(g.id);
      assert.equal(rule.provider_status, 'deploying');
      assert.ok(Date.parse(rule.evaluated!) > Date.parse(decisions[0]!.at), 'the rule shows when it was last looked at');
      // Once the group comes up, that is recorded.
      salad.stuckDeploying(false);
      await waitFor('the group seen running', async () => (await user.client.scalingDecisions(g.id)).decisions[0]?.reason.includes('the group runs 2 already') === true, 20_000);
    });

    test('429 (Retry-After) and 5xx answers are waited out and the decision goes through', async () => {
      const { user } = await coordinator();
      const { g, name, log } = await ruleFor(user, { max_replicas: 2, named: true });
      const mine = (r: SaladRequest) => r.path.includes(`/containers/${name}`);
      salad.fail(500, { match: (r) => mine(r) && r.method === 'GET' });
      salad.fail(429, { retryAfter: '1', match: (r) => mine(r) && r.method === 'PATCH' });
      salad.fail(503, { match: (r) => mine(r) && r.path.endsWith('/start') });
      await user.client.createJobs(jobs(2, g.id));
      await waitFor('the start to go through', () => log().some((r) => r.path.endsWith('/start') && r.status === 202), 20_000);
      assert.deepEqual(
        calls(log()).slice(-6),
        [
          `GET …/${name} → 500`,
          `GET …/${name} → 200`,
          `PATCH …/${name} {"replicas":2} → 429`,
          `PATCH …/${name} {"replicas":2} → 200`,
          `POST …/${name}/start → 503`,
          `POST …/${name}/start → 202`,
        ],
      );
      const patches = log().filter((r) => r.method === 'PATCH');
      assert.ok(patches[1]!.at - patches[0]!.at >= 950, `the PATCH was repeated ${patches[1]!.at - patches[0]!.at} ms after the 429 (Retry-After: 1)`);
      await waitFor('the decision to be applied', async () => (await user.client.scalingDecisions(g.id)).decisions[0]?.outcome === 'applied');
    });

    test('a group that answers 404 disables its rule, the reason shown on the rule and in its decisions; enabled again, it scales', async () => {
      const { user } = await coordinator();
      const { g, name, log } = await ruleFor(user, { max_replicas: 2, named: true });
      salad.removeGroup(name);
      await user.client.createJobs(jobs(1, g.id));
      await waitFor('the rule to be disabled', async () => !(await user.client.getScalingRule(g.id)).enabled);
      const rule = await user.client.getScalingRule(g.id);
      assert.match(rule.disabled_reason ?? '', new RegExp(`${FAKE_ORG}/${FAKE_PROJECT}/${name} answers 404`));
      const [d] = (await user.client.scalingDecisions(g.id)).decisions as [ScalingDecision];
      assert.equal(d.action, 'disable');
      assert.match(d.reason, /answers 404 \(deleted\?\): the rule is disabled/);
      assert.deepEqual(calls(log().slice(-1)), [`GET …/${name} → 404`]);

      // A disabled rule is left alone by new work...
      const seen = log().length;
      await user.client.createJobs(jobs(1, g.id));
      // ...and the group, back on SaladCloud with the same id, scales once the rule is enabled again.
      salad.addGroup(name, { id: g.id });
      const enabled = await user.client.updateScalingRule(g.id, { enabled: true });
      assert.equal(enabled.disabled_reason, null);
      await waitFor('the scale-up', () => log().some((r) => r.path.endsWith('/start')));
      assert.deepEqual(calls(log().slice(seen)), [`GET …/${name} → 200`, `PATCH …/${name} {"replicas":2} → 200`, `POST …/${name}/start → 202`]);
    });

    test("a rule whose container group is not in the project, or whose named group has another id, is disabled and nothing is scaled", async () => {
      const { user } = await coordinator();
      const missing = randomUUID();
      await user.client.createScalingRule({ container_group_id: missing });
      await waitFor('the rule to be disabled', async () => !(await user.client.getScalingRule(missing)).enabled);
      assert.match((await user.client.getScalingRule(missing)).disabled_reason ?? '', new RegExp(`no container group with id ${missing} in ${FAKE_ORG}/${FAKE_PROJECT}`));

      const other = salad.addGroup(`other-${kind}`);
      const mismatched = randomUUID();
      await user.client.createScalingRule({ container_group_id: mismatched, container_group_name: other.name });
      await waitFor('the rule to be disabled', async () => !(await user.client.getScalingRule(mismatched)).enabled);
      assert.match((await user.client.getScalingRule(mismatched)).disabled_reason ?? '', new RegExp(`has id ${other.id}, not the rule's container_group_id ${mismatched}`));
      assert.deepEqual(salad.changes(other.name), []);
    });

    test("another user's rule for a SaladCloud group that a rule drives is 409 naming the field, and nothing is asked of SaladCloud for it", async () => {
      const { srv, user } = await coordinator();
      const other = await srv.user();
      const { g, name, log } = await ruleFor(user, { max_replicas: 2 });
      const seen = log().length;
      const before = await srv.snapshot();
      const refused = await fetch(`${srv.url}/scaling-rules`, {
        method: 'POST',
        headers: { 'x-kelpie-key': other.token, 'content-type': 'application/json' },
        body: JSON.stringify({ container_group_id: g.id, min_replicas: 0, max_replicas: 0 }),
      });
      assert.equal(refused.status, 409);
      assert.match(((await refused.json()) as { message: string }).message, /^body\/container_group_id "[0-9a-f-]+": another user's enabled rule drives this SaladCloud container group/);
      assert.ok((await srv.snapshot()) === before, 'nothing changed');
      // Kept disabled, it drives nothing; enabling it is refused the same way while the first rule drives the group.
      await other.client.createScalingRule({ container_group_id: g.id, max_replicas: 0, enabled: false });
      const enabling = await other.client.updateScalingRule(g.id, { enabled: true }).catch((e: { status: number; message: string }) => e);
      assert.equal((enabling as { status: number }).status, 409);
      assert.equal((await other.client.getScalingRule(g.id)).enabled, false);
      await user.client.createJobs(jobs(1, g.id));
      await waitFor('the first rule to start its group', () => log().some((r) => r.path.endsWith('/start')));
      assert.deepEqual(calls(log().slice(seen)), [`GET …/${name} → 200`, `PATCH …/${name} {"replicas":1} → 200`, `POST …/${name}/start → 202`]);
    });

    test('the SaladCloud key is in no answer of the API', async () => {
      const { srv, user } = await coordinator();
      const { g } = await ruleFor(user, { max_replicas: 1 });
      await user.client.createJobs(jobs(1, g.id));
      await waitFor('a decision to act', async () => (await user.client.scalingDecisions(g.id)).decisions.some((d) => d.action === 'start' && d.outcome === 'applied'));
      for (const path of ['/scaling-rules', `/scaling-rules/${g.id}`, `/scaling-rules/${g.id}/decisions`, '/openapi.json', '/metrics']) {
        const text = await (await fetch(`${srv.url}${path}`, { headers: { 'x-kelpie-key': user.token } })).text();
        assert.ok(!text.includes(salad.apiKey), `${path} does not carry the key`);
      }
    });
  });
}
