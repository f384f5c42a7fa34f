// `drover salad …` of the real built CLI against the loopback SaladCloud server (@drover/testing/saladcloud,
// which speaks shared/reference/saladcloud-public-api.yaml and records every request) and, for
// autoscale, a real coordinator whose autoscaler drives the same fake. Each test asserts the exact
// calls sent; the API key and secret environment values never appear in any output.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FAKE_GPU_CLASSES, FAKE_ORG, FAKE_PROJECT, startFakeSaladCloud, type FakeSaladCloud } from '@drover/testing/saladcloud';
import { startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { drover, tmp, type CliResult } from './run.js';

const SECRET = 'aws-secret-value-9f8e7d';

describe('drover salad commands', () => {
  let fake: FakeSaladCloud;
  let server: TestServer;
  let u: TestUser;
  const outputs: CliResult[] = [];
  const base = `/api/public/organizations/${FAKE_ORG}/projects/${FAKE_PROJECT}/containers`;

  /** drover salad … with the key in SALAD_API_KEY and the fake's URL, org and project in the environment. */
  async function salad(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliResult> {
    const r = await drover(['salad', ...args], {
      env: { SALAD_API_KEY: fake.apiKey, SALAD_API_URL: fake.url, SALAD_ORGANIZATION: FAKE_ORG, SALAD_PROJECT: FAKE_PROJECT, ...env },
      ...(cwd ? { cwd } : {}),
    });
    outputs.push(r);
    return r;
  }
  const sent = (from: number) => fake.requests.slice(from);

  before(async () => {
    fake = await startFakeSaladCloud();
    server = await startTestServer('sqlite', {
      autoscaling: { saladcloud: { apiKey: fake.apiKey, baseUrl: fake.url }, intervalMs: 120_000, debounceMs: 50, errorBackoff: { baseMs: 200, maxMs: 1000 } },
    });
    u = await server.user();
  });
  after(async () => {
    // Whatever a command printed, it never printed the SaladCloud key or a secret value.
    for (const r of outputs) {
      assert.ok(!r.stdout.includes(fake.apiKey) && !r.stderr.includes(fake.apiKey), 'the API key is never printed');
      assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), 'a secret environment value is never printed');
    }
    await server?.close();
    await fake?.close();
  });

  it('create sends create_container_group with the body the spec requires: image, resources, replicas, environment, restart policy', async () => {
    const dir = tmp();
    const envFile = join(dir, 'worker.env');
    writeFileSync(envFile, `# storage\nexport AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY="${SECRET}"\n\nDROVER_DATA_ROOT=/app/data\n`);
    const from = fake.requests.length;
    const r = await salad([
      'create', 'train-4090', '--image', 'ghcr.io/acme/train:1', '--gpu-class', 'rtx 4090 (24 gb)', '--cpu', '8', '--memory', '24576', '--storage', '100',
      '--replicas', '0', '--env-file', envFile, '--env', 'MAX_TIME_WITH_NO_WORK_S=600', '--with-coordinator', '--api-url', server.url, '--api-key', u.token,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const calls = sent(from);
    // A GPU class given by name is looked up first; then one create.
    assert.deepEqual(calls.map((c) => `${c.method} ${c.path}`), [`GET /api/public/organizations/${FAKE_ORG}/gpu-classes`, `POST ${base}`]);
    const create = calls[1]!;
    assert.equal(create.status, 201);
    assert.equal(create.headers['content-type'], 'application/json');
    assert.equal(create.headers['salad-api-key'], fake.apiKey);
    assert.deepEqual(JSON.parse(create.body), {
      name: 'train-4090',
      container: {
        image: 'ghcr.io/acme/train:1',
        resources: { cpu: 8, memory: 24576, gpu_classes: [FAKE_GPU_CLASSES[0].id], storage_amount: 100 * 1024 ** 3 },
        environment_variables: {
          AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
          AWS_SECRET_ACCESS_KEY: SECRET,
          DROVER_DATA_ROOT: '/app/data',
          MAX_TIME_WITH_NO_WORK_S: '600',
          KELPIE_API_URL: server.url,
          KELPIE_API_KEY: u.token,
        },
      },
      replicas: 0,
      restart_policy: 'always',
      autostart_policy: false,
    });
    const g = fake.group('train-4090')!;
    assert.equal(g.status, 'stopped');
    assert.match(r.stdout, new RegExp(`id\\s+${g.id}`));
    assert.match(r.stdout, /environment\s+AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, DROVER_DATA_ROOT, MAX_TIME_WITH_NO_WORK_S, KELPIE_API_URL, KELPIE_API_KEY/);
    assert.match(r.stdout, /resources\s+8 vCPU, 24576 MB, 100 GiB disk, GPU RTX 4090 \(24 GB\)/);
    assert.match(r.stdout, new RegExp(`Submit its jobs with --group ${g.id}`));
    assert.ok(!r.stdout.includes(u.token), 'the coordinator key given to the group is not printed');
    // The test coordinator is on loopback: the group was made, with a warning that nodes cannot reach it.
    assert.match(r.stderr, new RegExp(`^drover salad create: warning: KELPIE_API_URL ${server.url} is a loopback address: SaladCloud's nodes will not reach it\n$`));

    // --json shows the document SaladCloud answered, secret values hidden.
    const shown = await salad(['show', 'train-4090', '--json']);
    assert.equal(shown.code, 0, shown.stderr);
    const doc = JSON.parse(shown.stdout) as { group: { id: string; container: { environment_variables: Record<string, string> } } };
    assert.equal(doc.group.id, g.id);
    assert.equal(doc.group.container.environment_variables.AWS_SECRET_ACCESS_KEY, '(hidden)');
    assert.equal(doc.group.container.environment_variables.KELPIE_API_KEY, '(hidden)');
    assert.equal(doc.group.container.environment_variables.DROVER_DATA_ROOT, '/app/data');
  });

  it('create with --start and a restart policy, priority and command sends them; --dry-run sends nothing and hides secret values', async () => {
    let from = fake.requests.length;
    const dry = await salad(['create', 'md-run', '--image', 'acme/gromacs:2024', '--start', '--restart-policy', 'on_failure', '--priority', 'batch', '--command', '/drover-worker', '--command', '--log-level=debug', '-e', `CLOUDFLARE_KEY=${SECRET}`, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(sent(from), [], 'a dry run sends nothing');
    assert.match(dry.stdout, /"CLOUDFLARE_KEY": "\(hidden\)"/);
    assert.match(dry.stdout, /not sent/);

    from = fake.requests.length;
    const r = await salad(['create', 'md-run', '--image', 'acme/gromacs:2024', '--start', '--restart-policy', 'on_failure', '--priority', 'batch', '--command', '/drover-worker', '--command', '--log-level=debug', '--replicas', '3']);
    assert.equal(r.code, 0, r.stderr);
    const [create] = sent(from);
    assert.deepEqual(JSON.parse(create!.body), {
      name: 'md-run',
      container: { image: 'acme/gromacs:2024', resources: { cpu: 4, memory: 16384 }, command: ['/drover-worker', '--log-level=debug'], priority: 'batch' },
      replicas: 3,
      restart_policy: 'on_failure',
      autostart_policy: true,
    });
    await waitFor('the group to run', () => fake.group('md-run')!.status === 'running');
  });

  it('bad input is a usage error naming the flag (exit 2), and nothing is sent', async () => {
    const from = fake.requests.length;
    const cases: [string[], RegExp, Record<string, string>?][] = [
      [['create', 'Bad_Name', '--image', 'x'], /name must be a SaladCloud name/],
      [['create', 'ok-name'], /required option '--image <image>' not specified/],
      [['create', 'ok-name', '--image', 'x', '--cpu', '0'], /--cpu must be a whole number from 1 to 1024/],
      [['create', 'ok-name', '--image', 'x', '--memory', '512'], /--memory must be a whole number from 1024/],
      [['create', 'ok-name', '--image', 'x', '--replicas', '501'], /--replicas must be a whole number from 0 to 500/],
      [['create', 'ok-name', '--image', 'x', '--env', 'NOEQUALS'], /--env: "NOEQUALS" is not NAME=VALUE/],
      [['create', 'ok-name', '--image', 'x', '--env', 'EMPTY='], /--env: EMPTY must have a value of 1 to 1000 characters/],
      [['create', 'ok-name', '--image', 'x', '--restart-policy', 'sometimes'], /--restart-policy.*sometimes.*always, on_failure, never/],
      [['create', 'ok-name', '--image', 'x', '--country', 'USA'], /--country "USA" must be a two-letter country code/],
      [['create', 'ok-name', '--image', 'x'], /no SaladCloud API key: set SALAD_API_KEY or pass --salad-api-key-file/, { SALAD_API_KEY: '' }],
      [['ls'], /name the SaladCloud project: --project NAME or SALAD_PROJECT/, { SALAD_PROJECT: '' }],
      [['instance', 'train-4090', 'not-a-uuid'], /"not-a-uuid" is not an instance id/],
    ];
    for (const [args, message, env] of cases) {
      const r = await salad(args, env);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    // A GPU class name the organization does not have: the list is read, nothing is created.
    const gpu = await salad(['create', 'ok-name', '--image', 'x', '--gpu-class', 'H100']);
    assert.equal(gpu.code, 2);
    assert.match(gpu.stderr, /--gpu-class: no GPU class named "H100" \(drover salad gpu-classes lists them: RTX 4090 \(24 GB\), RTX 3090 \(24 GB\)\)/);
    assert.deepEqual(sent(from).map((c) => `${c.method} ${c.path}`), [`GET /api/public/organizations/${FAKE_ORG}/gpu-classes`]);
    // SaladCloud refuses a second group of the same name: one line, exit 2.
    const dup = await salad(['create', 'md-run', '--image', 'x']);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /^drover salad create: SaladCloud create_container_group: HTTP 409 Conflict: container group md-run already exists\n$/);
  });

  it('the API key may come from a file; a wrong key is one line saying so', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'salad.key'), `${fake.apiKey}\n`);
    const ok = await salad(['ls', '--salad-api-key-file', join(dir, 'salad.key')], { SALAD_API_KEY: '' });
    assert.equal(ok.code, 0, ok.stderr);
    writeFileSync(join(dir, 'wrong.key'), 'wrong-key\n');
    const wrong = await salad(['ls', '--salad-api-key-file', join(dir, 'wrong.key')]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /HTTP 401 Unauthorized.*is the API key right/);
    assert.ok(!wrong.stderr.includes('wrong-key'));
  });

  it('ls lists the groups; instances and instance show their state; start and stop send those calls', async () => {
    const ls = await salad(['ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NAME\s+ID\s+STATUS\s+REPLICAS\s+RUNNING\s+IMAGE/);
    assert.match(ls.stdout, new RegExp(`train-4090\\s+${fake.group('train-4090')!.id}\\s+stopped\\s+0\\s+0\\s+ghcr.io/acme/train:1`));
    assert.match(ls.stdout, /md-run\s+\S+\s+running\s+3\s+3\s+acme\/gromacs:2024/);

    const instances = await salad(['instances', 'md-run']);
    assert.equal(instances.code, 0, instances.stderr);
    const listed = fake.instances('md-run');
    assert.equal(listed.length, 3);
    for (const i of listed) assert.match(instances.stdout, new RegExp(`${i.id}\\s+${i.machine_id}\\s+running\\s+yes\\s+yes\\s+0`));

    const from = fake.requests.length;
    const one = await salad(['instance', 'md-run', listed[1]!.id]);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(sent(from).map((c) => `${c.method} ${c.path} ${c.status}`), [`GET ${base}/md-run/instances/${listed[1]!.id} 202`]);
    assert.match(one.stdout, new RegExp(`machine\\s+${listed[1]!.machine_id}`));
    assert.match(one.stdout, /state\s+running/);
    const gone = await salad(['instance', 'md-run', '00000000-0000-4000-8000-000000000000']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^drover salad instance: SaladCloud has no instance 00000000-0000-4000-8000-000000000000 in container group md-run/);

    const show = await salad(['show', 'md-run']);
    assert.match(show.stdout, /status\s+running/);
    assert.match(show.stdout, /command\s+\/drover-worker --log-level=debug/);
    assert.match(show.stdout, new RegExp(listed[0]!.id));

    const stopFrom = fake.requests.length;
    const stop = await salad(['stop', 'md-run']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.deepEqual(sent(stopFrom).map((c) => `${c.method} ${c.path}`), [`POST ${base}/md-run/stop`, `GET ${base}/md-run`]);
    assert.match(stop.stdout, /stopped container group md-run: stopped, 3 replicas/);
    const missing = await salad(['start', 'no-such-group']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /SaladCloud has no container group no-such-group in this project/);
  });

  it('gpu-classes lists the organization\'s classes with their ids', async () => {
    const r = await salad(['gpu-classes'], { SALAD_PROJECT: '' });
    assert.equal(r.code, 0, r.stderr);
    for (const c of FAKE_GPU_CLASSES) assert.match(r.stdout, new RegExp(`${c.name.replace(/[()]/g, '\\$&')}\\s+${c.id}`));
  });

  it('autoscale makes a saladcloud scaling rule for the group\'s id, and the coordinator then sizes and starts the group from its queue', async () => {
    const g = fake.group('train-4090')!;
    const r = await salad(['autoscale', 'train-4090', '--max', '3', '--idle-threshold', '60', '--api-url', server.url, '--api-key', u.token]);
    assert.equal(r.code, 0, r.stderr);
    const rule = await u.client.getScalingRule(g.id);
    assert.deepEqual(
      [rule.provider, rule.org_name, rule.project_name, rule.container_group_name, rule.max_replicas, rule.idle_threshold_seconds],
      ['saladcloud', FAKE_ORG, FAKE_PROJECT, 'train-4090', 3, 60],
    );
    assert.match(r.stdout, new RegExp(`container group\\s+${g.id}`));
    // Work for the group: the coordinator asks the fake for replicas and a start.
    const from = fake.changes('train-4090').length;
    await u.client.createJobs(Array.from({ length: 5 }, () => ({ command: 'true', container_group_id: g.id })));
    await waitFor('the group to be started with 3 replicas', () => fake.group('train-4090')!.status !== 'stopped' && fake.group('train-4090')!.replicas === 3, 10_000);
    const changes = fake.changes('train-4090').slice(from).map((c) => `${c.method} ${c.path.replace(base, '')} ${c.body}`);
    assert.deepEqual(changes, ['PATCH /train-4090 {"replicas":3}', 'POST /train-4090/start ']);
    // Again: only the flags given change.
    const again = await salad(['autoscale', 'train-4090', '--min', '1', '--api-url', server.url, '--api-key', u.token]);
    assert.equal(again.code, 0, again.stderr);
    const changed = await u.client.getScalingRule(g.id);
    assert.deepEqual([changed.min_replicas, changed.max_replicas], [1, 3]);
  });

  it("autoscale of a group another user's rule drives is one line saying so, exit 1, and makes no rule", async () => {
    const g = fake.group('train-4090')!;
    await u.client.createScalingRule({ container_group_id: g.id, max_replicas: 3 }).catch(() => undefined); // the test above made it, or this does
    const other = await server.user();
    const r = await salad(['autoscale', 'train-4090', '--max', '0', '--api-url', server.url, '--api-key', other.token]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /another user's enabled rule drives this SaladCloud container group/);
    assert.equal((await other.client.listScalingRules())._count, 0);
    assert.equal((await u.client.getScalingRule(g.id)).max_replicas, 3, "the first user's rule is untouched");
  });
});
