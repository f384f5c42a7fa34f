// Autoscale benchmark: how soon after a submission the provider is asked to scale up.
//
//   npm run bench:autoscale -- [--runs 10] [--scenario sqlite,postgres,replicas,local] [--batch 1]
//
// Real parts: `drover server` as a child process (SQLite, PostgreSQL, or two replicas on one
// PostgreSQL database), a loopback SaladCloud speaking the public API (@drover/testing/saladcloud)
// in this process, and for `local` a local cluster (the coordinator in this process) whose
// autoscaler starts real `drover worker` processes. Every timestamp is Date.now() on this machine.
//
// Each run: a fresh stopped group and a rule for it (min 0, max 4), evaluated once; then
// t0 = just before POST /jobs (one job, or a batch of --batch), and
//   saladcloud scenarios: t1 = the PATCH {"replicas": N} arriving at SaladCloud, t2 = the start;
//   local:               t1 = the worker process spawned,                t2 = the job running on it.
// A run fails unless the group was asked exactly once for its replicas and once to start.
// Kelpie evaluates its rules every 5 minutes: the same wait there is 0-300 s (150 s on average).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DroverClient } from '@drover/sdk';
import { startLocalCluster } from '../packages/cli/src/cluster/local-cluster.js';
import { FAKE_ORG, FAKE_PROJECT, startFakeSaladCloud, type FakeSaladCloud } from '@drover/testing/saladcloud';
import { freshDatabase, spawnServer, type ServerProcess } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { badFlag, wholeFlag } from './lib/flags.js';

const SCENARIOS = ['sqlite', 'postgres', 'replicas', 'local'] as const;
type Scenario = (typeof SCENARIOS)[number];

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    scenario: { type: 'string', default: SCENARIOS.join(',') },
    batch: { type: 'string', default: '1' },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log('usage: npm run bench:autoscale -- [--runs N (10)] [--scenario sqlite,postgres,replicas,local] [--batch N (1)]');
  process.exit(0);
}
const runs = wholeFlag('runs', flags.runs, 1);
const batch = wholeFlag('batch', flags.batch, 1);
const scenarios = (flags.scenario ?? '').split(',').filter(Boolean) as Scenario[];
for (const s of scenarios) if (!SCENARIOS.includes(s)) badFlag(`--scenario: ${s} is not one of ${SCENARIOS.join(', ')}`);

interface Run {
  first: number;
  second: number;
}

const jobs = (group: string) =>
  Array.from({ length: batch }, () => ({ command: process.execPath, arguments: ['-e', ''], container_group_id: group, sync: {} }));

async function submit(client: DroverClient, group: string): Promise<void> {
  if (batch === 1) await client.createJob(jobs(group)[0]!);
  else await client.createJobs(jobs(group));
}

/** One or two `drover server` processes driving the loopback SaladCloud. */
async function saladcloudScenario(kind: 'sqlite' | 'postgres' | 'replicas', salad: FakeSaladCloud): Promise<Run[]> {
  const db = await freshDatabase(kind === 'sqlite' ? 'sqlite' : 'postgres');
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const spec = {
    database: db.database,
    adminKey,
    extraArgs: ['--salad-api-url', salad.url, '--salad-organization', FAKE_ORG, '--salad-project', FAKE_PROJECT, '--autoscale-interval', '600'],
    env: { SALAD_API_KEY: salad.apiKey },
  };
  const servers: ServerProcess[] = [];
  try {
    servers.push(await spawnServer(spec));
    if (kind === 'replicas') servers.push(await spawnServer(spec));
    const admin = new DroverClient({ url: servers[0]!.url, key: adminKey, retries: 0 });
    const u = await admin.createUser(`bench-${kind}`);
    const token = (await admin.createToken(u.id)).token;
    const rulesVia = new DroverClient({ url: servers[0]!.url, key: token, retries: 0 });
    // With replicas, jobs go in through the one the rule was not made on: the work signal crosses by NOTIFY.
    const jobsVia = new DroverClient({ url: servers.at(-1)!.url, key: token, retries: 0 });
    const out: Run[] = [];
    for (let i = 0; i < runs; i++) {
      const g = salad.addGroup(`bench-${kind}-${i}-${randomBytes(2).toString('hex')}`);
      await rulesVia.createScalingRule({ container_group_id: g.id, container_group_name: g.name, max_replicas: 4 });
      await waitFor('the rule to be evaluated', async () => (await rulesVia.getScalingRule(g.id)).evaluated !== null);
      const t0 = Date.now();
      await submit(jobsVia, g.id);
      await waitFor('the start', () => salad.changes(g.name).some((r) => r.path.endsWith('/start')), 30_000);
      const changes = salad.changes(g.name);
      const patch = changes.filter((r) => r.method === 'PATCH');
      const start = changes.filter((r) => r.path.endsWith('/start'));
      if (patch.length !== 1 || start.length !== 1) throw new Error(`run ${i}: expected one PATCH and one start, got ${changes.map((r) => `${r.method} ${r.path}`).join(', ')}`);
      out.push({ first: patch[0]!.at - t0, second: start[0]!.at - t0 });
    }
    return out;
  } finally {
    for (const s of servers) await s.stop();
    await db.cleanup();
  }
}

