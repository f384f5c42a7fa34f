// Failover benchmark: how soon another node runs a job again, from its checkpoint, after the node
// running it dies (kill -9) or is told to stop (SIGTERM).
//
//   npm run bench:failover -- [--runs 5] [--scenario kill|term|both] [--heartbeat 2] [--step-ms 500]
//                             [--steps 80] [--checkpoint-bytes 0] [--settle 1] [--run-before-kill 0] [--finish]
//
// Real parts only: `drover server` as a child process (SQLite), a loopback S3 server (fauxqs, as in
// the storage tests), two real `drover worker` processes on one container group, both idle in a
// long-poll, and the counter app (test/fixtures/counter-app.mjs) as the job: one step every
// --step-ms, a checkpoint file per step, synced to the bucket while it runs (during-sync) and
// downloaded before it starts (before-sync).
//
// Each run: fresh group, fresh worker pair, fresh job. Once the job runs on one worker (A) and has
// uploaded a few checkpoints (and has run --run-before-kill seconds), and after a random delay within one heartbeat interval (so the kill
// falls anywhere in the heartbeat cycle), t0 = now and
//   kill: SIGKILL to A's worker and to the job's process group (the node dies);
//   term: SIGTERM to A's worker only (the app saves a checkpoint, the worker uploads it, releases).
// t1 = the `time` of B's log line carrying the job's stdout "starting at step N". Both are Date.now()
// on the same machine; so are the coordinator's event times, which split t1 - t0 into its parts.
// A run fails unless B resumed from a checkpoint > 0, from the newest one in the bucket (and for
// term, from exactly the one A saved on SIGTERM), and the job then ends cleanly (canceled, or with
// --finish completed with the right output).
import { randomInt } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { DroverClient } from '@drover/sdk';
import type { Job, JobEvent } from '@drover/protocol';
import { freshDatabase, REPO_ROOT, spawnServer } from '../test/helpers/server.js';
import { spawnWorker, type TestWorker, type WorkerLogLine } from '../test/helpers/worker.js';
import { waitFor, waitingLongPolls } from '../test/helpers/wait.js';
import { keysOf, readAll, startBackend, type Backend } from '../test/storage/harness.js';

const APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');
const TARGET_MS = { kill: 5000, term: 2000 } as const;
const TARGET_TEXT = { kill: '<= 5 s', term: '< 2 s' } as const;
const meets = (s: Scenario, ms: number) => (s === 'kill' ? ms <= TARGET_MS.kill : ms < TARGET_MS.term);
const LEASE_FACTOR = 2; // the coordinator's default (drover server --lease-factor)
const MIN_CHECKPOINTS = 3; // uploaded before the kill

