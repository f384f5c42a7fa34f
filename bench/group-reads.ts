// Group reads benchmark: what the dashboard's group summaries, job history chart and /metrics' job
// gauges cost on SQLite with a long history of jobs, counted from job_counts (kept by triggers,
// migration 0007) against counting the jobs themselves (the form PostgreSQL uses), and what the
// triggers cost the write path. SQLite runs its queries on the event loop, so a read's time is time
// no claim or heartbeat is served.
//
//   npm run bench:group-reads -- [--jobs 300000] [--runs 7] [--cycles 20000] [--part reads|writes|both]
//
// 1. Reads: one database of --jobs jobs in 3 groups, submitted over 30 days (98 % completed a
//    minute after their submission, 1 in 10,000 failed, 1 % pending, 1 % running; and a group of 50
//    older jobs), the reads timed --runs times in each form, alternating; medians and the ratio.
//    (Run against an older checkout, where the store has one form, both columns time that form.)
// 2. Writes: two fresh databases of --cycles pending jobs, one with the job_counts triggers
//    dropped; 64 concurrent loops of claim → heartbeat → complete through the store (no HTTP) until
//    the queue is empty; cycles/s, three rounds alternating which goes first; medians and the ratio.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { sql, type Kysely } from 'kysely';
import { openStore, type NewJob, type Store } from '@drover/server';
import { freshDatabase } from '@drover/testing/server';
import { badFlag, wholeFlag } from './lib/flags.js';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '300000' },
    runs: { type: 'string', default: '7' },
    cycles: { type: 'string', default: '20000' },
    part: { type: 'string', default: 'both' },
  },
});
if (!['reads', 'writes', 'both'].includes(args.part!)) badFlag(`--part must be reads, writes or both, got ${JSON.stringify(args.part)}`);
const PART = args.part as 'reads' | 'writes' | 'both';
const JOBS = wholeFlag('jobs', args.jobs, 1000);
const RUNS = wholeFlag('runs', args.runs);
const CYCLES = wholeFlag('cycles', args.cycles, 64);
const GROUPS = ['g0', 'g1', 'g2'];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const db = (store: Store) => (store as unknown as { db: Kysely<unknown> }).db;
const setScan = (store: Store, scan: boolean) => ((store as unknown as { countByScan: boolean }).countByScan = scan);
const job = (group: string): NewJob => ({
  id: randomUUID(),
  definition: { command: 'app', arguments: [], environment: {}, container_group_id: group, max_failures: 3, heartbeat_interval: 30, compression: false },
});

async function openFresh(): Promise<{ store: Store; userId: string; cleanup(): Promise<void> }> {
  const fresh = await freshDatabase('sqlite');
  const store = openStore(fresh.database, 2);
  await store.migrate();
  const userId = randomUUID();
  await store.createUser({ id: userId, username: `bench-${userId}`, created: Date.now(), admin: 0, webhook_secret: 's' });
  return { store, userId, cleanup: async () => { await store.close(); await fresh.cleanup(); } };
}

// ---- 1. reads ----
const DAY = 86_400_000;