/** The local cluster: the autoscaler starts real worker processes. */
async function localScenario(): Promise<Run[]> {
  const out: Run[] = [];
  for (let i = 0; i < runs; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'drover-bench-autoscale-'));
    let spawned = 0;
    const cluster = await startLocalCluster({
      dir,
      workers: 1,
      port: 0,
      host: '127.0.0.1',
      containerGroupId: 'bench',
      bucket: 'drover',
      profileFile: join(dir, 'profile.json'),
      autoscale: { idleThresholdSeconds: 300 },
      onScale: (e) => void (e.kind === 'start' && spawned === 0 && (spawned = Date.now())),
    });
    try {
      await waitFor('the rule to be evaluated', async () => (await cluster.client.getScalingRule('bench')).evaluated !== null);
      const t0 = Date.now();
      const job = await cluster.client.createJob({ command: process.execPath, arguments: ['-e', ''], container_group_id: 'bench', sync: {} });
      await waitFor('the job to be claimed', async () => (await cluster.client.getJob(job.id)).started !== null, 60_000);
      const started = Date.parse((await cluster.client.getJob(job.id)).started!);
      out.push({ first: spawned - t0, second: started - t0 });
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return out;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor((s.length - 1) / 2)]!, min: s[0]!, max: s.at(-1)! };
};

const salad = await startFakeSaladCloud();
const results: { scenario: Scenario; runs: Run[] }[] = [];
try {
  for (const s of scenarios) {
    process.stderr.write(`${s}: ${runs} runs...\n`);
    results.push({ scenario: s, runs: s === 'local' ? await localScenario() : await saladcloudScenario(s, salad) });
  }
} finally {
  await salad.close();
}

const LABEL: Record<Scenario, [string, string, string]> = {
  sqlite: ['SaladCloud, drover server on SQLite', 'PATCH replicas', 'POST start'],
  postgres: ['SaladCloud, drover server on PostgreSQL', 'PATCH replicas', 'POST start'],
  replicas: ['SaladCloud, 2 replicas on PostgreSQL (submitted to the other)', 'PATCH replicas', 'POST start'],
  local: ['local workers (drover up --autoscale)', 'worker spawned', 'job claimed by it'],
};
console.log(`\nautoscale: submit → scale-up request, ms (${runs} runs each, batch of ${batch}; ${cpus().length} CPUs, Node ${process.version})\n`);
console.log('| scenario | first request | median | min | max | second request | median | min | max |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const [name, a, b] = LABEL[r.scenario];
  const f = stats(r.runs.map((x) => x.first));
  const s = stats(r.runs.map((x) => x.second));
  console.log(`| ${name} | ${a} | **${f.median}** | ${f.min} | ${f.max} | ${b} | ${s.median} | ${s.min} | ${s.max} |`);
}
console.log(`\n${JSON.stringify({ bench: 'autoscale', runs, batch, results })}`);
