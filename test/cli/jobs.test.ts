// The job and admin commands of the real built CLI against a real coordinator (SQLite; a few
// against PostgreSQL at the end): every command's real effect checked through the SDK.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Job, JobDefinition } from '@drover/protocol';
import { startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { drover, droverSpawn, ids, tmp } from './run.js';

const machine = (group: string, id = 'm-1') => ({ machine_id: id, container_group_id: group });

function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  return lines[0]!;
}

async function allJobs(user: TestUser): Promise<Job[]> {
  const out: Job[] = [];
  for await (const j of user.client.iterateJobs()) out.push(j);
  return out;
}

describe('drover job commands (sqlite)', () => {
  let server: TestServer;
  const conn = (u: TestUser) => ['--api-url', server.url, '--api-key', u.token];

  before(async () => {
    server = await startTestServer('sqlite');
  });
  after(async () => {
    await server.close();
  });

  it('submit --count N queues N jobs in one batch with {i} templated, and appends their ids to the history file', async () => {
    const u = await server.user();
    const cwd = tmp();
    const args = [
      'submit', ...conn(u),
      '--group', 'g-count',
      '--command', 'python',
      '--arg', 'train.py', '--arg', '--shard={i}',
      '--env', 'OUT=runs/{i}', '--env', 'MODE=a=b',
      '--sync-before', 'bucket=data,prefix=in/{i}/,local_path=in',
      '--sync-during', 'bucket=data,prefix=ck/{i}/,local_path=ck,pattern=ckpt-*',
      '--sync-after', 'bucket=data,prefix=out/{i}/,local_path=out/{i}',
      '--heartbeat-interval', '7', '--max-failures', '5', '--webhook', 'https://hooks.example.com/x',
      '--count', '3',
    ];
    const r = await drover(args, { cwd });
    assert.equal(r.code, 0, r.stderr);
    const queued = ids(r.stdout);
    assert.equal(queued.length, 3);
    assert.match(r.stderr, /queued 3 jobs for container group g-count; ids appended to job_history\.txt/);
    assert.deepEqual(readFileSync(join(cwd, 'job_history.txt'), 'utf8').trim().split('\n'), queued);
    for (const [i, id] of queued.entries()) {
      const j = await u.client.getJob(id);
      assert.equal(j.command, 'python');
      assert.deepEqual(j.arguments, ['train.py', `--shard=${i}`]);
      assert.deepEqual(j.environment, { OUT: `runs/${i}`, MODE: 'a=b' });
      assert.equal(j.container_group_id, 'g-count');
      assert.equal(j.heartbeat_interval, 7);
      assert.equal(j.max_failures, 5);
      assert.equal(j.webhook, 'https://hooks.example.com/x');
      assert.deepEqual(j.sync, {
        before: [{ bucket: 'data', prefix: `in/${i}/`, local_path: 'in', direction: 'download' }],
        during: [{ bucket: 'data', prefix: `ck/${i}/`, local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: 'data', prefix: `out/${i}/`, local_path: `out/${i}`, direction: 'upload' }],
      });
    }
    // a second run appends, and --first shifts {i}; --json prints the job documents
    const again = await drover(['submit', ...conn(u), '-g', 'g-count', '-c', 'echo', '-a', 'shard-{i}', '--count', '2', '--first', '10', '--json'], { cwd });
    assert.equal(again.code, 0, again.stderr);
    const docs = JSON.parse(again.stdout) as Job[];
    assert.deepEqual(docs.map((d) => d.arguments), [['shard-10'], ['shard-11']]);
    assert.deepEqual(readFileSync(join(cwd, 'job_history.txt'), 'utf8').trim().split('\n'), [...queued, ...docs.map((d) => d.id)]);
    assert.equal((await allJobs(u)).length, 5);
  });

  it('submit takes a YAML or JSON job file, flags override its fields, and without --count {i} is sent as it is', async () => {
    const u = await server.user();
    const cwd = tmp();
    writeFileSync(
      join(cwd, 'job.yaml'),
      [
        'command: node',
        'arguments: [app.js, "--from-file"]',
        'container_group_id: g-file',
        'environment:',
        '  SIZE: "100"',
        '  KEEP: "{i}"',
        'max_failures: 2',
        'heartbeat_interval: 15',
        'sync:',
        '  after:',
        '    - bucket: results',
        '      prefix: out/',
        '      local_path: out',
        '      direction: upload',
      ].join('\n'),
    );
    const r = await drover(['submit', 'job.yaml', ...conn(u), '--max-failures', '9', '--env', 'SIZE=200', '--env', 'EXTRA=1', '--history', 'mine.txt'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const [id] = ids(r.stdout);
    const j = await u.client.getJob(id!);
    assert.equal(j.command, 'node');
    assert.deepEqual(j.arguments, ['app.js', '--from-file']);
    assert.equal(j.container_group_id, 'g-file');
    assert.equal(j.max_failures, 9, 'the flag wins over the file');
    assert.equal(j.heartbeat_interval, 15, 'the file value stays when no flag is given');
    assert.deepEqual(j.environment, { SIZE: '200', KEEP: '{i}', EXTRA: '1' });
    assert.deepEqual(j.sync?.after, [{ bucket: 'results', prefix: 'out/', local_path: 'out', direction: 'upload' }]);
    assert.equal(readFileSync(join(cwd, 'mine.txt'), 'utf8'), `${id}\n`);
    assert.equal(existsSync(join(cwd, 'job_history.txt')), false);

    // a JSON file holding a list: one batch; --arg replaces the file's arguments, --no-sync sends {}
    writeFileSync(join(cwd, 'jobs.json'), JSON.stringify([{ command: 'a', arguments: ['x'] }, { command: 'b' }]));
    const list = await drover(['submit', 'jobs.json', ...conn(u), '-g', 'g-file', '--arg', 'y', '--no-sync', '--json', '--no-history'], { cwd });
    assert.equal(list.code, 0, list.stderr);
    const docs = JSON.parse(list.stdout) as Job[];
    assert.deepEqual(docs.map((d) => [d.command, d.arguments, d.sync]), [['a', ['y'], {}], ['b', ['y'], {}]]);
    assert.equal(existsSync(join(cwd, 'job_history.txt')), false, '--no-history records nothing');
  });

  it('a bad job file or field is one line naming the file and field, exit non-zero, and nothing is submitted', async () => {
    const u = await server.user();
    const cwd = tmp();
    const cases: { file: string; text: string; expect: RegExp }[] = [
      { file: 'broken.yaml', text: 'command: python\n  arguments: [\n', expect: /^drover submit: broken\.yaml: not valid YAML: / },
      { file: 'type.yaml', text: 'command: python\nmax_failures: "3"\n', expect: /^drover submit: type\.yaml: field max_failures must be a whole number, got the string "3"$/ },
      { file: 'env.yaml', text: 'command: python\nenvironment:\n  SIZE: 100\n', expect: /^drover submit: env\.yaml: field environment\.SIZE must be a string, got number 100/ },
      { file: 'unknown.json', text: '{"command": "python", "max_failure": 3}', expect: /^drover submit: unknown\.json: field max_failure is not a known field$/ },
      { file: 'sync.yaml', text: 'command: x\nsync:\n  during:\n    - {bucket: b, prefix: p, local_path: d, direction: sideways}\n', expect: /^drover submit: sync\.yaml: field sync\.during\[0\]\.direction must be "upload"$/ },
      { file: 'trunc.json', text: '{"command": ', expect: /^drover submit: trunc\.json: not valid JSON: / },
    ];
    for (const c of cases) {
      writeFileSync(join(cwd, c.file), c.text);
      const r = await drover(['submit', c.file, ...conn(u), '-g', 'g-bad', '--count', '2'], { cwd });
      assert.equal(r.code, 1, `${c.file}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), c.expect);
      assert.equal(r.stdout, '');
    }
    // usage errors (commander and ours) exit 2
    const flag = await drover(['submit', ...conn(u), '-g', 'g-bad', '-c', 'x', '--max-failures', '0'], { cwd });
    assert.equal(flag.code, 2);
    assert.match(oneLine(flag.stderr), /^drover submit: .*--max-failures must be a whole number from 1 to 1000$/);
    const unknown = await drover(['submit', ...conn(u), '-g', 'g-bad', '-c', 'x', '--bogus'], { cwd });
    assert.equal(unknown.code, 2);
    assert.equal(oneLine(unknown.stderr), "drover submit: unknown option '--bogus'");
    const noCommand = await drover(['submit', ...conn(u), '-g', 'g-bad'], { cwd });
    assert.equal(noCommand.code, 2);
    assert.match(oneLine(noCommand.stderr), /no command: pass --command/);
    const syncSpec = await drover(['submit', ...conn(u), '-g', 'g-bad', '-c', 'x', '--sync-after', 'bucket=b,dir=out'], { cwd });
    assert.equal(syncSpec.code, 2);
    assert.match(oneLine(syncSpec.stderr), /--sync-after "bucket=b,dir=out": expected bucket=B,prefix=P,local_path=DIR/);
    // a templated value that breaks the schema in one copy only: the whole batch is refused locally
    const long = await drover(['submit', ...conn(u), '-g', 'g-bad', '-c', 'x', '--webhook', 'ftp://x', '--count', '2'], { cwd });
    assert.equal(long.code, 1);
    assert.match(oneLine(long.stderr), /^drover submit: job 0: field webhook must be an http:\/\/ or https:\/\/ URL$/);

    assert.equal((await allJobs(u)).length, 0, 'nothing was submitted');
    assert.equal(existsSync(join(cwd, 'job_history.txt')), false, 'no history written');
  });

  it("the coordinator's own 400 comes out as one line naming the field (and the job of a batch)", async () => {
    // This coordinator refuses webhooks to private addresses: a check only the server makes.
    const strict = await startTestServer('sqlite', { allowPrivateWebhooks: false });
    try {
      const u = await strict.user();
      const cwd = tmp();
      const base = ['submit', '--api-url', strict.url, '--api-key', u.token, '-g', 'g', '-c', 'x', '--webhook', 'http://127.0.0.1:9/hook'];
      const one = await drover(base, { cwd });
      assert.equal(one.code, 1);
      assert.match(oneLine(one.stderr), /^drover submit: field webhook .*\(rejected by the coordinator\)$/);
      const batch = await drover([...base, '--count', '3', '--first', '4'], { cwd });
      assert.equal(batch.code, 1);
      assert.match(oneLine(batch.stderr), /^drover submit: job 4: field webhook .*\(rejected by the coordinator\)$/);
      assert.equal((await allJobs(u)).length, 0);
      assert.equal(existsSync(join(cwd, 'job_history.txt')), false);
    } finally {
      await strict.close();
    }
  });

  it('uses the profile file when no flags or environment are given, KELPIE_API_URL/KELPIE_API_KEY otherwise; flags win', async () => {
    const u = await server.user();
    const cwd = tmp();
    mkdirSync(join(cwd, '.drover'));
    writeFileSync(join(cwd, '.drover/profile.json'), JSON.stringify({ api_url: server.url, api_key: u.token, container_group_id: 'g-profile' }));
    const r = await drover(['submit', '-c', 'echo', '-a', 'hi'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const [id] = ids(r.stdout);
    assert.equal((await u.client.getJob(id!)).container_group_id, 'g-profile', "the profile's container group is the default");

    // environment variables, no profile in this folder
    const other = await server.user();
    const envCwd = tmp();
    const env = { KELPIE_API_URL: server.url, KELPIE_API_KEY: other.token };
    const viaEnv = await drover(['submit', '-c', 'echo', '-g', 'g-env', '--json'], { cwd: envCwd, env });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const job = JSON.parse(viaEnv.stdout) as Job;
    assert.equal(job.user_id, other.id);
    // a wrong key in the environment, the right one as a flag: the flag wins
    const flagWins = await drover(['status', job.id, '--api-key', other.token], { cwd: envCwd, env: { ...env, KELPIE_API_KEY: 'wrong' } });
    assert.equal(flagWins.code, 0, flagWins.stderr);
    assert.match(flagWins.stdout, new RegExp(`${job.id}\\s+pending`));
    const wrong = await drover(['status', job.id], { cwd: envCwd, env: { ...env, KELPIE_API_KEY: 'wrong' } });
    assert.equal(wrong.code, 1);
    assert.match(oneLine(wrong.stderr), /^drover status: unknown API key/);
    // nothing at all: a clear line
    const none = await drover(['jobs', 'list'], { cwd: envCwd });
    assert.equal(none.code, 1);
    assert.match(oneLine(none.stderr), /^drover jobs list: no coordinator URL: pass --api-url, set KELPIE_API_URL/);
  });

  it('status shows id, status, attempt, failures, machine, heartbeat age and progress, from ids or the history file', async () => {
    const u = await server.user();
    const cwd = tmp();
    const sub = await drover(['submit', ...conn(u), '-g', 'g-status', '-c', 'x', '--count', '2', '--max-failures', '4'], { cwd });
    assert.equal(sub.code, 0, sub.stderr);
    const [a, b] = ids(sub.stdout) as [string, string];
    const claimed = await u.client.claimWork(machine('g-status', 'node-7'));
    assert.equal(claimed?.id, a, 'oldest first');
    await u.client.heartbeat(a, machine('g-status', 'node-7'), { fraction: 0.5, message: 'halfway there' });

    const r = await drover(['status', ...conn(u)], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^ID\s+STATUS\s+ATTEMPT\s+FAILURES\s+MACHINE\s+HEARTBEAT\s+PROGRESS$/);
    assert.match(lines.find((l) => l.startsWith(a))!, new RegExp(`^${a}\\s+running\\s+1\\s+0/4\\s+node-7\\s+\\d+s ago\\s+50% halfway there$`));
    assert.match(lines.find((l) => l.startsWith(b))!, new RegExp(`^${b}\\s+pending\\s+0\\s+0/4\\s+-\\s+-\\s+-$`));
    assert.equal(lines.at(-1), '2 jobs: 1 pending, 1 running');

    // A running job that never beat says so; a finished one shows its end and its last progress, not a heartbeat age.
    const other = await u.client.claimWork(machine('g-status', 'node-8'));
    assert.equal(other?.id, b);
    await u.client.completeJob(a, machine('g-status', 'node-7'), { fraction: 1, message: 'all done' });
    const later = (await drover(['status', ...conn(u)], { cwd })).stdout.trimEnd().split('\n');
    assert.match(later.find((l) => l.startsWith(a))!, new RegExp(`^${a}\\s+completed\\s+1\\s+0/4\\s+node-7\\s+completed \\d+s ago\\s+100% all done$`));
    assert.match(later.find((l) => l.startsWith(b))!, new RegExp(`^${b}\\s+running\\s+1\\s+0/4\\s+node-8\\s+none yet\\s+-$`));
    await u.client.cancelJob(b);

    const json = await drover(['status', b, '--json', ...conn(u)], { cwd });
    assert.equal(json.code, 0, json.stderr);
    const docs = JSON.parse(json.stdout) as Job[];
    assert.deepEqual(docs.map((d) => [d.id, d.status]), [[b, 'canceled']]);

    const missing = '00000000-0000-4000-8000-000000000000';
    const gone = await drover(['status', a, missing, ...conn(u)], { cwd });
    assert.equal(gone.code, 1);
    assert.match(gone.stdout, new RegExp(`${missing}\\s+not found`));
    assert.equal(oneLine(gone.stderr), `drover status: job ${missing} not found`);

    const empty = tmp();
    const noIds = await drover(['status', ...conn(u)], { cwd: empty });
    assert.equal(noIds.code, 2);
    assert.match(oneLine(noIds.stderr), /^drover status: no job ids: pass ids, or --history FILE/);
    const noFile = await drover(['status', '--history', 'nope.txt', ...conn(u)], { cwd: empty });
    assert.equal(noFile.code, 2);
    assert.match(oneLine(noFile.stderr), /history file nope\.txt does not exist/);
    const badId = await drover(['status', 'not-an-id', ...conn(u)], { cwd: empty });
    assert.equal(badId.code, 2);
    assert.equal(oneLine(badId.stderr), 'drover status: "not-an-id" is not a job id (a UUID)');
  });

  it('status --watch refreshes until every job is finished, then exits 0', async () => {
    const u = await server.user();
    const cwd = tmp();
    const sub = await drover(['submit', ...conn(u), '-g', 'g-watch', '-c', 'x', '--count', '3'], { cwd });
    assert.equal(sub.code, 0, sub.stderr);
    const queued = ids(sub.stdout);
    // the id right after --watch is taken as an id, not as the interval
    const w = droverSpawn(['status', '--watch', queued[0]!, queued[1]!, queued[2]!, ...conn(u)], { cwd });
    const w2 = droverSpawn(['status', '--watch', '0.2', ...conn(u)], { cwd });
    try {
      await waitFor('a first table', () => /3 jobs: 3 pending/.test(w2.stdout()));
      // finish them as a worker would: claim, then complete (one canceled, one failed for good)
      const m = machine('g-watch');
      const j1 = await u.client.claimWork(m);
      await u.client.completeJob(j1!.id, m);
      await u.client.cancelJob(queued[1]!);
      await waitFor('a later round', () => /1 completed/.test(w2.stdout()));
      const j3 = await u.client.claimWork(m);
      assert.equal(j3?.id, queued[2]);
      await u.client.completeJob(j3!.id, m);
      assert.equal(await w2.exited, 0, w2.stderr());
      const rounds = w2.stdout().split('\n').filter((l) => /^ID\s+STATUS/.test(l)).length;
      assert.ok(rounds >= 2, `a new table each round on a non-TTY (${rounds})`);
      assert.equal(w2.stdout().trimEnd().split('\n').at(-1), '3 jobs: 2 completed, 1 canceled');
      assert.equal(await w.exited, 0, w.stderr());
      assert.match(w.stdout(), new RegExp(`${queued[1]}\\s+canceled`));
    } finally {
      w.proc.kill();
      w2.proc.kill();
    }
  });

  it('jobs list filters by status and group, honours --limit, and --all walks every page', async () => {
    const u = await server.user();
    const defs = (group: string, n: number): JobDefinition[] => Array.from({ length: n }, (_, i) => ({ command: 'x', arguments: [String(i)], container_group_id: group }));
    await u.client.createJobs(defs('g-a', 1000));
    await u.client.createJobs(defs('g-b', 5));
    const m = machine('g-b');
    const running = await u.client.claimWork(m);

    const all = await drover(['jobs', 'list', '--all', '--json', ...conn(u)]);
    assert.equal(all.code, 0, all.stderr);
    const every = JSON.parse(all.stdout) as Job[];
    assert.equal(every.length, 1005);
    assert.equal(new Set(every.map((j) => j.id)).size, 1005);

    const limited = await drover(['jobs', 'list', '--limit', '3', ...conn(u)]);
    assert.equal(limited.code, 0, limited.stderr);
    const rows = limited.stdout.trimEnd().split('\n');
    assert.match(rows[0]!, /^ID\s+STATUS\s+GROUP\s+ATTEMPT\s+FAILURES\s+MACHINE\s+CREATED\s+PROGRESS\s+COMMAND$/);
    assert.equal(rows.length, 4);
    assert.match(limited.stderr, /showing the first 3/);

    const byGroup = JSON.parse((await drover(['jobs', 'list', '--group', 'g-b', '--json', ...conn(u)])).stdout) as Job[];
    assert.equal(byGroup.length, 5);
    assert.ok(byGroup.every((j) => j.container_group_id === 'g-b'));
    const byStatus = await drover(['jobs', 'list', '--status', 'running', ...conn(u)]);
    assert.equal(byStatus.code, 0, byStatus.stderr);
    const statusRows = byStatus.stdout.trimEnd().split('\n').slice(1);
    assert.equal(statusRows.length, 1);
    assert.match(statusRows[0]!, new RegExp(`^${running!.id}\\s+running\\s+g-b\\s+1\\s+0/3\\s+m-1\\s`));

    const bad = await drover(['jobs', 'list', '--status', 'done', ...conn(u)]);
    assert.equal(bad.code, 2);
    assert.match(oneLine(bad.stderr), /^drover jobs list: .*Allowed choices are pending, running, completed, canceled, failed/);
  });

  it('jobs get shows one job (--json: its document); an unknown id is a clear 404 line', async () => {
    const u = await server.user();
    const job = await u.client.createJob({
      command: 'python',
      arguments: ['train.py', 'two words'],
      environment: { LR: '0.1' },
      container_group_id: 'g-get',
      sync: { before: [{ bucket: 'data', prefix: 'in/', local_path: 'in', direction: 'download' }] },
    });
    const r = await drover(['jobs', 'get', job.id, ...conn(u)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^id\\s+${job.id}$`, 'm'));
    assert.match(r.stdout, /^status\s+pending$/m);
    assert.match(r.stdout, /^command\s+python train\.py 'two words'$/m);
    assert.match(r.stdout, /^container group\s+g-get$/m);
    assert.match(r.stdout, /^env LR\s+0\.1$/m);
    assert.match(r.stdout, /^sync before\s+data\/in\/ -> in$/m);
    const json = await drover(['jobs', 'get', job.id, '--json', ...conn(u)]);
    assert.deepEqual(JSON.parse(json.stdout), await u.client.getJob(job.id));

    const other = await server.user();
    const notMine = await drover(['jobs', 'get', job.id, ...conn(other)]);
    assert.equal(notMine.code, 1);
    assert.equal(oneLine(notMine.stderr), `drover jobs get: job ${job.id} not found`);
  });

  it('jobs cancel cancels every id given; finished or unknown ones are named and make the exit code 1', async () => {
    const u = await server.user();
    const [a, b, c] = await u.client.createJobs(Array.from({ length: 3 }, () => ({ command: 'x', container_group_id: 'g-cancel' })));
    const r = await drover(['jobs', 'cancel', a!.id, b!.id, ...conn(u)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `canceled ${a!.id}\ncanceled ${b!.id}\n`);
    assert.equal((await u.client.getJob(a!.id)).status, 'canceled');
    assert.equal((await u.client.getJob(b!.id)).status, 'canceled');
    assert.equal((await u.client.getJob(c!.id)).status, 'pending');

    const m = machine('g-cancel');
    await u.client.claimWork(m);
    await u.client.completeJob(c!.id, m);
    const missing = '00000000-0000-4000-8000-000000000001';
    const mixed = await drover(['jobs', 'cancel', c!.id, missing, '--json', ...conn(u)]);
    assert.equal(mixed.code, 1);
    const results = JSON.parse(mixed.stdout) as { id: string; canceled: boolean }[];
    assert.deepEqual(results.map((x) => [x.id, x.canceled]), [[c!.id, false], [missing, false]]);
    assert.match(mixed.stderr, new RegExp(`^drover jobs cancel: job ${c!.id}: job is completed and can no longer be canceled$`, 'm'));
    assert.match(mixed.stderr, new RegExp(`^drover jobs cancel: job ${missing} not found$`, 'm'));
    assert.equal((await u.client.getJob(c!.id)).status, 'completed');
  });

  it("jobs purge --group deletes the group's pending jobs and cancels its running ones; it needs --group or --yes", async () => {
    const u = await server.user();
    const cwd = tmp();
    const inGroup = await u.client.createJobs(Array.from({ length: 3 }, () => ({ command: 'x', container_group_id: 'g-purge' })));
    const elsewhere = await u.client.createJob({ command: 'x', container_group_id: 'g-keep' });
    const m = machine('g-purge');
    const running = await u.client.claimWork(m);

    const refused = await drover(['jobs', 'purge', ...conn(u)], { cwd });
    assert.equal(refused.code, 2);
    assert.match(oneLine(refused.stderr), /^drover jobs purge: name the container group with --group, or pass --yes/);
    assert.equal((await allJobs(u)).length, 4, 'nothing purged');

    const r = await drover(['jobs', 'purge', '--group', 'g-purge', ...conn(u)], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'purged 3 jobs of container group g-purge\n');
    assert.equal((await u.client.getJob(running!.id)).status, 'canceled');
    for (const j of inGroup.filter((x) => x.id !== running!.id)) await assert.rejects(u.client.getJob(j.id), { status: 404 });
    assert.equal((await u.client.getJob(elsewhere.id)).status, 'pending');

    // --yes with no --group: the profile's group
    mkdirSync(join(cwd, '.drover'));
    writeFileSync(join(cwd, '.drover/profile.json'), JSON.stringify({ api_url: server.url, api_key: u.token, container_group_id: 'g-keep' }));
    const viaProfile = await drover(['jobs', 'purge', '--yes', '--json'], { cwd });
    assert.equal(viaProfile.code, 0, viaProfile.stderr);
    assert.deepEqual(JSON.parse(viaProfile.stdout), { container_group_id: 'g-keep', count: 1 });
    await assert.rejects(u.client.getJob(elsewhere.id), { status: 404 });
  });

  it("jobs events lists a job's history", async () => {
    const u = await server.user();
    const job = await u.client.createJob({ command: 'x', container_group_id: 'g-events' });
    const m1 = machine('g-events', 'node-a');
    const m2 = machine('g-events', 'node-b');
    await u.client.claimWork(m1);
    await u.client.failJob(job.id, m1, 'the job process exited with code 3\nsee its log');
    await u.client.claimWork(m2);
    await u.client.completeJob(job.id, m2);
    const r = await drover(['jobs', 'events', job.id, ...conn(u)]);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trimEnd().split('\n').map((l) => l.trimEnd());
    assert.match(rows[0]!, /^AT\s+AGO\s+EVENT\s+ATTEMPT\s+MACHINE\s+REASON$/);
    assert.deepEqual(
      rows.slice(1).map((l) => l.split(/\s+/).slice(3)),
      [
        ['created', '0', '-'], ['claimed', '1', 'node-a'],
        // The reason's newline does not break the table: one row per event.
        ['failed_attempt', '1', 'node-a', 'the', 'job', 'process', 'exited', 'with', 'code', '3', 'see', 'its', 'log'],
        ['claimed', '2', 'node-b'], ['completed', '2', 'node-b'],
      ],
    );
    const json = JSON.parse((await drover(['jobs', 'events', job.id, '--json', ...conn(u)])).stdout) as { type: string; reason?: string }[];
    assert.deepEqual(json.map((e) => e.type), ['created', 'claimed', 'failed_attempt', 'claimed', 'completed']);
    assert.equal(json[2]!.reason, 'the job process exited with code 3\nsee its log');
    const missing = await drover(['jobs', 'events', '00000000-0000-4000-8000-000000000002', ...conn(u)]);
    assert.equal(missing.code, 1);
    assert.equal(oneLine(missing.stderr), 'drover jobs events: job 00000000-0000-4000-8000-000000000002 not found');
  });

  it('users create and tokens create (admin key) make a working account; a user key is refused', async () => {
    const admin = ['--api-url', server.url, '--api-key', server.adminKey];
    const name = `cli-${process.pid}`;
    const r = await drover(['users', 'create', name, '--json', ...admin]);
    assert.equal(r.code, 0, r.stderr);
    const user = JSON.parse(r.stdout) as { id: string; username: string };
    assert.equal(user.username, name);

    const t = await drover(['tokens', 'create', user.id, ...admin]);
    assert.equal(t.code, 0, t.stderr);
    const token = t.stdout.trim();
    assert.match(t.stderr, /shown once/);
    const me = await server.client(token).me();
    assert.deepEqual([me.id, me.username, me.admin], [user.id, name, false]);

    // human output with --token: the id, then a working key, alone on stdout (a script captures them); words on stderr
    const h = await drover(['users', 'create', `${name}-2`, '--token', ...admin]);
    assert.equal(h.code, 0, h.stderr);
    const [id, key, ...rest] = h.stdout.split('\n');
    assert.deepEqual(rest, ['']);
    assert.match(id!, /^[0-9a-f-]{36}$/);
    assert.equal((await server.client(key).me()).id, id);
    assert.match(h.stderr, /created user cli-\d+-2: its id, then its API key/);
    const plain = await drover(['users', 'create', `${name}-3`, ...admin]);
    assert.match(plain.stdout, /^[0-9a-f-]{36}\n$/, 'without --token: the id alone');

    const dup = await drover(['users', 'create', name, ...admin]);
    assert.equal(dup.code, 1);
    assert.match(oneLine(dup.stderr), /^drover users create: field username "cli-\d+" is taken \(rejected by the coordinator\)$/);
    const notAdmin = await drover(['users', 'create', 'intruder', '--api-url', server.url, '--api-key', token]);
    assert.equal(notAdmin.code, 1);
    assert.equal(oneLine(notAdmin.stderr), "drover users create: this needs the admin key; the key given is a user's (HTTP 403)");
    const noUser = await drover(['tokens', 'create', '00000000-0000-4000-8000-000000000003', ...admin]);
    assert.equal(noUser.code, 1);
    assert.equal(oneLine(noUser.stderr), 'drover tokens create: user 00000000-0000-4000-8000-000000000003 not found');
  });
});

describe('drover job commands (postgres)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer('postgres');
  });
  after(async () => {
    await server.close();
  });

  it('submit --count, status --watch and cancel against PostgreSQL', async () => {
    const u = await server.user();
    const cwd = tmp();
    const conn = ['--api-url', server.url, '--api-key', u.token];
    const sub = await drover(['submit', ...conn, '-g', 'g-pg', '-c', 'run', '-e', 'SHARD={i}', '--count', '4'], { cwd });
    assert.equal(sub.code, 0, sub.stderr);
    const queued = ids(sub.stdout);
    assert.deepEqual((await Promise.all(queued.map((id) => u.client.getJob(id)))).map((j) => j.environment.SHARD), ['0', '1', '2', '3']);

    const cancel = await drover(['jobs', 'cancel', queued[3]!, ...conn], { cwd });
    assert.equal(cancel.code, 0, cancel.stderr);
    const w = droverSpawn(['status', '--watch', '0.2', ...conn], { cwd });
    try {
      await waitFor('a first table', () => /4 jobs:/.test(w.stdout()));
      const m = machine('g-pg');
      for (let k = 0; k < 3; k++) {
        const j = await u.client.claimWork(m);
        await u.client.completeJob(j!.id, m);
      }
      assert.equal(await w.exited, 0, w.stderr());
      assert.equal(w.stdout().trimEnd().split('\n').at(-1), '4 jobs: 3 completed, 1 canceled');
    } finally {
      w.proc.kill();
    }
  });

  it('jobs list --all and purge against PostgreSQL', async () => {
    const u = await server.user();
    const conn = ['--api-url', server.url, '--api-key', u.token];
    await u.client.createJobs(Array.from({ length: 5 }, () => ({ command: 'x', container_group_id: 'g-pg2' })));
    const list = JSON.parse((await drover(['jobs', 'list', '--all', '--json', ...conn])).stdout) as Job[];
    assert.equal(list.length, 5);
    const purge = await drover(['jobs', 'purge', '-g', 'g-pg2', ...conn]);
    assert.equal(purge.stdout, 'purged 5 jobs of container group g-pg2\n');
    assert.equal((await allJobs(u)).length, 0);
  });
});
