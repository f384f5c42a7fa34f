// The chaos harness (issue 5): a real coordinator, real workers and a real S3-protocol server behind
// a fault-injecting proxy run 20 series-sum jobs (worker-managed data, a checkpoint every second)
// while nodes are killed, stopped, frozen and the coordinator restarts; then chaos/checks.ts says
// whether anything was lost or done twice.
//
//   npm run chaos -- [--store sqlite|postgres|both] [--minutes 3] [--jobs 20] [--workers 6]
//                    [--seed N] [--json FILE] [--keep]
//
// --minutes sizes the jobs so that the run takes about that long per store; the chaos goes on
// until every job has ended. Meanwhile, on a seeded random schedule:
//   - every 4–8 s a random worker dies (kill -9 of the worker and its job's processes) and a new
//     one starts under a new machine id;
//   - every 12–20 s a random worker is told to stop (SIGTERM) and a new one starts;
//   - once, a worker running a job is frozen (SIGSTOP) for lease + 3 s, then thawed (SIGCONT);
//   - the coordinator is killed (kill -9) at ~30 % of the run and stopped (SIGTERM) at ~60 %, and
//     started again after lease + 2 s on the same port and database;
//   - the proxy answers 3 % of S3 requests 500/503, resets 2 % of connections and slows 5 %.
// Exit 0 only if every check passes on every store.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { Job, JobEvent } from '@drover/protocol';
import { DroverClient } from '@drover/sdk';
import { S3Store, errorMessage } from '@drover/storage';
import { expectedSum, inputKey, outputKey, seriesSumJob } from '@drover/example-series-sum';
import { startS3ServerProcess } from '../bench/lib/s3-server.js';
import { freePort, freshDatabase, spawnServer, type ServerProcess, type StoreKind } from '@drover/testing/server';
import { spawnWorker, type TestWorker } from '@drover/testing/worker';
import {
  checkEvents, checkOutput, checkWrites, median, parseAppLine, redoBound, redoneWork,
  type AppLine, type Interruption, type JobRecord, type Outage, type Problem, type Redo, type Write,
} from './checks.js';
import { isWrite, startFaultProxy, type FaultRates } from './fault-proxy.js';

const BUCKET = 'chaos';
const GROUP = 'chaos';
const HEARTBEAT_S = 2;
const LEASE_MS = 2 * HEARTBEAT_S * 1000; // the coordinator's default lease factor
const STEP_S = 1;
const SAVE_S = 1;
const STEPS_PER_SAVE = Math.max(1, Math.round(SAVE_S / STEP_S));
const COORDINATOR_DOWN_MS = LEASE_MS + 2000;
const FAULTS: FaultRates = { error: 0.03, reset: 0.02, slow: 0.05, slowMs: 300 };

