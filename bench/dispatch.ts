// Dispatch benchmark: how fast one coordinator hands out work, on each store.
//
//   npm run bench:dispatch -- [--store sqlite|postgres|both] [--jobs 10000] [--workers 64]
//                             [--latency-jobs 200] [--gap-ms 15] [--profile DIR]
//
// For each store it starts `drover server` as a real child process (the server and this load
// generator each get a core), creates a user and a token, preloads the jobs and then measures:
//   1. throughput: simulated workers, each looping claim (GET /work, no wait) → heartbeat →
//      completed until the queue is empty; full cycles/s and claim / cycle latency percentiles;
//   2. submit-to-claim: idle workers long-polling (GET /work?wait=30) while jobs are submitted one
//      at a time; the time from just before POST /jobs to the moment a long-poll returns the job.
// Afterwards every job must be `completed` with attempt 1 (claimed exactly once), or the run fails.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { DroverClient, type Machine } from '@drover/sdk';
import type { Job } from '@drover/protocol';
import { freshDatabase, spawnServer, type ServerProcess, type StoreKind } from '@drover/testing/server';
import { wholeFlag } from './lib/flags.js';

const TARGETS = { sqlite: { cyclesPerSecond: 1000 }, postgres: { cyclesPerSecond: 500 }, submitToClaimP50Ms: 50 };
const BATCH = 1000;

const { values: flags } = parseArgs({
  options: {
    store: { type: 'string', default: 'both' },
    jobs: { type: 'string', default: '10000' },
    workers: { type: 'string', default: '64' },
    'latency-jobs': { type: 'string', default: '200' },
    'gap-ms': { type: 'string', default: '15' },
    profile: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: npm run bench:dispatch -- [--store sqlite|postgres|both] [--jobs N] [--workers N]\n' +
      '                                [--latency-jobs N] [--gap-ms MS] [--profile DIR (server CPU profile)]',
  );
  process.exit(0);
}
const opts = {
  jobs: wholeFlag('jobs', flags.jobs),
  workers: wholeFlag('workers', flags.workers),
  latencyJobs: wholeFlag('latency-jobs', flags['latency-jobs']),
  gapMs: Number(flags['gap-ms']),
  profile: flags.profile,
};
const stores: StoreKind[] =
  flags.store === 'both' ? ['sqlite', 'postgres'] : flags.store === 'sqlite' || flags.store === 'postgres' ? [flags.store] : [];
if (stores.length === 0) throw new Error('--store must be sqlite, postgres or both');

interface Result {
  store: StoreKind;
  jobs: number;
  workers: number;
  preloadJobsPerSecond: number;
  cyclesPerSecond: number;
  claimP50Ms: number;
  claimP99Ms: number;
  cycleP50Ms: number;
  cycleP99Ms: number;
  /** CPU time (user + system) per full cycle during the throughput phase: where the cores go */
  serverCpuMsPerCycle: number | null;
  /** PostgreSQL only: the backends serving our database (they share the cores too) */
  databaseCpuMsPerCycle: number | null;
  loadgenCpuMsPerCycle: number;
  latencyJobs: number;
  submitToClaimP50Ms: number;
  submitToClaimP99Ms: number;
  submitToClaimMaxMs: number;
}

/** Nearest-rank percentile of unsorted samples. */
function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Every job of a group must be completed and have been claimed exactly once. */
async function verify(client: DroverClient, group: string, expected: number): Promise<void> {
  let count = 0;
  const problems: string[] = [];
  for await (const job of client.iterateJobs({ container_group_id: group, page_size: 1000, asc: true })) {
    count++;
    if (job.status !== 'completed' || job.attempt !== 1) {
      problems.push(`${job.id}: status ${job.status}, attempt ${job.attempt}`);
    }
  }
  if (count !== expected) problems.unshift(`group ${group}: ${count} jobs in the store, expected ${expected}`);
  if (problems.length > 0) {
    throw new Error(`verification failed (${problems.length} problems):\n  ${problems.slice(0, 20).join('\n  ')}`);
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux; USER_HZ = 100). */
function processCpuMs(pid: number): number | null {
  const file = `/proc/${pid}/stat`;
  if (!existsSync(file)) return null;
  const fields = readFileSync(file, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU ms of each PostgreSQL backend connected to the database at `url` (other than ours). */
async function backendCpu(url: string): Promise<Map<number, number>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number }>(
      'select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
    );
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      const ms = processCpuMs(pid);
      if (ms !== null) cpu.set(pid, ms);
    }
    return cpu;
  } finally {
    await c.end();
  }
}

