// Failover benchmark: how soon another node runs a job again, from its checkpoint, after the node
// running it dies (kill -9) or is told to stop (SIGTERM).
//
//   npm run bench:failover -- [--runs 5] [--scenario kill|term|rapid|app|sqs|both|all|kill,app,sqs] [--heartbeat 2] [--step-ms 500]
//                             [--steps 80] [--checkpoint-bytes 0] [--settle 1] [--max-wait 5]
//                             [--run-before-kill 0] [--finish]
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
//   rapid: kill -9 as above, but the job is test/fixtures/rapid-checkpoint-app.mjs, which rewrites one
//   checkpoint (state.json, by rename) every 100 ms, so it never holds still for the settle time:
//   what reaches the bucket is what max-wait uploads. The kill falls at a random moment within one
//   max-wait; the run also reports the work lost (A's newest local checkpoint − the one B resumed from,
//   in ms of the app's own clock) against the bound max-wait + one scan + one upload.
//   app: kill -9 as above, but the job is the series-sum app in app mode (`sync: {}`: it downloads its
//   state and uploads it every step itself, with the Checkpointer; the seeds' demo app 3).
//   sqs: as app, but the job comes from an AWS SQS queue (the same fauxqs serves it) and both workers
//   run `drover worker --queue` (demo app 2): the lease is the message's visibility (2 × heartbeat),
//   renewed by ChangeMessageVisibility, and B waits in a ReceiveMessage long-poll.
// The scenarios' runs are interleaved (run 1 of each, then run 2 of each, ...), so a comparison of
// scenarios (e.g. --scenario kill,app,sqs) sees the same machine load.
// t1 = the `time` of B's log line carrying the job's stdout "starting at step N". Both are Date.now()
// on the same machine; so are the coordinator's event times, which split t1 - t0 into its parts.
// A run fails unless B resumed from a checkpoint > 0, from the newest one in the bucket (and for
// term, from exactly the one A saved on SIGTERM), and the job then ends cleanly (canceled, or with
// --finish completed with the right output).
import { randomInt } from 'node:crypto';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { DroverClient } from '@drover/sdk';
import type { Job, JobEvent } from '@drover/protocol';
import { freshDatabase, REPO_ROOT, spawnServer } from '@drover/testing/server';
import { spawnWorker, type TestWorker, type WorkerLogLine } from '@drover/testing/worker';
import { waitFor, waitingLongPolls } from '@drover/testing/wait';
import { keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';
import { startSqs, type SqsHarness } from '@drover/testing/sqs';
import { defaultSqsStatusPrefix, sqsRecordKey, type JobDefinition, type SqsJobRecord } from '@drover/protocol';
import { expectedSum, inputKey, outputKey, seriesSumJob, stateKey, type SeriesOutput, type SeriesState } from '@drover/example-series-sum';
import { SendMessageCommand, PurgeQueueCommand } from '@aws-sdk/client-sqs';
import { wholeFlag } from './lib/flags.js';

const APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');
const RAPID_APP = join(REPO_ROOT, 'test/fixtures/rapid-checkpoint-app.mjs');
const TARGET_MS = { kill: 5000, term: 2000, rapid: 5000, app: 5000, sqs: 5000 } as const;
const TARGET_TEXT = { kill: '<= 5 s', term: '< 2 s', rapid: '<= 5 s', app: '<= 5 s', sqs: '<= 5 s' } as const;
const meets = (s: Scenario, ms: number) => (s === 'term' ? ms < TARGET_MS.term : ms <= TARGET_MS[s]);
const LEASE_FACTOR = 2; // the coordinator's default (drover server --lease-factor)
const MIN_CHECKPOINTS = 3; // uploaded before the kill
const RAPID_CADENCE_MS = 100;
const SCAN_MS = 500; // the worker's default scan interval (settle 1 s)

type Scenario = 'kill' | 'term' | 'rapid' | 'app' | 'sqs';
const SCENARIOS: readonly Scenario[] = ['kill', 'term', 'rapid', 'app', 'sqs'];
const SCENARIO_TEXT: Record<Scenario, string> = {
  kill: 'kill -9',
  term: 'SIGTERM',
  rapid: `kill -9, checkpoint every ${RAPID_CADENCE_MS} ms`,
  app: 'kill -9, app-managed data (coordinator)',
  sqs: 'kill -9, app-managed data, SQS queue',
};

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    scenario: { type: 'string', default: 'all' },
    heartbeat: { type: 'string', default: '2' },
    'step-ms': { type: 'string', default: '500' },
    steps: { type: 'string', default: '80' },
    'checkpoint-bytes': { type: 'string', default: '0' },
    settle: { type: 'string', default: '1' },
    'max-wait': { type: 'string', default: '5' },
    'run-before-kill': { type: 'string', default: '0' },
    finish: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: npm run bench:failover -- [--runs N (5)] [--scenario kill|term|rapid|app|sqs|both|all, or a list: kill,app,sqs (all)] [--heartbeat S (2)]\n' +
      '                                [--step-ms MS (500)] [--steps N (80)] [--checkpoint-bytes N (0)]\n' +
      '                                [--settle S (1, the worker default)] [--max-wait S (5, the worker default)]\n' +
      '                                [--run-before-kill S (0)]\n' +
      '                                [--finish (let each job complete)]',
  );
  process.exit(0);
}
const opts = {
  runs: wholeFlag('runs', flags.runs, 1),
  heartbeat: wholeFlag('heartbeat', flags.heartbeat, 1),
  stepMs: wholeFlag('step-ms', flags['step-ms'], 10),
  steps: wholeFlag('steps', flags.steps, 10),
  checkpointBytes: wholeFlag('checkpoint-bytes', flags['checkpoint-bytes'], 0),
  settle: Number(flags.settle),
  maxWait: Number(flags['max-wait']),
  runBeforeKillS: Number(flags['run-before-kill']),
  finish: flags.finish,
};
if (!(opts.settle >= 0)) throw new Error('--settle must be a number >= 0');
if (!(opts.maxWait >= 0)) throw new Error('--max-wait must be a number >= 0');
if (!(opts.runBeforeKillS >= 0)) throw new Error('--run-before-kill must be a number >= 0');
if (opts.runBeforeKillS * 1000 + 10_000 > opts.steps * opts.stepMs) throw new Error('the job must run at least 10 s past --run-before-kill: raise --steps');
const scenarios: Scenario[] =
  flags.scenario === 'all' ? [...SCENARIOS]
    : flags.scenario === 'both' ? ['kill', 'term']
      : (flags.scenario ?? '').split(',').every((x) => (SCENARIOS as readonly string[]).includes(x)) ? [...new Set((flags.scenario ?? '').split(',') as Scenario[])] : [];
