// Autoscaling with real `drover server` processes: two replicas on one PostgreSQL database decide
// for a group one at a time, and the one deciding, killed with kill -9 in the middle of a
// SaladCloud call, leaves a group that the other finishes scaling without doing anything twice;
// on SQLite, the coordinator started again after such a kill does the same. And whatever
// SaladCloud answers, the API key shows up in no line a coordinator writes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DroverClient } from '@drover/sdk';
import { FAKE_ORG, FAKE_PROJECT, startFakeSaladCloud, type FakeSaladCloud } from '@drover/testing/saladcloud';
import { freshDatabase, spawnServer, type ServerProcess } from '@drover/testing/server';
import { metricsText, waitFor } from '@drover/testing/wait';

/** A counter of a coordinator's /metrics, 0 if not yet counted. */
async function metric(server: ServerProcess, name: string, labels: string): Promise<number> {
  const text = await metricsText(server);
  const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

function saladArgs(salad: FakeSaladCloud, extra: string[] = []): { extraArgs: string[]; env: NodeJS.ProcessEnv } {
  return {
    extraArgs: ['--salad-api-url', salad.url, '--salad-organization', FAKE_ORG, '--salad-project', FAKE_PROJECT, ...extra],
    env: { SALAD_API_KEY: salad.apiKey },
  };
}

describe('autoscaling coordinator processes', () => {
  let salad: FakeSaladCloud;
  const procs: ServerProcess[] = [];
  const dbs: Awaited<ReturnType<typeof freshDatabase>>[] = [];

  before(async () => {
    salad = await startFakeSaladCloud();
  });
  after(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    for (const d of dbs) await d.cleanup();
    await salad?.close();
  });

  test('a coordinator killed with kill -9 mid-decision leaves no group scaled twice: the other replica finishes the job once its lease lapses', async () => {
    const db = await freshDatabase('postgres');
    dbs.push(db);
    const adminKey = `admin-${randomBytes(12).toString('hex')}`;
    const args = saladArgs(salad, ['--autoscale-lease', '2', '--autoscale-interval', '600']);
    const [one, two] = await Promise.all([spawnServer({ database: db.database, adminKey, ...args }), spawnServer({ database: db.database, adminKey, ...args })]);
    procs.push(one, two);
    const admin = new DroverClient({ url: one.url, key: adminKey, retries: 0 });
    const user = await admin.createUser('scaler');
    const { token } = await admin.createToken(user.id);
    const via = (p: ServerProcess) => new DroverClient({ url: p.url, key: token, retries: 0 });

    const g = salad.addGroup('crash-group');
    await via(one).createScalingRule({ container_group_id: g.id, container_group_name: g.name, max_replicas: 4 });
    await waitFor('the rule to be evaluated', async () => (await via(one).getScalingRule(g.id)).evaluated !== null);
    assert.deepEqual(salad.changes(g.name), []);

    // The first change asked for takes effect on SaladCloud at once, but its answer is held back:
    // whichever coordinator took the group's lease is now in the middle of its decision.
    const held = salad.hold((r) => r.method === 'PATCH' && r.path.endsWith(`/containers/${g.name}`));
    await via(two).createJobs(Array.from({ length: 10 }, () => ({ command: 'true', container_group_id: g.id })));
    await waitFor('a coordinator to ask for the replicas', () => held.arrived.length === 1);
    const ua = String(held.arrived[0]!.headers['user-agent']);
    const holder = [one, two].find((p) => ua.includes(`:${p.proc.pid})`));
    assert.ok(holder, `the user agent names the coordinator: ${ua}`);
    const other = holder === one ? two : one;

    // The other replica heard of the jobs too (NOTIFY) and keeps finding the group taken, for
    // longer than a lease: the holder is renewing it while its call is in flight.
    const busy = await metric(other, 'drover_autoscaler_evaluations_total', 'result="lease_busy"');
    await waitFor('the other replica to find the lease taken, twice more', async () => (await metric(other, 'drover_autoscaler_evaluations_total', 'result="lease_busy"')) >= busy + 2, 20_000);
    assert.equal(salad.changes(g.name).length, 1, 'only the holder has called SaladCloud to change the group');

    await holder.stop('SIGKILL');
    held.release();
    await waitFor('the other replica to start the group', () => salad.changes(g.name).some((r) => r.path.endsWith('/start') && r.status === 202), 20_000);

    const changes = salad.changes(g.name);
    assert.deepEqual(
      changes.map((r) => `${r.method} ${r.path.slice(r.path.lastIndexOf('/'))} ${r.body}`),
      [`PATCH /${g.name} {"replicas":4}`, 'POST /start '],
      'the replicas were asked for once (by the holder, before it died) and the start once (by the other, which read the group afresh)',
    );
    assert.ok(String(changes[1]!.headers['user-agent']).includes(`:${other.proc.pid})`));
    assert.equal(salad.group(g.name)?.replicas, 4);

    await waitFor('the decision to be recorded', async () => (await via(other).scalingDecisions(g.id)).decisions[0]?.outcome === 'applied');
    const [latest, interrupted] = (await via(other).scalingDecisions(g.id)).decisions;
    assert.deepEqual([latest?.action, latest?.outcome, latest?.from, latest?.to], ['start', 'applied', 0, 4]);
    assert.match(latest!.coordinator, new RegExp(`:${other.proc.pid}$`));
    assert.deepEqual([interrupted?.action, interrupted?.outcome], ['start', 'interrupted']);
    assert.match(interrupted!.coordinator, new RegExp(`:${holder.proc.pid}$`));

    // More work for the group now finds it at the size wanted: nothing more is asked.
    const gets = salad.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/containers/${g.name}`)).length;
    await via(other).createJobs([{ command: 'true', container_group_id: g.id }]);
    await waitFor('the next evaluation', () => salad.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/containers/${g.name}`)).length > gets);
    await waitFor('it to be done', async () => (await via(other).getScalingRule(g.id)).evaluated !== latest?.at);
    assert.equal(salad.changes(g.name).length, 2);
  });

  test('a coordinator on SQLite killed with kill -9 mid-decision and started again finishes the decision without doing anything twice', async () => {
    const db = await freshDatabase('sqlite');
    dbs.push(db);
    const adminKey = `admin-${randomBytes(12).toString('hex')}`;
    const args = saladArgs(salad, ['--autoscale-lease', '2', '--autoscale-interval', '600']);
    const first = await spawnServer({ database: db.database, adminKey, ...args });
    procs.push(first);
    const admin = new DroverClient({ url: first.url, key: adminKey, retries: 0 });
    const user = await admin.createUser('restarted');
    const { token } = await admin.createToken(user.id);
    const client = new DroverClient({ url: first.url, key: token, retries: 0 });
    const g = salad.addGroup('restart-group');
    await client.createScalingRule({ container_group_id: g.id, container_group_name: g.name, max_replicas: 4 });
    await waitFor('the rule to be evaluated', async () => (await client.getScalingRule(g.id)).evaluated !== null);

    const held = salad.hold((r) => r.method === 'PATCH' && r.path.endsWith(`/containers/${g.name}`));
    await client.createJobs(Array.from({ length: 10 }, () => ({ command: 'true', container_group_id: g.id })));
    await waitFor('the coordinator to ask for the replicas', () => held.arrived.length === 1);
    await first.stop('SIGKILL');
    held.release();

    // Started again on the same file: its lease lapses, the new process takes the group over.
    const again = await spawnServer({ database: db.database, adminKey, ...args });
    procs.push(again);
    await waitFor('the group to be started', () => salad.changes(g.name).some((r) => r.path.endsWith('/start') && r.status === 202), 20_000);
    assert.deepEqual(
      salad.changes(g.name).map((r) => `${r.method} ${r.path.slice(r.path.lastIndexOf('/'))} ${r.body}`),
      [`PATCH /${g.name} {"replicas":4}`, 'POST /start '],
    );
    const c2 = new DroverClient({ url: again.url, key: token, retries: 0 });
    await waitFor('the decision to be recorded', async () => (await c2.scalingDecisions(g.id)).decisions[0]?.outcome === 'applied');
    const [latest, interrupted] = (await c2.scalingDecisions(g.id)).decisions;
    assert.deepEqual([latest?.action, latest?.trigger, latest?.from, latest?.to], ['start', 'start', 0, 4]);
    assert.match(latest!.coordinator, new RegExp(`:${again.proc.pid}$`));
    assert.deepEqual([interrupted?.outcome, interrupted?.coordinator.endsWith(`:${first.proc.pid}`)], ['interrupted', true]);
  });

  test("replicas share the periodic look at a group: one of them reads it each interval, the others skip without calling SaladCloud", async () => {
    const db = await freshDatabase('postgres');
    dbs.push(db);
    const adminKey = `admin-${randomBytes(12).toString('hex')}`;
    const args = saladArgs(salad, ['--autoscale-interval', '1']);
    const pair = await Promise.all([spawnServer({ database: db.database, adminKey, ...args }), spawnServer({ database: db.database, adminKey, ...args })]);
    procs.push(...pair);
    const admin = new DroverClient({ url: pair[0].url, key: adminKey, retries: 0 });
    const user = await admin.createUser('periodic');
    const client = new DroverClient({ url: pair[0].url, key: (await admin.createToken(user.id)).token, retries: 0 });
    const g = salad.addGroup('shared-look');
    await client.createScalingRule({ container_group_id: g.id, container_group_name: g.name, max_replicas: 2 });
    const total = async (result: string) => (await Promise.all(pair.map((p) => metric(p, 'drover_autoscaler_evaluations_total', `result="${result}"`)))).reduce((a, b) => a + b, 0);
    const gets = () => salad.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/containers/${g.name}`)).length;
    // both have looked once (the rule, then their first periodic look)
    await waitFor('both replicas to know the rule', async () => (await total('decided')) + (await total('skipped')) >= 3, 20_000);
    const [skipped0, decided0, gets0] = [await total('skipped'), await total('decided'), gets()];
    await waitFor('four skipped looks', async () => (await total('skipped')) >= skipped0 + 4, 30_000);
    const [decided1, gets1] = [await total('decided'), gets()];
    assert.ok(gets1 - gets0 <= decided1 - decided0 + 1, `SaladCloud was read only by the looks that were made (${gets1 - gets0} GETs, ${decided1 - decided0} looks made)`);
    assert.deepEqual(salad.changes(g.name), []);
  });

  test('the SaladCloud key appears in no line a coordinator writes, whatever SaladCloud answers', async () => {
    const db = await freshDatabase('sqlite');
    dbs.push(db);
    const adminKey = `admin-${randomBytes(12).toString('hex')}`;
    const srv = await spawnServer({ database: db.database, adminKey, logLevel: 'debug', ...saladArgs(salad, ['--autoscale-interval', '600']) });
    procs.push(srv);
    const admin = new DroverClient({ url: srv.url, key: adminKey, retries: 0 });
    const user = await admin.createUser('secretive');
    const client = new DroverClient({ url: srv.url, key: (await admin.createToken(user.id)).token, retries: 0 });

    const g = salad.addGroup('leaky-group');
    const mine = (r: { path: string }) => r.path.includes('/containers/leaky-group');
    salad.fail(429, { retryAfter: '0', match: mine });
    salad.fail(500, { count: 2, match: (r) => mine(r) && r.method === 'PATCH' });
    await client.createScalingRule({ container_group_id: g.id, container_group_name: g.name, max_replicas: 2 });
    await client.createJobs([{ command: 'true', container_group_id: g.id }]);
    await waitFor('the start', () => salad.changes(g.name).some((r) => r.path.endsWith('/start') && r.status === 202), 20_000);
    salad.removeGroup(g.name);
    await client.createJobs([{ command: 'true', container_group_id: g.id }]);
    await waitFor('the rule to be disabled', async () => !(await client.getScalingRule(g.id)).enabled, 20_000);
    await srv.stop('SIGTERM');

    const out = srv.output();
    assert.match(out, /SaladCloud call failed; retrying/, 'the retries were logged');
    assert.match(out, /scaling rule disabled/, 'the 404 was logged');
    assert.ok(!out.includes(salad.apiKey), 'the key is in no log line');
    assert.ok(salad.requests.filter(mine).every((r) => r.headers['salad-api-key'] === salad.apiKey), 'it was sent, in its header');
  });
});
