// Autoscaling's store contract, on both stores: rules per user, the job counts a decision is made
// from (explicit clocks), the per-group lease (one holder; a lapsed one is taken over with a new
// fence; a holder that lost it writes nothing) and the decision log.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type NewJob, type NewScalingDecision, type NewScalingRule } from '@drover/server';
import { Migrator, sql, type Kysely } from 'kysely';
import { STORES } from '@drover/testing/server';
import { CodeMigrationProvider, SALAD_GROUP_TAKEN_REASON } from '../../packages/server/src/store/migrations.js';
import { T0, storeForSuite, storeJob, storeUser } from '@drover/testing/store';


const newJob = (group: string): NewJob => storeJob(group, { max_failures: 1 });

function decision(extra: Partial<NewScalingDecision> = {}): NewScalingDecision {
  return {
    at: T0,
    trigger: 'work',
    provider: 'none',
    pending: 1,
    running: 0,
    recently_ended: 0,
    desired: 1,
    from_replicas: 0,
    to_replicas: 1,
    action: 'resize',
    outcome: 'applied',
    reason: 'test',
    error: null,
    coordinator: 'test:1',
    ...extra,
  };
}

for (const kind of STORES) {
  describe(`scaling store contract (${kind})`, () => {
    const store = storeForSuite(kind);

    async function fixture() {
      const { userId, group } = await storeUser(store(), 'scaling');
      const rule = (extra: Partial<NewScalingRule> = {}): NewScalingRule => ({
        user_id: userId,
        container_group_id: group,
        min_replicas: 0,
        max_replicas: 4,
        idle_threshold_seconds: 60,
        jobs_per_replica: 1,
        cooldown_seconds: 0,
        provider: 'none',
        org_name: null,
        project_name: null,
        container_group_name: null,
        enabled: true,
        ...extra,
      });
      return { userId, group, rule };
    }

    test('a rule is created once per user and group; a second create of the same group is refused', async () => {
      const f = await fixture();
      const created = await store().scaling.createRule(f.rule(), T0);
      assert.equal(created.kind, 'created');
      const rule = created.kind === 'created' ? created.rule : undefined;
      assert.equal(rule?.container_group_id, f.group);
      assert.equal(rule?.enabled, 1);
      assert.equal(rule?.created, T0);
      assert.deepEqual(await store().scaling.createRule(f.rule({ max_replicas: 9 }), T0 + 1), { kind: 'exists' });
      assert.equal((await store().scaling.getRule(f.userId, f.group))?.max_replicas, 4, 'the first rule is unchanged');
    });

    test("rules are scoped to their user: another user's rule for the same group is another rule", async () => {
      const a = await fixture();
      const b = await fixture();
      await store().scaling.createRule(a.rule(), T0);
      assert.equal(await store().scaling.getRule(b.userId, a.group), undefined);
      assert.deepEqual(await store().scaling.listRules(b.userId), []);
      assert.equal((await store().scaling.createRule({ ...b.rule(), container_group_id: a.group }, T0)).kind, 'created');
      assert.equal((await store().scaling.listRules(a.userId)).length, 1);
      assert.equal(await store().scaling.deleteRule(b.userId, a.group), true);
      assert.ok(await store().scaling.getRule(a.userId, a.group), "deleting b's rule leaves a's");
    });

    test("one enabled rule drives a SaladCloud container group: another user's is refused, kept disabled, and enabled once the group is free", async () => {
      const a = await fixture();
      const b = await fixture();
      const salad = { provider: 'saladcloud' as const, org_name: 'acme', project_name: 'p' };
      assert.equal((await store().scaling.createRule(a.rule(salad), T0)).kind, 'created');
      const theirs = { ...b.rule(salad), container_group_id: a.group };
      assert.deepEqual(await store().scaling.createRule(theirs, T0 + 1), { kind: 'group_taken' });
      assert.equal(await store().scaling.getRule(b.userId, a.group), undefined, 'nothing was stored');
      // Another provider for the same name drives something else; a disabled rule drives nothing.
      assert.equal((await store().scaling.createRule({ ...b.rule(), container_group_id: a.group, provider: 'none' }, T0 + 1)).kind, 'created');
      await store().scaling.deleteRule(b.userId, a.group);
      assert.equal((await store().scaling.createRule({ ...theirs, enabled: false }, T0 + 2)).kind, 'created');
      assert.deepEqual(await store().scaling.updateRule(b.userId, a.group, { enabled: true }, T0 + 3), { kind: 'group_taken' });
      assert.equal((await store().scaling.getRule(b.userId, a.group))?.enabled, 0, 'the refused update changed nothing');
      // a's rule stops driving the group: b's may.
      assert.equal((await store().scaling.updateRule(a.userId, a.group, { enabled: false }, T0 + 4)).kind, 'applied');
      assert.equal((await store().scaling.updateRule(b.userId, a.group, { enabled: true }, T0 + 5)).kind, 'applied');
      assert.deepEqual((await store().scaling.listActiveRules(['saladcloud'])).filter((r) => r.container_group_id === a.group).map((r) => r.user_id), [b.userId]);
    });

    test('the migration that allows one enabled rule per SaladCloud group keeps the oldest of rules that already collide and disables the rest', async () => {
      const a = await fixture();
      const b = await fixture();
      const c = await fixture();
      const db = (store() as unknown as { db: Kysely<unknown> }).db;
      // The database as it was before that migration (and those after it): no index, and three
      // users' rules on one group.
      const back = await new Migrator({ db, provider: new CodeMigrationProvider(kind) }).migrateTo('0005_logs_and_handovers');
      assert.ifError(back.error);
      assert.equal(Number((await sql<{ n: unknown }>`select count(*) as n from kysely_migration where name >= '0006'`.execute(db)).rows[0]?.n), 0);
      const salad = { provider: 'saladcloud' as const, org_name: 'acme', project_name: 'p', container_group_id: a.group };
      for (const [f, at] of [[b, T0 + 2], [a, T0 + 1], [c, T0 + 3]] as const) {
        assert.equal((await store().scaling.createRule({ ...f.rule(), ...salad }, at)).kind, 'created');
      }
      await store().migrate();
      const rules = await Promise.all([a, b, c].map((f) => store().scaling.getRule(f.userId, a.group)));
      assert.deepEqual(rules.map((r) => [r?.enabled, r?.disabled_reason]), [[1, null], [0, SALAD_GROUP_TAKEN_REASON], [0, SALAD_GROUP_TAKEN_REASON]]);
      assert.deepEqual(await store().scaling.updateRule(b.userId, a.group, { enabled: true }, T0 + 5), { kind: 'group_taken' }, 'the index is back');
    });

    test('an update that would put min_replicas above max_replicas changes nothing', async () => {
      const f = await fixture();
      await store().scaling.createRule(f.rule({ min_replicas: 1, max_replicas: 4 }), T0);
      const bad = await store().scaling.updateRule(f.userId, f.group, { min_replicas: 5 }, T0 + 1);
      assert.equal(bad.kind, 'min_above_max');
      const ok = await store().scaling.updateRule(f.userId, f.group, { min_replicas: 5, max_replicas: 6 }, T0 + 2);
      assert.equal(ok.kind, 'applied');
      assert.equal(ok.kind === 'applied' && ok.rule.updated, T0 + 2);
      assert.equal((await store().scaling.updateRule(f.userId, `${f.group}-none`, { max_replicas: 1 }, T0)).kind, 'not_found');
    });

    test('job counts: pending, running, and jobs ended at or after the window start, with the oldest end', async () => {
      const f = await fixture();
      const jobs = await store().createJobs(f.userId, Array.from({ length: 5 }, () => newJob(f.group)), T0);
      const ref = (i: number, now: number) => ({ userId: f.userId, jobId: jobs[i]!.id, machineId: `m${i}`, now });
      for (const i of [0, 1, 2, 3]) await store().claimJob({ userId: f.userId, machineId: `m${i}`, groupId: f.group, now: T0 + 1 });
      await store().completeJob(ref(0, T0 + 1000));
      await store().failJob(ref(1, T0 + 2000)); // max_failures 1: failed for good
      await store().cancelJob(f.userId, jobs[4]!.id, T0 + 3000); // a pending job canceled
      // jobs[2], jobs[3] still running
      const all = await store().scaling.countJobs(f.userId, f.group, T0);
      assert.deepEqual(all, { pending: 0, running: 2, recentlyEnded: 3, oldestRecentEnd: T0 + 1000 });
      const later = await store().scaling.countJobs(f.userId, f.group, T0 + 1500);
      assert.deepEqual(later, { pending: 0, running: 2, recentlyEnded: 2, oldestRecentEnd: T0 + 2000 });
      assert.deepEqual(await store().scaling.countJobs(f.userId, f.group, T0 + 5000), { pending: 0, running: 2, recentlyEnded: 0, oldestRecentEnd: undefined });
      const other = await fixture();
      assert.deepEqual(await store().scaling.countJobs(other.userId, f.group, 0), { pending: 0, running: 0, recentlyEnded: 0, oldestRecentEnd: undefined }, "another user's jobs are not counted");
    });

    test('a group lease has one holder at a time; a lapsed one is taken over with a higher fence', async () => {
      const f = await fixture();
      const a = await store().scaling.acquireLease(f.userId, f.group, 'A', T0, 10_000);
      assert.ok(a);
      assert.equal(await store().scaling.acquireLease(f.userId, f.group, 'B', T0 + 9_999, 10_000), undefined, 'held by A');
      assert.equal(await store().scaling.renewLease(a, T0 + 5_000, 10_000), true);
      assert.equal(await store().scaling.acquireLease(f.userId, f.group, 'B', T0 + 14_999, 10_000), undefined, 'renewed by A until T0 + 15 s');
      const b = await store().scaling.acquireLease(f.userId, f.group, 'B', T0 + 15_000, 10_000);
      assert.ok(b && b.fence > a.fence, 'B takes the lapsed lease with a new fence');
      assert.equal(await store().scaling.renewLease(a, T0 + 15_001, 10_000), false, 'A has lost it');
      await store().scaling.releaseLease(a); // a stale release changes nothing
      assert.equal(await store().scaling.acquireLease(f.userId, f.group, 'C', T0 + 15_002, 10_000), undefined, 'still held by B');
      await store().scaling.releaseLease(b);
      assert.ok(await store().scaling.acquireLease(f.userId, f.group, 'C', T0 + 15_003, 10_000), 'free at once after a release');
    });

    test('concurrent acquirers of one free lease: exactly one wins', async () => {
      const f = await fixture();
      const got = await Promise.all(Array.from({ length: 8 }, (_, i) => store().scaling.acquireLease(f.userId, f.group, `h${i}`, T0, 10_000)));
      assert.equal(got.filter((g) => g !== undefined).length, 1);
    });

    test('a holder that lost its lease writes no decision and no state', async () => {
      const f = await fixture();
      await store().scaling.createRule(f.rule(), T0);
      const a = (await store().scaling.acquireLease(f.userId, f.group, 'A', T0, 1000))!;
      const b = (await store().scaling.acquireLease(f.userId, f.group, 'B', T0 + 1000, 1000))!;
      assert.equal(await store().scaling.recordDecision(a, decision(), { replicas: 3, provider_status: 'running', evaluated: T0 + 1001 }), undefined);
      assert.equal(await store().scaling.updateState(a, { replicas: 3, provider_status: 'running', evaluated: T0 + 1001 }), false);
      assert.deepEqual(await store().scaling.listDecisions(f.userId, f.group, 10), []);
      assert.equal((await store().scaling.getRule(f.userId, f.group))?.replicas, null);
      assert.ok(await store().scaling.recordDecision(b, decision(), { replicas: 1, provider_status: 'running', evaluated: T0 + 1002 }));
      assert.equal((await store().scaling.getRule(f.userId, f.group))?.replicas, 1);
    });

    test('a decision left pending by a holder that died is marked interrupted by the next decision', async () => {
      const f = await fixture();
      await store().scaling.createRule(f.rule(), T0);
      const a = (await store().scaling.acquireLease(f.userId, f.group, 'A', T0, 1000))!;
      const pendingId = await store().scaling.recordDecision(a, decision({ outcome: 'pending', to_replicas: null }), { replicas: 0, provider_status: 'stopped', evaluated: T0 });
      assert.ok(pendingId);
      // A dies; B takes over once the lease lapses
      const b = (await store().scaling.acquireLease(f.userId, f.group, 'B', T0 + 1000, 1000))!;
      assert.equal(await store().scaling.finishDecision(a, pendingId, { outcome: 'applied', to_replicas: 4 }, { replicas: 4, provider_status: 'running', evaluated: T0 + 1000 }), false);
      const next = await store().scaling.recordDecision(b, decision({ at: T0 + 1001, action: 'none', outcome: 'unchanged', from_replicas: 4, to_replicas: 4 }), { replicas: 4, provider_status: 'running', evaluated: T0 + 1001 });
      const [newest, older] = (await store().scaling.listDecisions(f.userId, f.group, 10))!;
      assert.equal(newest?.id, next);
      assert.equal(older?.id, pendingId);
      assert.equal(older?.outcome, 'interrupted');
      assert.match(older?.error ?? '', /stopped before it knew the outcome/);
    });

    test('finishing a decision sets its outcome and the rule state together', async () => {
      const f = await fixture();
      await store().scaling.createRule(f.rule(), T0);
      const lease = (await store().scaling.acquireLease(f.userId, f.group, 'A', T0, 1000))!;
      const id = (await store().scaling.recordDecision(lease, decision({ outcome: 'pending', to_replicas: null }), { replicas: 0, provider_status: 'stopped', evaluated: T0 }))!;
      assert.equal(
        await store().scaling.finishDecision(lease, id, { outcome: 'error', to_replicas: 0, error: 'HTTP 500' }, { replicas: 0, provider_status: 'stopped', evaluated: T0 + 5, last_change: T0 + 5 }),
        true,
      );
      const [d] = (await store().scaling.listDecisions(f.userId, f.group, 1))!;
      assert.equal(d?.outcome, 'error');
      assert.equal(d?.error, 'HTTP 500');
      assert.equal((await store().scaling.getRule(f.userId, f.group))?.last_change, T0 + 5);
    });

    test("the autoscaler's amendments to a rule never undo a user's edit made since it read the rule", async () => {
      const f = await fixture();
      const created = await store().scaling.createRule(f.rule({ provider: 'saladcloud', org_name: 'acme', project_name: 'p' }), T0);
      assert.ok(created.kind === 'created');
      const rule = created.rule;
      const lease = (await store().scaling.acquireLease(f.userId, f.group, 'A', T0, 1000))!;
      await store().scaling.updateRule(f.userId, f.group, { org_name: 'other', container_group_name: null }, T0 + 1);
      await store().scaling.recordDecision(lease, decision(), { replicas: 1, provider_status: 'running', evaluated: T0 + 2 }, { updated: rule.updated, container_group_name: 'found-in-acme', enabled: false, disabled_reason: 'gone' });
      const now = (await store().scaling.getRule(f.userId, f.group))!;
      assert.equal(now.container_group_name, null, 'the name found under the old organization is not written');
      assert.equal(now.enabled, 1);
      assert.equal(now.replicas, 1, 'the observed state is written');
      await store().scaling.recordDecision(lease, decision(), { replicas: 1, provider_status: 'running', evaluated: T0 + 3 }, { updated: now.updated, enabled: false, disabled_reason: 'the group answers 404' });
      const disabled = (await store().scaling.getRule(f.userId, f.group))!;
      assert.equal(disabled.enabled, 0);
      assert.equal(disabled.disabled_reason, 'the group answers 404');
      assert.deepEqual((await store().scaling.listActiveRules(['saladcloud'])).filter((r) => r.user_id === f.userId), []);
    });

    test('decisions list newest first, page with before, and are deleted with their rule', async () => {
      const f = await fixture();
      await store().scaling.createRule(f.rule(), T0);
      const lease = (await store().scaling.acquireLease(f.userId, f.group, 'A', T0, 60_000))!;
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) ids.push((await store().scaling.recordDecision(lease, decision({ at: T0 + i }), { replicas: i, provider_status: 'running', evaluated: T0 + i }))!);
      const page = (await store().scaling.listDecisions(f.userId, f.group, 2))!;
      assert.deepEqual(page.map((d) => d.id), [ids[4], ids[3]]);
      assert.deepEqual((await store().scaling.listDecisions(f.userId, f.group, 2, ids[3]))!.map((d) => d.id), [ids[2], ids[1]]);
      assert.equal((await store().scaling.lastDecision(f.userId, f.group))?.id, ids[4]);
      const other = await fixture();
      assert.equal(await store().scaling.listDecisions(other.userId, f.group, 10), undefined, "another user's rule is not found");
      await store().scaling.deleteRule(f.userId, f.group);
      assert.equal(await store().scaling.listDecisions(f.userId, f.group, 10), undefined);
      await store().scaling.createRule(f.rule(), T0 + 10);
      assert.deepEqual(await store().scaling.listDecisions(f.userId, f.group, 10), [], 'a new rule starts with no history');
    });

    test('listActiveRules lists the enabled rules of every user for the given providers', async () => {
      const a = await fixture();
      const b = await fixture();
      await store().scaling.createRule(a.rule({ provider: 'local' }), T0);
      await store().scaling.createRule(b.rule({ provider: 'local', enabled: false }), T0);
      const c = await fixture();
      await store().scaling.createRule(c.rule({ provider: 'none' }), T0);
      const ours: string[] = [a.userId, b.userId, c.userId];
      const mine = (rows: { user_id: string }[]) => rows.filter((r) => ours.includes(r.user_id)).map((r) => r.user_id);
      assert.deepEqual(mine(await store().scaling.listActiveRules(['local'])), [a.userId]);
      assert.deepEqual(mine(await store().scaling.listActiveRules(['local', 'none'])).sort(), [a.userId, c.userId].sort());
      assert.deepEqual(await store().scaling.listActiveRules([]), []);
    });
  });
}