if (scenarios.length === 0) throw new Error('--scenario must be kill, term, rapid, app, sqs, both (kill and term), all, or a list such as kill,app,sqs');
/** The rapid scenario's job: 100 ms cadence, long enough for a kill at any point of max-wait and the resume. */
const rapidSteps = Math.ceil((opts.runBeforeKillS * 1000 + opts.maxWait * 1000 + 30_000) / RAPID_CADENCE_MS);

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
  /** rapid: the work lost in ms (the app's clock: A's newest local checkpoint − the one B resumed from) */
  lostMs: number | null;
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

const WORKER_ENV = { DROVER_SYNC_SETTLE_S: String(opts.settle), DROVER_SYNC_MAX_WAIT_S: String(opts.maxWait), DROVER_KILL_GRACE_S: '10' };

/** The run's job: the counter app (or the rapid one), its checkpoints synced to `prefix` while it runs. */
function counterJob(s3: Backend, group: string, prefix: string, outPrefix: string, rapid: boolean): JobDefinition {
  return {
    command: process.execPath,
    arguments: [rapid ? RAPID_APP : APP],
    environment: rapid
      ? { STEPS: String(rapidSteps), CKPT_MS: String(RAPID_CADENCE_MS), CKPT_DIR: 'ck' }
      : { STEPS: String(opts.steps), STEP_MS: String(opts.stepMs), CHECKPOINT_BYTES: String(opts.checkpointBytes), CKPT_DIR: 'ck', OUT_DIR: 'out' },
    container_group_id: group,
    heartbeat_interval: opts.heartbeat,
    sync: {
      before: [{ bucket: s3.bucket, prefix, local_path: 'ck', direction: 'download' }],
      during: [{ bucket: s3.bucket, prefix, local_path: 'ck', direction: 'upload', pattern: rapid ? 'state.json' : 'ckpt-*' }],
      after: rapid ? [] : [{ bucket: s3.bucket, prefix: outPrefix, local_path: 'out', direction: 'upload' }],
    },
  };
}