type Scenario = 'kill' | 'term';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    scenario: { type: 'string', default: 'both' },
    heartbeat: { type: 'string', default: '2' },
    'step-ms': { type: 'string', default: '500' },
    steps: { type: 'string', default: '80' },
    'checkpoint-bytes': { type: 'string', default: '0' },
    settle: { type: 'string', default: '1' },
    'run-before-kill': { type: 'string', default: '0' },
    finish: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: npm run bench:failover -- [--runs N (5)] [--scenario kill|term|both] [--heartbeat S (2)]\n' +
      '                                [--step-ms MS (500)] [--steps N (80)] [--checkpoint-bytes N (0)]\n' +
      '                                [--settle S (1, the worker default)] [--run-before-kill S (0)]\n' +
      '                                [--finish (let each job complete)]',
  );
  process.exit(0);
}
const whole = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}`);
  return n;
};
const opts = {
  runs: whole('runs', flags.runs, 1),
  heartbeat: whole('heartbeat', flags.heartbeat, 1),
  stepMs: whole('step-ms', flags['step-ms'], 10),
  steps: whole('steps', flags.steps, 10),
  checkpointBytes: whole('checkpoint-bytes', flags['checkpoint-bytes'], 0),
  settle: Number(flags.settle),
  runBeforeKillS: Number(flags['run-before-kill']),
  finish: flags.finish,
};
if (!(opts.settle >= 0)) throw new Error('--settle must be a number >= 0');
if (!(opts.runBeforeKillS >= 0)) throw new Error('--run-before-kill must be a number >= 0');
if (opts.runBeforeKillS * 1000 + 10_000 > opts.steps * opts.stepMs) throw new Error('the job must run at least 10 s past --run-before-kill: raise --steps');
const scenarios: Scenario[] =
  flags.scenario === 'both' ? ['kill', 'term'] : flags.scenario === 'kill' || flags.scenario === 'term' ? [flags.scenario] : [];
if (scenarios.length === 0) throw new Error('--scenario must be kill, term or both');

/** One run's figures, all in ms except the steps. */
interface Run {
  scenario: Scenario;
  run: number;
  totalMs: number;
  /** kill: kill → lease lapse (last heartbeat + lease_factor × interval). term: SIGTERM → app exited. */
  firstMs: number;
  /** kill: lapse → claim (coordinator's `claimed` event). term: app exited → `released` event (last upload, report). */
  secondMs: number;
  /** term only: `released` → `claimed` (B's long-poll woken). */
  wakeMs: number | null;
  /** claim event → B's "claimed a job" log line (the answer reaching B) */
  claimToWorkerMs: number;
  /** B: claimed → before-sync done */
  downloadMs: number;
  /** B: downloaded → job process spawned (during-sync start, spawn) */
  spawnMs: number;
  /** B: spawned → the app's "starting at step N" line */
  appStartMs: number;
  step: number;
  bucketNewest: number;
  /** kill: A's newest local checkpoint − step (work lost); term: A's SIGTERM step − step (must be 0) */
  stepsLost: number;
  filesDownloaded: number;
  /** what this run got wrong (it still counts in the timings; the bench exits 1) */
  problems: string[];
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

const stepOf = (name: string): number | undefined => {
  const m = /ckpt-(\d+)\.json$/.exec(name);
  return m ? Number(m[1]) : undefined;
};
const newest = (names: string[]): number => Math.max(-1, ...names.map(stepOf).filter((n): n is number => n !== undefined));
const timeOf = (l: WorkerLogLine): number => {
  if (typeof l.time !== 'number') throw new Error(`log line without a time: ${JSON.stringify(l)}`);
  return l.time;
};
const eventAt = (events: JobEvent[], type: JobEvent['type'], attempt?: number): number => {
  const e = events.find((x) => x.type === type && (attempt === undefined || x.attempt === attempt));
  if (!e) throw new Error(`no ${type} event${attempt ? ` for attempt ${attempt}` : ''}: ${JSON.stringify(events)}`);
  return Date.parse(e.at);
};

async function oneRun(scenario: Scenario, run: number, ctx: { url: string; client: DroverClient; token: string; s3: Backend }): Promise<Run> {
  const { url, client, token, s3 } = ctx;
  const group = `failover-${scenario}-${run}`;
  const prefix = `${scenario}-${run}/ck/`;
  const outPrefix = `${scenario}-${run}/out/`;
  const env = { DROVER_SYNC_SETTLE_S: String(opts.settle), DROVER_KILL_GRACE_S: '10' };
  const workers = [0, 1].map(() => spawnWorker({ url, key: token, group, storageEnv: s3.env, env }));
  try {
    await waitFor('both workers in a long-poll', async () => (await waitingLongPolls(url)) >= 2, 20_000);
    const job = await client.createJob({
      command: process.execPath,
      arguments: [APP],
      environment: {
        STEPS: String(opts.steps),
        STEP_MS: String(opts.stepMs),
        CHECKPOINT_BYTES: String(opts.checkpointBytes),
        CKPT_DIR: 'ck',
        OUT_DIR: 'out',
      },
      container_group_id: group,
      heartbeat_interval: opts.heartbeat,
      sync: {
        before: [{ bucket: s3.bucket, prefix, local_path: 'ck', direction: 'download' }],
        during: [{ bucket: s3.bucket, prefix, local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: s3.bucket, prefix: outPrefix, local_path: 'out', direction: 'upload' }],
      },
    });
    const isOurs = (l: WorkerLogLine) => l.job === job.id;
    let a: TestWorker | undefined;
    await waitFor('the job to start on a worker', () => (a = workers.find((w) => w.logs.some((l) => isOurs(l) && l.msg === 'job process started'))) !== undefined, 20_000);
    const b = workers.find((w) => w !== a)!;
    const victim = a!;
    await waitFor(`${MIN_CHECKPOINTS} checkpoints in the bucket`, async () => (await keysOf(s3.store, s3.bucket, prefix)).length >= MIN_CHECKPOINTS, 30_000);
    const startedOnA = timeOf(victim.logs.find((l) => isOurs(l) && l.msg === 'job process started')!);
    await sleep(Math.max(0, startedOnA + opts.runBeforeKillS * 1000 - Date.now()));
    await sleep(randomInt(opts.heartbeat * 1000));

    const t0 = Date.now();
    let lastHeartbeat = 0;
    let localNewest = -1;
    if (scenario === 'kill') {
      await victim.killNode();
      // A beat already on the wire when the node died still lands; give it a moment.
      await sleep(300);
      const j: Job = await client.getJob(job.id);
      if (j.machine_id !== victim.machineId) throw new Error(`the job moved before its lease could lapse: ${JSON.stringify(j)}`);
      lastHeartbeat = Date.parse(j.heartbeat!);
      localNewest = newest(readdirSync(join(victim.dataRoot, 'ck')));
    } else {
      victim.signal('SIGTERM');
    }

    const resumed = await b.waitForLog(
      'the job to start again on the other worker',
      (l) => isOurs(l) && l.stream === 'stdout' && /starting at step \d+/.test(l.msg),
      30_000,
    );
    const t1 = timeOf(resumed);
    const step = Number(/starting at step (\d+)/.exec(resumed.msg)![1]);
    // B's own first upload comes ≥ one step + settle after its start: this is still A's newest.
    const bucketNewest = newest(await keysOf(s3.store, s3.bucket, prefix));

    const bLine = (what: string, match: (l: WorkerLogLine) => boolean) => {
      const l = b.logs.find((x) => isOurs(x) && match(x));
      if (!l) throw new Error(`worker B logged no "${what}" for the job`);
      return l;
    };
    const bClaimed = timeOf(bLine('claimed a job', (l) => l.msg === 'claimed a job'));
    const downloadedLine = bLine('downloaded', (l) => l.msg === 'downloaded');
    const bDownloaded = timeOf(downloadedLine);
    const bSpawned = timeOf(bLine('job process started', (l) => l.msg === 'job process started'));
    const events = (await client.jobEvents(job.id)).events;
    const claimed = events.find((e) => e.type === 'claimed' && e.attempt === 2);
    if (!claimed || claimed.machine_id !== b.machineId) throw new Error(`attempt 2 was not claimed by B: ${JSON.stringify(events)}`);
    const claimAt = Date.parse(claimed.at);

    let firstMs: number;
    let secondMs: number;
    let wakeMs: number | null = null;
    let stepsLost: number;
    const problems: string[] = [];
    if (scenario === 'kill') {
      const lapse = lastHeartbeat + LEASE_FACTOR * opts.heartbeat * 1000;
      eventAt(events, 'lease_expired');
      firstMs = lapse - t0;
      secondMs = claimAt - lapse;
      stepsLost = localNewest - step;
    } else {
      const exit = await victim.exited;
      if (exit.code !== 0) throw new Error(`worker A exited with ${JSON.stringify(exit)} after SIGTERM\n${victim.stderr()}`);
      const saved = victim.logs.find((l) => isOurs(l) && l.stream === 'stdout' && /^SIGTERM at step \d+/.test(l.msg));
      if (!saved) throw new Error('the app on A logged no "SIGTERM at step"');
      const savedStep = Number(/SIGTERM at step (\d+)/.exec(saved.msg)![1]);
      const released = eventAt(events, 'released', 1);
      firstMs = timeOf(saved) - t0;
      secondMs = released - timeOf(saved);
      wakeMs = claimAt - released;
      stepsLost = savedStep - step;
      if (stepsLost !== 0) {
        const warning = victim.logs.find((l) => isOurs(l) && l.msg === 'last checkpoint upload failed');
        problems.push(`B resumed from step ${step}, A saved step ${savedStep} on SIGTERM${warning ? ` (A: ${String(warning.err)})` : ''}`);
      }
    }
    if (step <= 0) throw new Error(`B started at step ${step}, not from a checkpoint`);
    if (step !== bucketNewest) throw new Error(`B started at step ${step}, the newest checkpoint in the bucket is ${bucketNewest}`);

    // The end of the run: the job completes (--finish) or is canceled, and B lets go of it cleanly.
    if (opts.finish) {
      await waitFor('the job to complete', async () => (await client.getJob(job.id)).status === 'completed', opts.steps * opts.stepMs + 60_000);
      const out = (await readAll(await s3.store.getStream(s3.bucket, `${outPrefix}result.txt`))).toString();
      if (!out.includes(`done ${opts.steps} steps, started at ${step}`)) throw new Error(`unexpected output: ${out}`);
    } else {
      await client.cancelJob(job.id);
      await b.waitForLog('B to drop the canceled job', (l) => isOurs(l) && l.msg === 'job dropped', 20_000);
      const j = await client.getJob(job.id);
      if (j.status !== 'canceled') throw new Error(`job ${j.status} after cancel`);
    }
    const stopped = await b.stop();
    if (stopped.code !== 0) throw new Error(`worker B exited with ${JSON.stringify(stopped)}\n${b.stderr()}`);

    return {
      scenario,
      run,
      totalMs: t1 - t0,
      firstMs,
      secondMs,
      wakeMs,
      claimToWorkerMs: bClaimed - claimAt,
      downloadMs: bDownloaded - bClaimed,
      spawnMs: bSpawned - bDownloaded,
      appStartMs: t1 - bSpawned,
      step,
      bucketNewest,
      stepsLost,
      filesDownloaded: Number(downloadedLine.files),
      problems,
    };
  } catch (e) {
    for (const [i, w] of workers.entries()) {
      log(`worker ${i} (${w.machineId}) last log lines:\n${w.logs.slice(-40).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-2000)}`);
    }
    throw e;
  } finally {
    for (const w of workers) {
      if (w.proc.exitCode === null && w.proc.signalCode === null) await w.killNode();
      rmSync(w.dataRoot, { recursive: true, force: true });
    }
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((p, q) => p - q);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const stat = (xs: number[]) => `${Math.round(median(xs))} (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})`;

function summary(runs: Run[]): string {
  const lines = [
    '| scenario | runs | median | min | max | target | resumed from step (steps lost) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const s of scenarios) {
    const rs = runs.filter((r) => r.scenario === s);
    if (rs.length === 0) continue;
    const totals = rs.map((r) => r.totalMs);
    const med = median(totals);
    lines.push(
      `| ${s === 'kill' ? 'kill -9' : 'SIGTERM'} | ${rs.length} | **${fmt(med)}** | ${fmt(Math.min(...totals))} | ${fmt(Math.max(...totals))} | ` +
        `${TARGET_TEXT[s]} — ${rs.every((r) => meets(s, r.totalMs)) ? 'met by every run' : meets(s, med) ? 'median met, not every run' : 'MISSED'} | ` +
        `${rs.map((r) => `${r.step} (${r.stepsLost}${r.problems.length > 0 ? ' — WRONG' : ''})`).join(', ')} |`,
    );
  }
  return lines.join('\n');
}

function breakdown(runs: Run[]): string {
  const lines: string[] = [];
  for (const s of scenarios) {
    const rs = runs.filter((r) => r.scenario === s);
    if (rs.length === 0) continue;
    const col = (f: (r: Run) => number) => stat(rs.map(f));
    if (s === 'kill') {
      lines.push(
        '',
        'kill -9, ms: median (min–max)',
        '',
        '| kill → lease lapse | lapse → claim | claim → B has it | download | spawn | app start | total |',
        '|---|---|---|---|---|---|---|',
        `| ${col((r) => r.firstMs)} | ${col((r) => r.secondMs)} | ${col((r) => r.claimToWorkerMs)} | ${col((r) => r.downloadMs)} | ${col((r) => r.spawnMs)} | ${col((r) => r.appStartMs)} | ${col((r) => r.totalMs)} |`,
      );
    } else {
      lines.push(
        '',
        'SIGTERM, ms: median (min–max)',
        '',
        '| SIGTERM → app exited | last upload + release | release → claim | claim → B has it | download | spawn | app start | total |',
        '|---|---|---|---|---|---|---|---|',
        `| ${col((r) => r.firstMs)} | ${col((r) => r.secondMs)} | ${col((r) => r.wakeMs ?? NaN)} | ${col((r) => r.claimToWorkerMs)} | ${col((r) => r.downloadMs)} | ${col((r) => r.spawnMs)} | ${col((r) => r.appStartMs)} | ${col((r) => r.totalMs)} |`,
      );
    }
  }
  return lines.join('\n');
}

const db = await freshDatabase('sqlite');
const adminKey = `admin-${Date.now().toString(36)}`;
const server = await spawnServer({ database: db.database, adminKey });
const s3 = await startBackend('s3');
const runs: Run[] = [];
try {
  const admin = new DroverClient({ url: server.url, key: adminKey, retries: 0 });
  const user = await admin.createUser(`failover-${process.pid}`);
  const { token } = await admin.createToken(user.id);
  const client = new DroverClient({ url: server.url, key: token, retries: 0 });
  for (const scenario of scenarios) {
    for (let i = 1; i <= opts.runs; i++) {
      const r = await oneRun(scenario, i, { url: server.url, client, token, s3 });
      runs.push(r);
      log(
        `${scenario} run ${i}: ${fmt(r.totalMs)} (${scenario === 'kill' ? `lease ${r.firstMs}, lapse→claim ${r.secondMs}` : `app exit ${r.firstMs}, upload+release ${r.secondMs}, release→claim ${r.wakeMs}`}, ` +
          `claim→B ${r.claimToWorkerMs}, download ${r.downloadMs} (${r.filesDownloaded} files), spawn ${r.spawnMs}, app start ${r.appStartMs} ms); ` +
          `resumed at step ${r.step}, newest in bucket ${r.bucketNewest}, steps lost ${r.stepsLost}` +
          (r.problems.length > 0 ? `\n  PROBLEM: ${r.problems.join('; ')}` : ''),
      );
    }
  }
} catch (e) {
  const out = server.output().trim();
  if (out) log(`server output:\n${out.split('\n').slice(-30).join('\n')}`);
  throw e;
} finally {
  await server.stop();
  await s3.close();
  await db.cleanup();
}

console.log(
  `\nFailover: heartbeat_interval ${opts.heartbeat} s, lease factor ${LEASE_FACTOR}, one step (checkpoint) every ${opts.stepMs} ms` +
    `${opts.checkpointBytes > 0 ? ` of ${opts.checkpointBytes} bytes` : ''}, settle ${opts.settle} s` +
    `${opts.runBeforeKillS > 0 ? `, stopped after >= ${opts.runBeforeKillS} s on A` : ''}; ${cpus().length} CPUs, node ${process.version}\n`,
);
console.log(summary(runs));
console.log(breakdown(runs));
const problems = runs.flatMap((r) => r.problems.map((p) => `${r.scenario} run ${r.run}: ${p}`));
if (problems.length > 0) console.log(`\nPROBLEMS (the bench fails):\n  ${problems.join('\n  ')}`);
console.log(
  `\n${JSON.stringify({ bench: 'failover', date: new Date().toISOString(), nproc: cpus().length, node: process.version, opts, runs })}`,
);
if (problems.length > 0) process.exitCode = 1;