async function seedHistory(): Promise<Awaited<ReturnType<typeof openFresh>>> {
  const reads = await openFresh();
  const t = performance.now();
  const first = Date.now() - 30 * DAY;
  // A small group whose 50 jobs are the oldest: a list filtered to it finds them last.
  await reads.store.createJobs(reads.userId, Array.from({ length: 50 }, () => job('small')), first - 1000);
  for (let done = 0; done < JOBS; done += 1000) {
    const n = Math.min(1000, JOBS - done);
    await reads.store.createJobs(reads.userId, Array.from({ length: n }, (_, i) => job(GROUPS[(done + i) % GROUPS.length]!)), first + Math.round((done / JOBS) * 30 * DAY));
  }
  // A long history: all but 2 % completed (through SQL, the triggers keep the counts), 1 % running.
  await sql`update jobs set status = 'completed', started = created + 1000, completed = created + 60000 where seq % 100 > 1`.execute(db(reads.store));
  // And a few failed for good (one in 10,000).
  await sql`update jobs set status = 'failed', completed = null, failed = created + 60000 where seq % 10000 = 7`.execute(db(reads.store));
  const now = Date.now();
  for (let i = 0; i < JOBS / 100; i++) {
    if (!(await reads.store.claimJob({ userId: reads.userId, machineId: `m${i}`, groupId: GROUPS[i % GROUPS.length]!, now }))) break;
  }
  console.log(`reads: ${JOBS.toLocaleString()} jobs created in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return reads;
}

async function readsPart(): Promise<void> {
  const reads = await seedHistory();
  const { store, userId } = reads;
  const readings: Record<string, () => Promise<unknown>> = {
    'group summaries, every group (GET /container-groups)': () => store.groupSummaries(userId, Date.now()),
    'group summaries, one group (GET /container-groups/:id)': () => store.groupSummaries(userId, Date.now(), 'g1'),
    'jobs by status, whole database (/metrics)': () => store.countJobsByStatus(),
    'group gauges, whole database (/metrics)': () => store.groupGauges(Date.now()),
    'job history, last hour (GET /stats/jobs, 60 buckets)': () => store.jobHistory(userId, { end: Date.now(), stepMs: 60_000, buckets: 60 }),
    'job history, last 7 days (GET /stats/jobs?hours=168)': () => store.jobHistory(userId, { end: Date.now(), stepMs: (7 * DAY) / 60, buckets: 60 }),
    'jobs list, failed ones, first page (GET /jobs?status=failed)': () => store.listJobs({ userId, status: 'failed', limit: 50, offset: 0, asc: false }),
    'jobs list, a small group, first page (GET /jobs?container_group_id=small)': () => store.listJobs({ userId, groupId: 'small', limit: 50, offset: 0, asc: false }),
  };
  const readMs: Record<string, { counts: number[]; scan: number[] }> = {};
  for (const name of Object.keys(readings)) readMs[name] = { counts: [], scan: [] };
  for (let r = 0; r < RUNS; r++) {
    for (const form of r % 2 ? (['scan', 'counts'] as const) : (['counts', 'scan'] as const)) {
      setScan(store, form === 'scan');
      for (const [name, read] of Object.entries(readings)) {
        const t = performance.now();
        await read();
        readMs[name]![form].push(performance.now() - t);
      }
    }
  }
  // The two forms must agree, or the figures mean nothing.
  const now = Date.now();
  const agree = async (read: () => Promise<unknown>) => {
    setScan(store, false);
    const a = JSON.stringify(await read());
    setScan(store, true);
    const b = JSON.stringify(await read());
    setScan(store, false);
    return a === b;
  };
  for (const read of [
    () => store.groupSummaries(userId, now),
    () => store.countJobsByStatus(),
    () => store.groupGauges(now),
    () => store.jobHistory(userId, { end: now, stepMs: (7 * DAY) / 60, buckets: 60 }),
  ]) {
    if (!(await agree(read))) {
      console.error('the counted and scanned forms disagree');
      process.exit(1);
    }
  }
  await reads.cleanup();

  console.log(`\n| read (${JOBS.toLocaleString()} jobs, SQLite, median of ${RUNS}) | job_counts | counting the jobs | ratio |`);
  console.log('|---|---|---|---|');
  const readRows: Record<string, { counts: number; scan: number }> = {};
  for (const [name, { counts, scan }] of Object.entries(readMs)) {
    readRows[name] = { counts: median(counts), scan: median(scan) };
    console.log(`| ${name} | ${median(counts).toFixed(2)} ms | ${median(scan).toFixed(1)} ms | ${(median(scan) / median(counts)).toFixed(0)}× |`);
  }
  console.log(JSON.stringify({ bench: 'group-reads', part: 'reads', jobs: JOBS, runs: RUNS, reads: readRows }));
}

// ---- 2. writes ----
async function cycles(withTriggers: boolean): Promise<number> {
  const w = await openFresh();
  try {
    if (!withTriggers) for (const t of ['job_counts_insert', 'job_counts_delete', 'job_counts_update']) await sql`drop trigger ${sql.id(t)}`.execute(db(w.store));
    for (let done = 0; done < CYCLES; done += 1000) await w.store.createJobs(w.userId, Array.from({ length: Math.min(1000, CYCLES - done) }, () => job('w')), Date.now());
    let done = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const machineId = `m${i}`;
        for (;;) {
          const j = await w.store.claimJob({ userId: w.userId, machineId, groupId: 'w', now: Date.now() });
          if (!j) return;
          await w.store.heartbeat({ userId: w.userId, jobId: j.id, machineId, now: Date.now() });
          await w.store.completeJob({ userId: w.userId, jobId: j.id, machineId, now: Date.now() });
          done++;
        }
      }),
    );
    const s = (performance.now() - t) / 1000;
    if (done !== CYCLES) throw new Error(`completed ${done} of ${CYCLES}`);
    return CYCLES / s;
  } finally {
    await w.cleanup();
  }
}

async function writesPart(): Promise<void> {
  const writes = { with: [] as number[], without: [] as number[] };
  for (let r = 0; r < 3; r++) {
    for (const withTriggers of r % 2 ? [false, true] : [true, false]) writes[withTriggers ? 'with' : 'without'].push(await cycles(withTriggers));
  }
  const w = { with: median(writes.with), without: median(writes.without) };
  console.log(`\n| store cycles/s (claim → heartbeat → complete, 64 loops, ${CYCLES.toLocaleString()} jobs, median of 3) | with the triggers | without | ratio |`);
  console.log('|---|---|---|---|');
  console.log(`| SQLite | ${w.with.toFixed(0)} | ${w.without.toFixed(0)} | ${(w.with / w.without).toFixed(2)}× |`);
  console.log(JSON.stringify({ bench: 'group-reads', part: 'writes', cycles: w }));
}

if (PART !== 'writes') await readsPart();
if (PART !== 'reads') await writesPart();