/**
 * Until the job runs on one of the workers (A) and has uploaded MIN_CHECKPOINTS (rapid: two uploads
 * of its one checkpoint) and run --run-before-kill; then a random wait, so the kill falls anywhere
 * in the heartbeat cycle (rapid: in the cycle of max-wait uploads too).
 */
async function untilKillable(workers: TestWorker[], jobId: string, s3: Backend, prefix: string, rapid = false): Promise<{ a: TestWorker; b: TestWorker }> {
  const isOurs = (l: WorkerLogLine) => l.job === jobId;
  let found: TestWorker | undefined;
  await waitFor('the job to start on a worker', () => (found = workers.find((w) => w.logs.some((l) => isOurs(l) && l.msg === 'job process started'))) !== undefined, 20_000);
  const a = found!;
  if (rapid) {
    await waitFor('2 uploads of the checkpoint', () => a.logs.filter((l) => isOurs(l) && l.msg === 'uploaded').length >= 2, 30_000);
  } else {
    await waitFor(`${MIN_CHECKPOINTS} checkpoints in the bucket`, async () => (await keysOf(s3.store, s3.bucket, prefix)).length >= MIN_CHECKPOINTS, 30_000);
  }
  const startedOnA = timeOf(a.logs.find((l) => isOurs(l) && l.msg === 'job process started')!);
  await sleep(Math.max(0, startedOnA + opts.runBeforeKillS * 1000 - Date.now()));
  await sleep(randomInt(Math.max(opts.heartbeat, rapid ? opts.maxWait : 0) * 1000));
  return { a, b: workers.find((w) => w !== a)! };
}

/** B's timestamps for the job: claimed, downloaded (and how many files; an app-managed job has no before-sync), spawned. */
function bTimes(b: TestWorker, jobId: string): { claimed: number; downloaded: number; files: number; spawned: number } {
  const line = (what: string) => b.logs.find((x) => x.job === jobId && x.msg === what);
  const need = (what: string) => {
    const l = line(what);
    if (!l) throw new Error(`worker B logged no "${what}" for the job`);
    return timeOf(l);
  };
  const claimed = need('claimed a job');
  const downloaded = line('downloaded');
  return { claimed, downloaded: downloaded ? timeOf(downloaded) : claimed, files: Number(downloaded?.files ?? 0), spawned: need('job process started') };
}

function dumpWorkers(workers: TestWorker[]): void {
  for (const [i, w] of workers.entries()) {
    log(`worker ${i} (${w.machineId}) last log lines:\n${w.logs.slice(-40).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-2000)}`);
  }
}

async function stopWorkers(workers: TestWorker[]): Promise<void> {
  for (const w of workers) {
    if (w.proc.exitCode === null && w.proc.signalCode === null) await w.killNode();
    rmSync(w.dataRoot, { recursive: true, force: true });
  }
}

/**
 * The app-managed scenarios: the series-sum app in app mode (`sync: {}`, the Checkpointer's upload
 * thread and queue) as the job, from the coordinator (`app`, the seeds' demo app 3) or from an SQS
 * queue (`sqs`, demo app 2), and the same kill -9. A checkpoint is the app's state.json in the
 * bucket; the app saves it every step. With SQS the lapse is A's last heartbeat (in its job record,
 * written right after each ChangeMessageVisibility) + the lease.
 */