const { values: flags } = parseArgs({
  options: {
    store: { type: 'string', default: 'both' },
    minutes: { type: 'string', default: '3' },
    jobs: { type: 'string', default: '20' },
    workers: { type: 'string', default: '6' },
    seed: { type: 'string' },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log('usage: npm run chaos -- [--store sqlite|postgres|both] [--minutes 3] [--jobs 20] [--workers 6] [--seed N] [--json FILE] [--keep]');
  process.exit(0);
}
function option(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    console.error(`chaos: --${name} must be a number >= ${min}, got ${v}`);
    process.exit(2);
  }
  return n;
}
const minutes = option('minutes', flags.minutes, 0.5);
const jobCount = Math.round(option('jobs', flags.jobs, 1));
const workerCount = Math.round(option('workers', flags.workers, 2));
const seed = flags.seed === undefined ? randomBytes(4).readUInt32BE() : Math.round(option('seed', flags.seed, 0));
if (!['sqlite', 'postgres', 'both'].includes(flags.store!)) {
  console.error(`chaos: --store must be sqlite, postgres or both, got ${flags.store}`);
  process.exit(2);
}
const stores: StoreKind[] = flags.store === 'both' ? ['sqlite', 'postgres'] : [flags.store as StoreKind];
// Work per job so that jobCount jobs on workerCount workers take about `minutes`, chaos included
// (0.85: measured; a 30-minute soak at 0.55 took 19 minutes).
const stepsPerJob = Math.max(10, Math.round((minutes * 60 * workerCount * 0.85) / jobCount / STEP_S));

/** mulberry32: a small seeded generator, so a failing schedule can be replayed with --seed. */
function seededRandom(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}


const stamp = () => new Date().toISOString().slice(11, 19);
const say = (text: string) => console.log(`${stamp()} ${text}`);

export interface StoreReport {
  store: StoreKind;
  seed: number;
  seconds: number;
  jobs: number;
  stepsPerJob: number;
  completed: number;
  kills: number;
  terms: number;
  freezes: number;
  coordinatorRestarts: number;
  workersStarted: number;
  s3Requests: number;
  injected: { errors: number; resets: number; slowed: number };
  duplicateCompletions: number;
  lostOutputs: number;
  staleWrites: number;
  handovers: number;
  /** Per handover; the bound is one checkpoint interval plus one step. */
  redone: { medianSteps: number; worstSteps: number; medianSeconds: number; worstSeconds: number; boundSeconds: number };
  /** Handovers whose lost work overlaps a coordinator outage (fenced writes), kept apart. */
  redoneDuringOutages: { handovers: number; worstSeconds: number };
  problems: Problem[];
  /** Per job with a problem: its events and its workers' warnings. */
  evidence: Record<string, string[]>;
}

async function runOnStore(store: StoreKind): Promise<StoreReport> {
  const random = seededRandom(seed ^ (store === 'postgres' ? 0x9e3779b9 : 0));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const started = Date.now();
  const scratch = mkdtempSync(join(tmpdir(), 'drover-chaos-'));
  const db = await freshDatabase(store);
  const s3 = await startS3ServerProcess();
  const proxy = await startFaultProxy(s3.endpoint, { rates: FAULTS, record: true, random });
  const direct = new S3Store({ endpoint: s3.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'harness', secretAccessKey: 'test' }, forcePathStyle: true });
  await direct.client.send(new CreateBucketCommand({ Bucket: BUCKET }));

  const port = await freePort();
  const adminKey = `chaos-admin-${randomBytes(8).toString('hex')}`;
  let server: ServerProcess = await spawnServer({ database: db.database, adminKey, port });
  const admin = new DroverClient({ url: server.url, key: adminKey });
  const user = await admin.createUser(`chaos-${store}-${Date.now()}`);
  const { token } = await admin.createToken(user.id);
  const client = new DroverClient({ url: server.url, key: token, retries: 8 });

  const workers = new Map<string, TestWorker>();
  const retired: TestWorker[] = [];
  const interruptions: Interruption[] = [];
  const outages: Outage[] = [];
  let machineSeq = 0;
  let workersStarted = 0;
  let restarts = 0;
  let freezes = 0;
  const startWorker = () => {
    const machineId = `${store}-m${++machineSeq}`;
    const w = spawnWorker({
      url: server.url,
      key: token,
      group: GROUP,
      machineId,
      dataRoot: mkdtempSync(join(scratch, `${machineId}-`)),
      storageEnv: { DROVER_STORAGE: 's3', AWS_ENDPOINT_URL: proxy.url, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: machineId, AWS_SECRET_ACCESS_KEY: 'test' },
      env: { DROVER_LOG_LEVEL: 'info', DROVER_SYNC_SETTLE_S: '0.2' },
    });
    workers.set(machineId, w);
    workersStarted++;
    // A worker that ends on its own (it should not) is replaced too.
    void w.exited.then(() => {
      if (workers.get(machineId) === w && !stopChaos) {
        const stderr = w.stderr().split('\n').filter((l) => l.trim() !== '' && !/AWS SDK|node >=22|a\.co\/|upgrade to node|first week of January|--trace-warnings/.test(l));
        say(`worker ${machineId} exited by itself; its last lines:\n${[...w.logs.slice(-5).map((l) => l.msg), ...stderr.slice(-5)].map((l) => `  ${l}`).join('\n')}`);
        workers.delete(machineId);
        retired.push(w);
        startWorker();
      }
    });
  };
  let stopChaos = false;

  // The jobs: inputs in the bucket first, then one batch.
  const base = 1_000_000_000_000_000;
  const defs = Array.from({ length: jobCount }, (_, i) => {
    const prefix = `runs/job-${i}/`;
    const start = base + i * 1_000_003;
    const end = start + stepsPerJob - 1;
    return { prefix, start, end, def: seriesSumJob({ mode: 'worker', bucket: BUCKET, prefix, containerGroupId: GROUP, stepSeconds: STEP_S, saveIntervalSeconds: SAVE_S, heartbeatInterval: HEARTBEAT_S }) };
  });
  for (const d of defs) await direct.put(BUCKET, inputKey(d.prefix), Buffer.from(JSON.stringify({ start: d.start, end: d.end })), {});
  const jobs: Job[] = await client.createJobs(defs.map((d) => d.def));
  say(`${store}: ${jobCount} jobs of ${stepsPerJob} steps (${STEP_S} s each, a checkpoint every ${SAVE_S} s), ${workerCount} workers, seed ${seed}`);
  for (let i = 0; i < workerCount; i++) startWorker();

  const expectedS = minutes * 60;
  const deadline = started + Math.max(expectedS * 3, 120) * 1000;
  const restartAt = [started + expectedS * 300, started + expectedS * 600];
  const restartKinds: NodeJS.Signals[] = ['SIGKILL', 'SIGTERM'];
  let nextKill = Date.now() + 4000 + random() * 4000;
  let nextTerm = Date.now() + 12_000 + random() * 8000;
  let freezeAt = started + expectedS * 200 + random() * expectedS * 200;
  const live = () => [...workers.entries()].filter(([, w]) => w.proc.exitCode === null && w.proc.signalCode === null);

  const ended = (j: Job) => ['completed', 'failed', 'canceled'].includes(j.status);
  let done = 0;
  while (Date.now() < deadline) {
    let now = Date.now();
    if (restartAt.length > 0 && now >= restartAt[0]!) {
      restartAt.shift();
      const sig = restartKinds.shift()!;
      say(`coordinator: ${sig === 'SIGKILL' ? 'kill -9' : 'SIGTERM'}, down for ${COORDINATOR_DOWN_MS / 1000} s`);
      const down = Date.now();
      await server.stop(sig);
      // Down for longer than a lease, as when a supervisor restarts it or a machine reboots.
      await sleep(COORDINATOR_DOWN_MS);
      server = await spawnServer({ database: db.database, adminKey, port });
      say('coordinator: up again');
      outages.push({ down, up: Date.now() });
      restarts++;
    }
    now = Date.now();
    if (now >= nextKill && live().length > 0) {
      const [id, w] = pick(live());
      workers.delete(id);
      retired.push(w);
      interruptions.push({ machine: id, kind: 'kill', at: Date.now() });
      say(`kill -9 ${id}`);
      await w.killNode();
      startWorker();
      nextKill = Date.now() + 4000 + random() * 4000;
    }
    if (now >= nextTerm && live().length > 0) {
      const [id, w] = pick(live());
      interruptions.push({ machine: id, kind: 'term', at: Date.now() });
      workers.delete(id);
      retired.push(w);
      void w.stop();
      startWorker();
      nextTerm = Date.now() + 12_000 + random() * 8000;
    }
    if (now >= freezeAt) {
      freezeAt = Infinity;
      const running = new Set((await client.listJobs({ status: 'running', page_size: 1000 }).then((l) => l.jobs, () => [] as Job[])).map((j) => j.machine_id));
      const candidates = live().filter(([id]) => running.has(id));
      if (candidates.length > 0) {
        const [id, w] = pick(candidates);
        interruptions.push({ machine: id, kind: 'stop', at: Date.now() });
        freezes++;
        say(`SIGSTOP ${id} for ${(LEASE_MS + 3000) / 1000} s`);
        w.signal('SIGSTOP');
        setTimeout(() => w.signal('SIGCONT'), LEASE_MS + 3000);
      } else {
        freezeAt = Date.now() + 2000; // nobody runs a job right now: try again shortly
      }
    }
    const states = await client.listJobs({ page_size: 1000 }).then(
      (l) => l.jobs,
      (err: unknown) => {
        say(`listing jobs failed (${errorMessage(err)}); the coordinator may be restarting`);
        return undefined;
      },
    );
    if (states) {
      const n = states.filter(ended).length;
      if (n !== done) say(`${n}/${jobCount} jobs ended, ${states.filter((j) => j.status === 'running').length} running`);
      done = n;
      if (done === jobCount) break;
    }
    await sleep(500);
  }
  stopChaos = true;
  const seconds = Math.round((Date.now() - started) / 1000);

  // The record: events, outputs read straight from the S3 server, writes seen by the proxy, the
  // processes' lines from every worker's log.
  const records: JobRecord[] = [];
  for (const [i, job] of jobs.entries()) {
    const d = defs[i]!;
    const [doc, { events }] = await Promise.all([client.getJob(job.id), client.jobEvents(job.id)]);
    let output: string | undefined;
    let outputIntact = false;
    try {
      const info = await direct.head(BUCKET, outputKey(d.prefix));
      const chunks: Buffer[] = [];
      for await (const c of await direct.getStream(BUCKET, outputKey(d.prefix))) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      output = body.toString('utf8');
      outputIntact = info.size === body.length && (info.etag === undefined || info.etag.replace(/"/g, '') === createHash('md5').update(body).digest('hex'));
    } catch {
      output = undefined;
    }
    records.push({ id: job.id, prefix: d.prefix, status: doc.status, events: events as JobEvent[], expectedSum: expectedSum(d.start, d.end).toString(), output, outputIntact });
  }
  const writes: Write[] = proxy.log
    .filter((r) => isWrite(r) && r.status !== undefined && r.status < 300)
    .map((r) => ({ at: r.at, machine: r.accessKey, key: decodeURIComponent(r.url.split('?')[0]!.replace(`/${BUCKET}/`, '')) }));
  const lines: AppLine[] = [];
  for (const w of [...retired, ...workers.values()]) {
    for (const l of w.logs) if (typeof l.job === 'string' && l.stream === 'stdout') {
      const parsed = parseAppLine(l.job, l.msg);
      if (parsed) lines.push(parsed);
    }
  }

  const problems: Problem[] = [];
  const redos: Redo[] = [];
  for (const r of records) {
    problems.push(...checkOutput(r), ...checkEvents(r), ...checkWrites(r, writes));
    redos.push(...redoneWork(r, lines, interruptions, STEP_S * 1000, STEPS_PER_SAVE));
  }
  const bound = SAVE_S + STEP_S;
  for (const x of redos) {
    const allowed = redoBound(x, bound, outages, LEASE_MS);
    if (x.seconds > allowed) problems.push({ job: x.job, check: 'redone work', detail: `${x.seconds.toFixed(1)} s (${x.steps} steps) redone after ${x.kind} of ${x.from} at ${new Date(x.at).toISOString().slice(11, 23)} (bound ${allowed} s)` });
  }
  const plain = redos.filter((x) => redoBound(x, bound, outages, LEASE_MS) === bound);
  // For each job a check failed on: its history, and what the workers warned about it.
  const allWorkers = [...retired, ...workers.values()];
  const evidence: Record<string, string[]> = {};
  for (const id of new Set(problems.map((p) => p.job))) {
    const r = records.find((x) => x.id === id);
    const history = (r?.events ?? []).map((e) => `${e.at.slice(11, 23)} ${e.type} ${e.machine_id ?? '-'}#${e.attempt}`);
    const warnings = allWorkers.flatMap((w) => w.logs.filter((l) => l.job === id && l.level >= 40).map((l) => `${w.machineId}: ${l.msg}${typeof l.err === 'string' ? ` (${l.err})` : ''}`));
    evidence[id] = [...history, ...warnings.slice(-15)];
  }

  // Teardown.
  await Promise.all([...workers.values(), ...retired].map((w) => w.killNode().catch(() => {})));
  await server.stop('SIGTERM');
  await proxy.close();
  s3.child.kill('SIGKILL');
  await db.cleanup();
  if (!flags.keep) rmSync(scratch, { recursive: true, force: true });

  const steps = plain.map((x) => x.steps);
  const secs = plain.map((x) => Math.round(x.seconds * 10) / 10);
  const outageSecs = redos.filter((x) => !plain.includes(x)).map((x) => Math.round(x.seconds * 10) / 10);
  return {
    store, seed, seconds, jobs: jobCount, stepsPerJob,
    completed: records.filter((r) => r.status === 'completed').length,
    kills: interruptions.filter((x) => x.kind === 'kill').length,
    terms: interruptions.filter((x) => x.kind === 'term').length,
    freezes,
    coordinatorRestarts: restarts,
    workersStarted,
    s3Requests: proxy.counts.requests,
    injected: { errors: proxy.counts.errors, resets: proxy.counts.resets, slowed: proxy.counts.slowed },
    duplicateCompletions: records.reduce((n, r) => n + Math.max(0, r.events.filter((e) => e.type === 'completed').length - 1), 0),
    lostOutputs: records.filter((r) => r.status === 'completed' && (r.output === undefined || !r.outputIntact)).length,
    staleWrites: problems.filter((p) => p.check === 'no stale writes').length,
    handovers: plain.length,
    redone: { medianSteps: median(steps), worstSteps: Math.max(0, ...steps), medianSeconds: median(secs), worstSeconds: Math.max(0, ...secs), boundSeconds: bound },
    redoneDuringOutages: { handovers: outageSecs.length, worstSeconds: Math.max(0, ...outageSecs) },
    problems,
    evidence,
  };
}

const reports: StoreReport[] = [];
for (const store of stores) {
  const r = await runOnStore(store);
  reports.push(r);
  console.log(
    `\n${store}: ${r.completed}/${r.jobs} jobs completed in ${r.seconds} s; ${r.kills} kill -9, ${r.terms} SIGTERM, ${r.freezes} SIGSTOP, ` +
      `${r.coordinatorRestarts} coordinator restarts, ${r.workersStarted} workers started; S3: ${r.s3Requests} requests, ` +
      `${r.injected.errors} answered 500/503, ${r.injected.resets} reset, ${r.injected.slowed} slowed; ` +
      `${r.duplicateCompletions} duplicate completions, ${r.lostOutputs} lost outputs, ${r.staleWrites} stale writes; ` +
      `redone work over ${r.handovers} handovers: median ${r.redone.medianSeconds} s (${r.redone.medianSteps} steps), worst ${r.redone.worstSeconds} s (${r.redone.worstSteps} steps), bound ${r.redone.boundSeconds} s; ` +
      `${r.redoneDuringOutages.handovers} more during coordinator outages, worst ${r.redoneDuringOutages.worstSeconds} s`,
  );
  for (const p of r.problems) console.log(`  FAIL ${p.check}: job ${p.job}: ${p.detail}`);
  for (const [id, lines] of Object.entries(r.evidence)) console.log(`  job ${id}:\n${lines.map((l) => `    ${l}`).join('\n')}`);
}
if (flags.json) writeFileSync(flags.json, `${JSON.stringify(reports, null, 2)}\n`);
const failed = reports.filter((r) => r.problems.length > 0);
console.log(failed.length === 0 ? `\nchaos: every check passed (${reports.map((r) => r.store).join(', ')}; seed ${seed})` : `\nchaos: FAILED on ${failed.map((r) => r.store).join(', ')} (replay with --seed ${seed})`);
process.exit(failed.length === 0 ? 0 : 1);
