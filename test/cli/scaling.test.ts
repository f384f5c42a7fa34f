// `drover scaling set | ls | show | rm` of the real built CLI against a real coordinator (SQLite),
// every effect checked through the SDK; errors one line, usage errors exit 2.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ScalingRule } from '@drover/protocol';
import { startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { drover, tmp } from './run.js';

function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  return lines[0]!;
}

describe('drover scaling commands', () => {
  let server: TestServer;
  let u: TestUser;
  const conn = () => ['--api-url', server.url, '--api-key', u.token];

  before(async () => {
    server = await startTestServer('sqlite', { autoscaling: { intervalMs: 60_000, debounceMs: 50 } });
    u = await server.user();
  });
  after(() => server?.close());

  it('set makes a rule with the flags given and the defaults; set again changes only what it names', async () => {
    const made = await drover(['scaling', 'set', 'cli-group', '--max', '4', '--idle-threshold', '30', ...conn()]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /container group\s+cli-group/);
    assert.match(made.stdout, /replicas\s+0 to 4/);
    assert.match(made.stdout, /idle threshold\s+30s/);
    const rule = await u.client.getScalingRule('cli-group');
    assert.deepEqual([rule.min_replicas, rule.max_replicas, rule.idle_threshold_seconds, rule.provider], [0, 4, 30, 'none']);

    const changed = await drover(['scaling', 'set', 'cli-group', '--min', '1', '--cooldown', '60', '--json', ...conn()]);
    assert.equal(changed.code, 0, changed.stderr);
    const doc = JSON.parse(changed.stdout) as ScalingRule;
    assert.deepEqual([doc.min_replicas, doc.max_replicas, doc.idle_threshold_seconds, doc.cooldown_seconds], [1, 4, 30, 60]);

    const paused = await drover(['scaling', 'set', 'cli-group', '--disable', ...conn()]);
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /enabled\s+no \(paused\)/);
    assert.equal((await u.client.getScalingRule('cli-group')).enabled, false);
    await drover(['scaling', 'set', 'cli-group', '--enable', ...conn()]);
    assert.equal((await u.client.getScalingRule('cli-group')).enabled, true);
  });

  it('set without a group uses the profile\'s container group', async () => {
    const cwd = tmp();
    mkdirSync(join(cwd, '.drover'));
    writeFileSync(join(cwd, '.drover', 'profile.json'), JSON.stringify({ api_url: server.url, api_key: u.token, container_group_id: 'profile-group' }));
    const r = await drover(['scaling', 'set', '--max', '2'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await u.client.getScalingRule('profile-group')).max_replicas, 2);
  });

  it('ls lists the rules with their replicas and last decision; --json gives the rule documents', async () => {
    await u.client.createScalingRule({ container_group_id: 'ls-group', max_replicas: 3 });
    await waitFor('the first decision', async () => (await u.client.scalingDecisions('ls-group')).decisions.length > 0);
    const r = await drover(['scaling', 'ls', ...conn()]);
    assert.equal(r.code, 0, r.stderr);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    assert.match(header!, /^GROUP\s+PROVIDER\s+MIN\s+MAX\s+IDLE\s+REPLICAS\s+STATUS\s+LAST DECISION$/);
    const row = rows.find((l) => l.startsWith('ls-group'));
    assert.ok(row, r.stdout);
    assert.match(row, /^ls-group\s+none\s+0\s+3\s+300s\s+0\s+stopped\s+none 0→0 unchanged \d+s ago$/);
    const json = JSON.parse((await drover(['scaling', 'ls', '--json', ...conn()])).stdout) as (ScalingRule & { last_decision: unknown })[];
    assert.ok(json.some((x) => x.container_group_id === 'ls-group' && x.last_decision !== null));
  });

  it('show prints the rule and its decisions, newest first', async () => {
    await u.client.createScalingRule({ container_group_id: 'show-group', max_replicas: 2 });
    await waitFor('the first decision', async () => (await u.client.scalingDecisions('show-group')).decisions.length > 0);
    await u.client.createJobs([1, 2, 3].map(() => ({ command: 'true', container_group_id: 'show-group' })));
    await waitFor('the scale-up decision', async () => (await u.client.scalingDecisions('show-group')).decisions.some((d) => d.action === 'start' && d.outcome === 'applied'));
    const r = await drover(['scaling', 'show', 'show-group', ...conn()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /now\s+2 replicas, running/);
    const table = r.stdout.slice(r.stdout.indexOf('AT '));
    const [header, first] = table.split('\n');
    assert.match(header!, /^AT\s+TRIGGER\s+JOBS P\/R\/E\s+WANT\s+FROM\s+TO\s+ACTION\s+OUTCOME\s+WHY$/);
    assert.match(first!, /work\s+3\/0\/0\s+2\s+0\s+2\s+start\s+applied\s+set 2 replicas and start the group/);
    const json = JSON.parse((await drover(['scaling', 'show', 'show-group', '--json', '--decisions', '1', ...conn()])).stdout) as { rule: ScalingRule; decisions: unknown[] };
    assert.equal(json.rule.container_group_id, 'show-group');
    assert.equal(json.decisions.length, 1);
  });

  it('rm deletes a rule; a group with none is a one-line error, exit 1', async () => {
    await u.client.createScalingRule({ container_group_id: 'rm-group' });
    const r = await drover(['scaling', 'rm', 'rm-group', ...conn()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted the scaling rule of container group rm-group/);
    assert.equal((await u.client.listScalingRules()).rules.some((x) => x.container_group_id === 'rm-group'), false);
    const again = await drover(['scaling', 'rm', 'rm-group', ...conn()]);
    assert.equal(again.code, 1);
    assert.equal(oneLine(again.stderr), 'drover scaling rm: container group rm-group has no scaling rule (drover scaling set rm-group --max N makes one)');
    const show = await drover(['scaling', 'show', 'rm-group', ...conn()]);
    assert.equal(show.code, 1);
    oneLine(show.stderr);
  });

  it('bad flags are usage errors (exit 2, one line naming the flag) and change nothing', async () => {
    await u.client.createScalingRule({ container_group_id: 'strict-group', min_replicas: 1, max_replicas: 4 });
    await waitFor('the first decision', async () => (await u.client.getScalingRule('strict-group')).evaluated !== null);
    const before = await u.client.getScalingRule('strict-group');
    const cases: [string[], RegExp][] = [
      [['scaling', 'set', 'strict-group', '--max', 'many'], /--max must be a whole number from 0 to 500/],
      [['scaling', 'set', 'strict-group', '--idle-threshold', '3601'], /--idle-threshold must be a whole number from 0 to 3600/],
      [['scaling', 'set', 'strict-group', '--min', '5', '--max', '4'], /--min \(5\) must not be greater than --max \(4\)/],
      [['scaling', 'set', 'strict-group', '--enable', '--disable'], /--enable and --disable cannot go together/],
      [['scaling', 'set', 'strict-group', '--provider', 'aws'], /--provider.*Allowed choices are saladcloud, local, none/],
      // checked by the coordinator, named by the CLI as the flag
      [['scaling', 'set', 'strict-group', '--min', '5'], /--min \(5\) must not be greater than the rule's max_replicas \(--max\) \(4\) \(rejected by the coordinator\)/],
      [['scaling', 'set', 'strict-group', '--provider', 'saladcloud'], /--provider saladcloud: this coordinator has no SaladCloud API key/],
      [['scaling', 'set', 'strict-group'], /has a rule already: say what to change/],
      [['scaling', 'rm'], /missing required argument 'group'/],
    ];
    for (const [args, message] of cases) {
      const r = await drover([...args, ...conn()]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), message);
    }
    const noGroup = await drover(['scaling', 'set', '--max', '2', ...conn()], { cwd: tmp() });
    assert.equal(noGroup.code, 2);
    assert.match(oneLine(noGroup.stderr), /name the container group \(the profile names none\)/);
    assert.deepEqual(await u.client.getScalingRule('strict-group'), before);
  });
});