async function oneAppRun(scenario: 'app' | 'sqs', run: number, ctx: { s3: Backend; sqs: SqsHarness; url: string; adminKey: string; client: DroverClient; token: string }): Promise<Run> {
  const { s3, sqs, url, adminKey, client, token } = ctx;
  const q = scenario === 'sqs' ? await sqs.queue({ redrive: true }) : undefined;
  const group = q?.name ?? `failover-${scenario}-${run}`;
  const prefix = `${scenario}-${run}/`;
  const stepS = opts.stepMs / 1000;
  const workers = [0, 1].map(() =>
    q ? spawnWorker({ url: '', key: '', group: '', storageEnv: sqs.env(q), env: WORKER_ENV }) : spawnWorker({ url, key: token, group, storageEnv: s3.env, env: WORKER_ENV }),
  );
  const stateAt = async (): Promise<number> => {
    try {
      return (JSON.parse((await readAll(await s3.store.getStream(s3.bucket, stateKey(prefix)))).toString()) as SeriesState).step;
    } catch {
      return -1;
    }
  };
  const recordOf = async (id: string) =>
    JSON.parse((await readAll(await s3.store.getStream(s3.bucket, sqsRecordKey(defaultSqsStatusPrefix(q!.name), id)))).toString()) as SqsJobRecord;
  try {
    if (q) await Promise.all(workers.map((w) => w.waitForLog('the worker to wait for work', (l) => l.msg === 'drover worker started')));
    else await waitFor('both workers in a long-poll', async () => (await waitingLongPolls({ url, adminKey })) >= 2, 20_000);
    await s3.store.put(s3.bucket, inputKey(prefix), Buffer.from(JSON.stringify({ start: 1, end: opts.steps })));
    const def = seriesSumJob({ mode: 'app', bucket: s3.bucket, prefix, containerGroupId: group, stepSeconds: stepS, saveIntervalSeconds: stepS, heartbeatInterval: opts.heartbeat });
    const jobId = q
      ? (await sqs.client.send(new SendMessageCommand({ QueueUrl: q.url, MessageBody: JSON.stringify(def) }))).MessageId!
      : (await client.createJob(def)).id;
    let a: TestWorker | undefined;
    await waitFor('the job to start on a worker', () => (a = workers.find((w) => w.logs.some((l) => l.job === jobId && l.msg === 'job process started'))) !== undefined, 20_000);
    const victim = a!;
    const b = workers.find((w) => w !== victim)!;
    await waitFor(`a state past step ${MIN_CHECKPOINTS} in the bucket`, async () => (await stateAt()) >= MIN_CHECKPOINTS, 30_000);
    await sleep(Math.max(0, timeOf(victim.logs.find((l) => l.job === jobId && l.msg === 'job process started')!) + opts.runBeforeKillS * 1000 - Date.now()));
    await sleep(randomInt(opts.heartbeat * 1000));

    const t0 = Date.now();
    await victim.killNode();
    await sleep(300); // a heartbeat or an upload already on the wire still lands
    const bucketNewest = await stateAt();
    const local = JSON.parse(readFileSync(join(victim.dataRoot, 'series-sum-app', jobId, 'state', 'state.json'), 'utf8')) as SeriesState;
    let lastHeartbeat: number;
    let leaseMs: number;
    if (q) {
      const held = await recordOf(jobId);
      if (held.machine_id !== victim.machineId) throw new Error(`the job moved before its lease could lapse: ${JSON.stringify(held)}`);
      lastHeartbeat = Date.parse(held.heartbeat!);
      leaseMs = held.lease_timeout * 1000;
    } else {
      const j = await client.getJob(jobId);
      if (j.machine_id !== victim.machineId) throw new Error(`the job moved before its lease could lapse: ${JSON.stringify(j)}`);
      lastHeartbeat = Date.parse(j.heartbeat!);
      leaseMs = LEASE_FACTOR * opts.heartbeat * 1000;
    }
    const startLine = /resumed \S+ at step (\d+) of/;
    const resumed = await b.waitForLog('the job to start again on the other worker', (l) => l.job === jobId && l.stream === 'stdout' && startLine.test(l.msg), 30_000);
    const t1 = timeOf(resumed);
    const step = Number(startLine.exec(resumed.msg)![1]);
    const bt = bTimes(b, jobId);
    const lapse = lastHeartbeat + leaseMs;
    let claimAt = bt.claimed;
    if (q) {
      const r = await recordOf(jobId);
      if (r.attempt !== 2 || r.machine_id !== b.machineId) throw new Error(`attempt 2 was not claimed by B: ${JSON.stringify(r)}`);
    } else {
      const claimed = (await client.jobEvents(jobId)).events.find((e) => e.type === 'claimed' && e.attempt === 2);
      if (!claimed || claimed.machine_id !== b.machineId) throw new Error(`attempt 2 was not claimed by B`);
      claimAt = Date.parse(claimed.at);
    }
    if (step <= 0) throw new Error(`B started at step ${step}, not from a checkpoint`);
    if (step !== bucketNewest) throw new Error(`B started at step ${step}, the newest state in the bucket after the kill was ${bucketNewest}`);
    if (opts.finish) {
      const done = async () => (q ? (await recordOf(jobId)).status : (await client.getJob(jobId)).status) === 'completed';
      await waitFor('the job to complete', done, opts.steps * opts.stepMs + 60_000);
      const out = JSON.parse((await readAll(await s3.store.getStream(s3.bucket, outputKey(prefix)))).toString()) as SeriesOutput;
      if (out.sum !== expectedSum(1, opts.steps).toString()) throw new Error(`the sum is ${out.sum}, not ${expectedSum(1, opts.steps)}`);
    } else if (q) {
      // SQS has no cancel: purging the queue takes the message from B, which drops the job at its next heartbeat.
      await sqs.client.send(new PurgeQueueCommand({ QueueUrl: q.url }));
      await b.waitForLog('B to drop the job', (l) => l.job === jobId && l.msg === 'job dropped', 20_000);
    } else {
      await client.cancelJob(jobId);
      await b.waitForLog('B to drop the canceled job', (l) => l.job === jobId && l.msg === 'job dropped', 20_000);
    }
    const stopped = await b.stop();
    if (stopped.code !== 0) throw new Error(`worker B exited with ${JSON.stringify(stopped)}\n${b.stderr()}`);
    return {
      scenario,
      run,
      totalMs: t1 - t0,
      firstMs: lapse - t0,
      secondMs: claimAt - lapse,
      wakeMs: null,
      claimToWorkerMs: bt.claimed - claimAt,
      downloadMs: bt.downloaded - bt.claimed,
      spawnMs: bt.spawned - bt.downloaded,
      appStartMs: t1 - bt.spawned,
      step,
      bucketNewest,
      stepsLost: local.step - step,
      lostMs: null,
      filesDownloaded: bt.files,
      problems: [],
    };
  } catch (e) {
    dumpWorkers(workers);
    throw e;
  } finally {
    await stopWorkers(workers);
  }
}