/** CPU used by the database's backends since `before` (a backend that left meanwhile is not counted). */
function backendCpuSince(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0;
  for (const [pid, now] of after) ms += now - (before.get(pid) ?? 0);
  return ms;
}

/** Phase 1: workers loop claim → heartbeat → completed until the queue is empty. */
async function throughput(client: DroverClient, server: ServerProcess, database: string, group: string) {
  const pgUrl = /^postgres(ql)?:\/\//.test(database) ? database : undefined;
  const claimMs: number[] = [];
  const cycleMs: number[] = [];
  const claimedBy = new Map<string, string>();
  let completed = 0;
  let lastDone = 0;
  const dbCpu0 = pgUrl ? await backendCpu(pgUrl) : undefined;
  const serverCpu0 = processCpuMs(server.proc.pid!);
  const loadgenCpu0 = process.cpuUsage();
  const start = performance.now();
  const worker = async (i: number) => {
    const machine: Machine = { machine_id: `tp-${i}`, container_group_id: group };
    for (;;) {
      const t0 = performance.now();
      const job = await client.claimWork(machine);
      const t1 = performance.now();
      if (!job) return;
      const other = claimedBy.get(job.id);
      if (other !== undefined) throw new Error(`job ${job.id} claimed by ${other} and again by ${machine.machine_id}`);
      claimedBy.set(job.id, machine.machine_id);
      const hb = await client.heartbeat(job.id, machine);
      if (hb.status !== 'running') throw new Error(`heartbeat for ${job.id} answered ${hb.status}`);
      await client.completeJob(job.id, machine);
      const t2 = performance.now();
      claimMs.push(t1 - t0);
      cycleMs.push(t2 - t0);
      completed++;
      lastDone = t2;
    }
  };
  await Promise.all(Array.from({ length: opts.workers }, (_, i) => worker(i)));
  const wallMs = lastDone - start;
  const serverCpu1 = processCpuMs(server.proc.pid!);
  const loadgenCpu = process.cpuUsage(loadgenCpu0);
  const dbCpu = pgUrl && dbCpu0 ? backendCpuSince(dbCpu0, await backendCpu(pgUrl)) : undefined;
  return {
    completed,
    serverCpuMsPerCycle: serverCpu0 === null || serverCpu1 === null ? null : (serverCpu1 - serverCpu0) / completed,
    databaseCpuMsPerCycle: dbCpu === undefined ? null : dbCpu / completed,
    loadgenCpuMsPerCycle: (loadgenCpu.user + loadgenCpu.system) / 1000 / completed,
    cyclesPerSecond: (completed / wallMs) * 1000,
    claimP50Ms: percentile(claimMs, 50),
    claimP99Ms: percentile(claimMs, 99),
    cycleP50Ms: percentile(cycleMs, 50),
    cycleP99Ms: percentile(cycleMs, 99),
  };
}