async function oneRun(scenario: Scenario, run: number, ctx: { url: string; adminKey: string; client: DroverClient; token: string; s3: Backend }): Promise<Run> {
  const { url, adminKey, client, token, s3 } = ctx;
  const group = `failover-${scenario}-${run}`;
  const prefix = `${scenario}-${run}/ck/`;
  const outPrefix = `${scenario}-${run}/out/`;
  const workers = [0, 1].map(() => spawnWorker({ url, key: token, group, storageEnv: s3.env, env: WORKER_ENV }));
  const rapid = scenario === 'rapid';
  try {
    await waitFor('both workers in a long-poll', async () => (await waitingLongPolls({ url, adminKey })) >= 2, 20_000);
    const job = await client.createJob(counterJob(s3, group, prefix, outPrefix, rapid));
    /** rapid: the checkpoint A holds locally, or the one in the bucket. */
    const rapidState = (text: string) => JSON.parse(text) as { step: number; at: number };
    const bucketState = async () => rapidState((await readAll(await s3.store.getStream(s3.bucket, `${prefix}state.json`))).toString());
    const isOurs = (l: WorkerLogLine) => l.job === job.id;
    const { a: victim, b } = await untilKillable(workers, job.id, s3, prefix, rapid);

    const t0 = Date.now();
    let lastHeartbeat = 0;
    let localNewest = -1;
    let localAt = 0;
    if (scenario !== 'term') {
      await victim.killNode();
      // A beat already on the wire when the node died still lands; give it a moment.
      await sleep(300);
      const j: Job = await client.getJob(job.id);
      if (j.machine_id !== victim.machineId) throw new Error(`the job moved before its lease could lapse: ${JSON.stringify(j)}`);
      lastHeartbeat = Date.parse(j.heartbeat!);
      if (rapid) {
        const local = rapidState(readFileSync(join(victim.dataRoot, 'ck', 'state.json'), 'utf8'));
        localNewest = local.step;
        localAt = local.at;
      } else localNewest = newest(readdirSync(join(victim.dataRoot, 'ck')));
    } else {
      victim.signal('SIGTERM');
    }

    const startLine = rapid ? /resumed at step (\d+)/ : /starting at step (\d+)/;
    const resumed = await b.waitForLog(
      'the job to start again on the other worker',
      (l) => isOurs(l) && l.stream === 'stdout' && startLine.test(l.msg),
      30_000,
    );
    const t1 = timeOf(resumed);
    const step = Number(startLine.exec(resumed.msg)![1]);
    // B's own first upload comes ≥ one step + settle (rapid: max-wait) after its start: this is still A's newest.
    const resumedState = rapid ? await bucketState() : undefined;
    const bucketNewest = resumedState ? resumedState.step : newest(await keysOf(s3.store, s3.bucket, prefix));

    const bt = bTimes(b, job.id);
    const events = (await client.jobEvents(job.id)).events;
    const claimed = events.find((e) => e.type === 'claimed' && e.attempt === 2);
    if (!claimed || claimed.machine_id !== b.machineId) throw new Error(`attempt 2 was not claimed by B: ${JSON.stringify(events)}`);
    const claimAt = Date.parse(claimed.at);

    let firstMs: number;
    let secondMs: number;
    let wakeMs: number | null = null;
    let stepsLost: number;
    let lostMs: number | null = null;
    const problems: string[] = [];
    if (scenario !== 'term') {
      const lapse = lastHeartbeat + LEASE_FACTOR * opts.heartbeat * 1000;
      eventAt(events, 'lease_expired');
      firstMs = lapse - t0;
      secondMs = claimAt - lapse;
      stepsLost = localNewest - step;
      if (resumedState) {
        lostMs = localAt - resumedState.at;
        const oneUpload = Math.max(...victim.logs.filter((l) => isOurs(l) && l.msg === 'uploaded').map((l) => Number(l.durationMs)));
        const bound = opts.maxWait * 1000 + SCAN_MS + oneUpload;
        if (lostMs > bound) problems.push(`lost ${lostMs} ms of work, over the bound max-wait + scan + one upload = ${bound} ms`);
      }
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
      claimToWorkerMs: bt.claimed - claimAt,
      downloadMs: bt.downloaded - bt.claimed,
      spawnMs: bt.spawned - bt.downloaded,
      appStartMs: t1 - bt.spawned,
      step,
      bucketNewest,
      stepsLost,
      lostMs,
      filesDownloaded: bt.files,
      problems,
    };
  } catch (e) {
    dumpWorkers(workers);
    throw e;
  } finally {
    await stopWorkers(workers);
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
      `| ${SCENARIO_TEXT[s]} | ${rs.length} | **${fmt(med)}** | ${fmt(Math.min(...totals))} | ${fmt(Math.max(...totals))} | ` +
        `${TARGET_TEXT[s]} — ${rs.every((r) => meets(s, r.totalMs)) ? 'met by every run' : meets(s, med) ? 'median met, not every run' : 'MISSED'} | ` +
        `${rs.map((r) => `${r.step} (${r.stepsLost}${r.lostMs !== null ? `, ${(r.lostMs / 1000).toFixed(1)} s` : ''}${r.problems.length > 0 ? ' — WRONG' : ''})`).join(', ')} |`,
    );
  }
  // Side by side in one run, on the same load: the queue (same data management), and the data management (same queue).
  const totals = (x: Scenario) => runs.filter((r) => r.scenario === x).map((r) => r.totalMs);
  const ratio = (a: Scenario, b: Scenario, what: string) => {
    if (totals(a).length > 0 && totals(b).length > 0) lines.push('', `${what}, median kill -9 failover: **${(median(totals(a)) / median(totals(b))).toFixed(2)}×**`);
  };
  ratio('sqs', 'app', 'SQS queue / coordinator (both app-managed)');
  ratio('app', 'kill', 'app-managed / worker-managed data (both coordinator)');
  return lines.join('\n');
}

function breakdown(runs: Run[]): string {
  const lines: string[] = [];
  for (const s of scenarios) {
    const rs = runs.filter((r) => r.scenario === s);
    if (rs.length === 0) continue;
    const col = (f: (r: Run) => number) => stat(rs.map(f));
    if (s === 'kill' || s === 'rapid' || s === 'app') {
      const lost = s === 'rapid' ? ` | ${col((r) => r.lostMs ?? NaN)}` : '';
      lines.push(
        '',
        `${s === 'rapid' ? `kill -9 with a checkpoint every ${RAPID_CADENCE_MS} ms (max-wait ${opts.maxWait} s)` : SCENARIO_TEXT[s]}, ms: median (min–max)`,
        '',
        `| kill → lease lapse | lapse → claim | claim → B has it | download | spawn | app start | total${s === 'rapid' ? ' | work lost' : ''} |`,
        `|---|---|---|---|---|---|---|${s === 'rapid' ? '---|' : ''}`,
        `| ${col((r) => r.firstMs)} | ${col((r) => r.secondMs)} | ${col((r) => r.claimToWorkerMs)} | ${col((r) => r.downloadMs)} | ${col((r) => r.spawnMs)} | ${col((r) => r.appStartMs)} | ${col((r) => r.totalMs)}${lost} |`,
      );
    } else if (s === 'sqs') {
      lines.push(
        '',
        `${SCENARIO_TEXT[s]}, ms: median (min–max)`,
        '',
        '| kill → visibility lapse | lapse → B claimed (receive, record) | download | spawn | app start (its own download) | total |',
        '|---|---|---|---|---|---|',
        `| ${col((r) => r.firstMs)} | ${col((r) => r.secondMs)} | ${col((r) => r.downloadMs)} | ${col((r) => r.spawnMs)} | ${col((r) => r.appStartMs)} | ${col((r) => r.totalMs)} |`,
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
const sqs = await startSqs(s3);
const runs: Run[] = [];
try {
  const admin = new DroverClient({ url: server.url, key: adminKey, retries: 0 });
  const user = await admin.createUser(`failover-${process.pid}`);
  const { token } = await admin.createToken(user.id);
  const client = new DroverClient({ url: server.url, key: token, retries: 0 });
  for (let i = 1; i <= opts.runs; i++) {
    for (const scenario of scenarios) {
      const r = scenario === 'app' || scenario === 'sqs'
        ? await oneAppRun(scenario, i, { s3, sqs, url: server.url, adminKey, client, token })
        : await oneRun(scenario, i, { url: server.url, adminKey, client, token, s3 });
      runs.push(r);
      log(
        `${scenario} run ${i}: ${fmt(r.totalMs)} (${scenario !== 'term' ? `lease ${r.firstMs}, lapse→claim ${r.secondMs}` : `app exit ${r.firstMs}, upload+release ${r.secondMs}, release→claim ${r.wakeMs}`}, ` +
          `claim→B ${r.claimToWorkerMs}, download ${r.downloadMs} (${r.filesDownloaded} files), spawn ${r.spawnMs}, app start ${r.appStartMs} ms); ` +
          `resumed at step ${r.step}, newest in bucket ${r.bucketNewest}, steps lost ${r.stepsLost}${r.lostMs !== null ? ` (${r.lostMs} ms of work)` : ''}` +
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
  await sqs.close();
  await s3.close();
  await db.cleanup();
}

console.log(
  `\nFailover: heartbeat_interval ${opts.heartbeat} s, lease factor ${LEASE_FACTOR}, one step (checkpoint) every ${opts.stepMs} ms${scenarios.includes('rapid') ? ` (rapid: ${RAPID_CADENCE_MS} ms)` : ''}` +
    `${opts.checkpointBytes > 0 ? ` of ${opts.checkpointBytes} bytes` : ''}, settle ${opts.settle} s, max-wait ${opts.maxWait} s` +
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