/** Wait until the server reports `n` long-polls waiting (its Prometheus gauge). */
async function waitForLongPolls(url: string, adminKey: string, n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const text = await (await fetch(`${url}/metrics`, { headers: { 'x-kelpie-key': adminKey } })).text();
    const m = /^drover_longpoll_waiting\s+(\d+)/m.exec(text);
    if (m && Number(m[1]) >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${m?.[1] ?? 0} of ${n} long-polls waiting after 20 s`);
    await sleep(50);
  }
}

/** Phase 2: idle long-polling workers; jobs submitted one at a time; submit → claim latency. */
async function submitToClaim(client: DroverClient, server: ServerProcess, group: string) {
  const submittedAt = new Map<string, number>();
  const latencies: number[] = [];
  const claimedBy = new Map<string, string>();
  let stopping = false;
  let completed = 0;
  let allClaimed!: () => void;
  let allCompleted!: () => void;
  const done = new Promise<void>((r) => (allClaimed = r));
  const completedAll = new Promise<void>((r) => (allCompleted = r));
  const worker = async (i: number) => {
    const machine: Machine = { machine_id: `lp-${i}`, container_group_id: group };
    for (;;) {
      let job: Job | undefined;
      try {
        job = await client.claimWork(machine, 30);
      } catch (e) {
        if (stopping) return; // the server went away under a waiting long-poll
        throw e;
      }
      const at = performance.now();
      if (!job) {
        if (stopping) return;
        continue;
      }
      const seq = job.arguments?.[0] ?? '';
      const sent = submittedAt.get(seq);
      if (sent === undefined) throw new Error(`claimed job ${job.id} (seq ${seq}) before it was submitted`);
      const other = claimedBy.get(job.id);
      if (other !== undefined) throw new Error(`job ${job.id} claimed by ${other} and again by ${machine.machine_id}`);
      claimedBy.set(job.id, machine.machine_id);
      latencies.push(at - sent);
      if (claimedBy.size === opts.latencyJobs) allClaimed();
      await client.completeJob(job.id, machine);
      if (++completed === opts.latencyJobs) allCompleted();
    }
  };
  const workers = Array.from({ length: opts.workers }, (_, i) => worker(i));
  const failed = Promise.race(workers).then(() => {
    throw new Error('a long-poll worker stopped early');
  });
  failed.catch(() => undefined);
  const stop = async () => {
    stopping = true;
    await server.stop(); // answers the waiting long-polls with []
    await Promise.allSettled(workers);
  };

  try {
    await Promise.race([waitForLongPolls(server.url, server.adminKey ?? '', opts.workers), failed]);
    for (let seq = 0; seq < opts.latencyJobs; seq++) {
      const key = String(seq);
      submittedAt.set(key, performance.now());
      await client.createJob({ command: 'true', arguments: [key], container_group_id: group, heartbeat_interval: 30 });
      if (opts.gapMs > 0) await sleep(opts.gapMs);
    }
    const timer = new AbortController();
    const deadline = sleep(30_000, undefined, { signal: timer.signal }).then(() => {
      throw new Error(`only ${claimedBy.size} of ${opts.latencyJobs} jobs claimed 30 s after the last submit`);
    });
    deadline.catch(() => undefined);
    try {
      await Promise.race([done, failed, deadline]);
    } finally {
      timer.abort();
    }
    // The last completions land before the caller verifies.
    await Promise.race([completedAll, failed]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { latencies, stop };
}

async function runStore(kind: StoreKind): Promise<Result> {
  const db = await freshDatabase(kind);
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const nodeArgs = opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${opts.profile}`] : [];
  const server = await spawnServer({ database: db.database, adminKey, nodeArgs });
  let stopLongPolls: (() => Promise<void>) | undefined;
  try {
    const admin = new DroverClient({ url: server.url, key: adminKey, retries: 0 });
    const user = await admin.createUser(`bench-${randomBytes(3).toString('hex')}`);
    const { token } = await admin.createToken(user.id);
    const client = new DroverClient({ url: server.url, key: token, retries: 0, timeoutMs: 60_000 });

    const group = 'bench-throughput';
    const t0 = performance.now();
    for (let i = 0; i < opts.jobs; i += BATCH) {
      const n = Math.min(BATCH, opts.jobs - i);
      await client.createJobs(
        Array.from({ length: n }, () => ({ command: 'true', container_group_id: group, heartbeat_interval: 30 })),
      );
    }
    const preloadJobsPerSecond = (opts.jobs / (performance.now() - t0)) * 1000;
    log(`${kind}: preloaded ${opts.jobs} jobs (${Math.round(preloadJobsPerSecond)} jobs/s); ${opts.workers} workers claiming`);

    const tp = await throughput(client, server, db.database, group);
    if (tp.completed !== opts.jobs) throw new Error(`${tp.completed} of ${opts.jobs} jobs completed`);
    await verify(client, group, opts.jobs);
    log(`${kind}: ${Math.round(tp.cyclesPerSecond)} cycles/s; verified ${opts.jobs} jobs completed once each`);

    const lpGroup = 'bench-latency';
    const lp = await submitToClaim(client, server, lpGroup);
    stopLongPolls = lp.stop;
    await verify(client, lpGroup, opts.latencyJobs);
    log(`${kind}: submit-to-claim measured on ${opts.latencyJobs} jobs; verified`);

    return {
      store: kind,
      jobs: opts.jobs,
      workers: opts.workers,
      preloadJobsPerSecond: Math.round(preloadJobsPerSecond),
      cyclesPerSecond: Math.round(tp.cyclesPerSecond),
      claimP50Ms: round(tp.claimP50Ms),
      claimP99Ms: round(tp.claimP99Ms),
      cycleP50Ms: round(tp.cycleP50Ms),
      cycleP99Ms: round(tp.cycleP99Ms),
      serverCpuMsPerCycle: tp.serverCpuMsPerCycle === null ? null : round(tp.serverCpuMsPerCycle, 2),
      databaseCpuMsPerCycle: tp.databaseCpuMsPerCycle === null ? null : round(tp.databaseCpuMsPerCycle, 2),
      loadgenCpuMsPerCycle: round(tp.loadgenCpuMsPerCycle, 2),
      latencyJobs: opts.latencyJobs,
      submitToClaimP50Ms: round(percentile(lp.latencies, 50)),
      submitToClaimP99Ms: round(percentile(lp.latencies, 99)),
      submitToClaimMaxMs: round(Math.max(...lp.latencies)),
    };
  } catch (e) {
    const out = server.output().trim();
    if (out) log(`${kind} server output:\n${out.split('\n').slice(-30).join('\n')}`);
    throw e;
  } finally {
    if (stopLongPolls) await stopLongPolls();
    else await server.stop();
    await db.cleanup();
  }
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function table(results: Result[]): string {
  const rows: string[][] = [
    [
      'store',
      'cycles/s',
      'target',
      'claim p50/p99 ms',
      'cycle p50/p99 ms',
      'CPU ms/cycle server, db, loadgen',
      'submit→claim p50/p99 ms',
      'target p50',
    ],
  ];
  for (const r of results) {
    const target = TARGETS[r.store].cyclesPerSecond;
    rows.push([
      r.store,
      String(r.cyclesPerSecond),
      `>= ${target} ${r.cyclesPerSecond >= target ? 'ok' : 'MISSED'}`,
      `${r.claimP50Ms} / ${r.claimP99Ms}`,
      `${r.cycleP50Ms} / ${r.cycleP99Ms}`,
      `${r.serverCpuMsPerCycle ?? '?'}, ${r.databaseCpuMsPerCycle ?? '-'}, ${r.loadgenCpuMsPerCycle}`,
      `${r.submitToClaimP50Ms} / ${r.submitToClaimP99Ms}`,
      `< ${TARGETS.submitToClaimP50Ms} ${r.submitToClaimP50Ms < TARGETS.submitToClaimP50Ms ? 'ok' : 'MISSED'}`,
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

const results: Result[] = [];
for (const kind of stores) results.push(await runStore(kind));

console.log(
  `\nDispatch: ${opts.jobs} jobs, ${opts.workers} workers; submit→claim over ${opts.latencyJobs} jobs, ` +
    `${opts.gapMs} ms apart; ${cpus().length} CPUs, node ${process.version}\n`,
);
console.log(table(results));
console.log(
  `\n${JSON.stringify({
    bench: 'dispatch',
    date: new Date().toISOString(),
    nproc: cpus().length,
    node: process.version,
    gapMs: opts.gapMs,
    results,
  })}`,
);
