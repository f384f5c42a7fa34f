// `drover demo`: the seeds' demo run on a local cluster. Inputs for N series-sum jobs are uploaded,
// the jobs submitted (worker-managed and app-managed data, alternating), one worker is killed with
// SIGKILL mid-run and replaced, progress is shown live, and every sum is checked against the
// closed form. True only when every job completed with the exact sum. With `queue`, the jobs go
// through that AWS SQS queue instead of the coordinator (the seeds' demo app 2): the workers run
// `drover worker --queue`, and the progress shown is their job records.
import { rm } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { defaultSqsStatusPrefix, type Job, type JobDefinition } from '@drover/protocol';
import { expectedSum, inputKey, outputKey, seriesSumJob } from '@drover/example-series-sum';
import { openStore, type ObjectStore } from '@drover/storage';
import { type ClusterSettings, type LocalCluster, startLocalCluster } from './local-cluster.js';
import { formatDuration, formatTable, paint, paintStatus } from '../lib/output.js';
import type { SqsQueue } from '@drover/worker/sqs';
import { openQueue } from '../lib/queue.js';

export interface DemoOptions extends ClusterSettings {
  jobs: number;
  mode: 'worker' | 'app' | 'both';
  stepSeconds: number;
  steps: number;
  timeoutS: number;
  kill: boolean;
  /** An SQS queue (URL or sqs://<name>, with a dead-letter queue) to run the jobs through, instead of the coordinator. */
  queue?: string;
}

/** What the live table shows of a job: the coordinator's document, or the SQS job record. */
type JobView = Pick<Job, 'machine_id' | 'attempt' | 'progress'> & { status: string };

interface DemoJob {
  n: number;
  id: string;
  mode: 'worker' | 'app';
  prefix: string;
  start: bigint;
  end: bigint;
  job?: JobView;
}

/** Where the demo's jobs go and how it follows them. */
interface JobSide {
  submit(def: JobDefinition): Promise<string>;
  get(id: string): Promise<JobView>;
}

function coordinatorSide(cluster: LocalCluster): JobSide {
  return {
    submit: async (def) => (await cluster.client.createJob(def)).id,
    get: (id) => cluster.client.getJob(id),
  };
}

/** The job records go to the demo's own bucket, beside the jobs' data. */
async function queueSide(queue: SqsQueue, store: ObjectStore, bucket: string): Promise<JobSide> {
  const { SqsRecords } = await import('@drover/worker/sqs');
  const records = new SqsRecords(store, bucket, defaultSqsStatusPrefix(queue.name));
  return {
    submit: (def) => queue.send(JSON.stringify(def)),
    get: async (id) => (await records.get(id)) ?? { status: 'pending', machine_id: null, attempt: 0, progress: null },
  };
}

interface Result {
  sum?: string;
  machines?: string[];
  error?: string;
}

const FINISHED = new Set(['completed', 'failed', 'canceled', 'dead-lettered']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => process.stdout.write(`${line}\n`);

export async function runDemo(opts: DemoOptions): Promise<boolean> {
  const began = Date.now();
  // The demo's folder is its own: start from nothing so every run does the same thing.
  await rm(opts.dir, { recursive: true, force: true });
  const queue = opts.queue !== undefined ? await openQueue({ queue: opts.queue }) : undefined;
  const cluster = await startLocalCluster({
    ...opts,
    // Files settle fast in the demo's short runs.
    workerEnv: {
      DROVER_SYNC_SETTLE_S: '0.2',
      DROVER_KILL_GRACE_S: '3',
      ...(queue ? { DROVER_SQS_QUEUE_URL: queue.url, DROVER_SQS_STATUS_BUCKET: opts.bucket } : {}),
    },
  }).catch((err: unknown) => {
    queue?.close();
    throw err;
  });
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    say(`${paint('bold', 'drover demo')}: jobs through ${queue ? `SQS queue ${queue.url}` : `the coordinator ${cluster.url}`}, ${opts.workers} workers, storage ${cluster.storage}`);
    // Through SQS the jobs never reach the coordinator: its dashboard would show none.
    if (!queue) say(`dashboard ${cluster.url}/ui/   (sign in with the API key ${cluster.key}; it shows the jobs, the kill and the resume live)`);
    const bucket = openStore({ storage: cluster.storage });
    const side = queue ? await queueSide(queue, bucket, opts.bucket) : coordinatorSide(cluster);
    const jobs: DemoJob[] = [];
    for (let n = 1; n <= opts.jobs; n++) {
      const mode = opts.mode === 'both' ? (n % 2 === 1 ? 'worker' : 'app') : opts.mode;
      // Sums past 2^53, so only exact (BigInt) arithmetic gets them right.
      const start = 10n ** 15n + BigInt(n) * 10n ** 12n + 1n;
      const end = start + BigInt(opts.steps) - 1n;
      const prefix = `series-sum/job-${n}/`;
      await bucket.put(opts.bucket, inputKey(prefix), Buffer.from(JSON.stringify({ start: start.toString(), end: end.toString() })));
      const def = seriesSumJob({
        mode,
        bucket: opts.bucket,
        prefix,
        containerGroupId: opts.containerGroupId,
        stepSeconds: opts.stepSeconds,
        saveIntervalSeconds: Math.max(opts.stepSeconds * 5, 0.5),
        heartbeatInterval: 1,
      });
      jobs.push({ n, id: await side.submit(def), mode, prefix, start, end });
    }
    say(`uploaded ${jobs.length} inputs and submitted ${jobs.length} jobs (${opts.mode === 'both' ? 'worker- and app-managed data, alternating' : `${opts.mode}-managed data`})`);

    const deadline = began + opts.timeoutS * 1000;
    const live = new LiveTable(jobs);
    let killed = !opts.kill;
    while (!interrupted) {
      for (const j of jobs) j.job = await side.get(j.id);
      live.render();
      if (jobs.every((j) => FINISHED.has(j.job?.status ?? ''))) break;
      if (Date.now() > deadline) {
        say(paint('red', `timed out after ${opts.timeoutS} s`));
        break;
      }
      // A node disappears mid-run: once a job is a third done (so its state has been saved),
      // kill -9 its worker and the job with it, then start a replacement node.
      const victim = killed ? undefined : jobs.find((j) => j.job?.status === 'running' && (j.job.progress?.fraction ?? 0) >= 0.3 && j.job.machine_id);
      if (victim?.job?.machine_id) {
        killed = true;
        const machine = victim.job.machine_id;
        await cluster.killNode(machine);
        const fresh = cluster.addWorker();
        live.note(
          `${paint('red', `kill -9 ${machine}`)} while it ran job ${victim.n} at ${Math.round((victim.job.progress?.fraction ?? 0) * 100)}%; ` +
            `started ${fresh.machineId} in its place`,
        );
      }
      await sleep(500);
    }

    const results = await Promise.all(
      jobs.map(async (j): Promise<Result> => {
        try {
          return JSON.parse(await text(await bucket.getStream(opts.bucket, outputKey(j.prefix)))) as Result;
        } catch (err) {
          return { error: `no output: ${(err as Error).message}` };
        }
      }),
    );
    const rows = jobs.map((j, i) => {
      const r = results[i] as Result;
      const expected = expectedSum(j.start, j.end).toString();
      return { j, r, expected, exact: j.job?.status === 'completed' && r.sum === expected };
    });
    say('');
    process.stdout.write(
      formatTable(rows, [
        { header: 'JOB', value: (x) => String(x.j.n) },
        { header: 'DATA', value: (x) => x.j.mode },
        { header: 'STATUS', value: (x) => paintStatus(x.j.job?.status ?? '?') },
        { header: 'RANGE', value: (x) => `${x.j.start}..${x.j.end}` },
        { header: 'SUM', value: (x) => x.r.sum ?? x.r.error ?? '-', align: 'right' },
        { header: 'CLOSED FORM', value: (x) => x.expected, align: 'right' },
        { header: 'MACHINES', value: (x) => (x.r.machines ?? []).join(',') },
        { header: 'EXACT', value: (x) => (x.exact ? paint('green', 'yes') : paint('red', 'NO')) },
      ]),
    );
    const exact = rows.filter((x) => x.exact).length;
    const ok = exact === rows.length && !interrupted;
    say(
      `\n${ok ? paint('green', 'every sum is exact') : paint('red', `${rows.length - exact} of ${rows.length} sums are not exact`)}` +
        ` (${formatDuration((Date.now() - began) / 1000)}; logs in ${opts.dir}/logs)`,
    );
    if (!ok && opts.queue !== undefined) say(`the unfinished jobs' messages are still in the queue: drover queue purge --queue ${opts.queue} --yes`);
    return ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cluster.stop();
    queue?.close();
  }
}

/** The jobs' progress: redrawn in place on a terminal; on a pipe, a line whenever a job changes. */
class LiveTable {
  private drawn = 0;
  private readonly notes: string[] = [];
  private readonly last = new Map<string, string>();
  private readonly tty = Boolean(process.stdout.isTTY);

  constructor(private readonly jobs: DemoJob[]) {}

  note(line: string): void {
    if (this.tty) this.notes.push(line);
    else say(line);
  }

  render(): void {
    if (!this.tty) {
      for (const j of this.jobs) {
        const line = describe(j);
        const bucket = `${j.job?.status}:${Math.floor((j.job?.progress?.fraction ?? 0) * 4)}:${j.job?.machine_id}`;
        if (this.last.get(j.id) !== bucket) {
          this.last.set(j.id, bucket);
          say(line);
        }
      }
      return;
    }
    const text =
      this.notes.map((n) => `${n}\n`).join('') +
      formatTable(this.jobs, [
        { header: 'JOB', value: (j) => String(j.n) },
        { header: 'DATA', value: (j) => j.mode },
        { header: 'STATUS', value: (j) => paintStatus(j.job?.status ?? '?') },
        { header: 'MACHINE', value: (j) => j.job?.machine_id ?? '-' },
        { header: 'ATTEMPT', value: (j) => String(j.job?.attempt ?? 0), align: 'right' },
        { header: 'PROGRESS', value: (j) => bar(j.job?.progress?.fraction ?? (j.job?.status === 'completed' ? 1 : 0)) },
        { header: '', value: (j) => j.job?.progress?.message ?? '' },
      ]);
    if (this.drawn > 0) process.stdout.write(`\u001b[${this.drawn}A\u001b[J`);
    process.stdout.write(text);
    this.drawn = text.split('\n').length - 1;
  }
}

function describe(j: DemoJob): string {
  const p = j.job?.progress;
  return `job ${j.n} (${j.mode}): ${j.job?.status ?? '?'}${j.job?.machine_id ? ` on ${j.job.machine_id}` : ''}${p ? ` ${Math.round(p.fraction * 100)}%` : ''}${p?.message ? ` ${p.message}` : ''}`;
}

function bar(fraction: number): string {
  const width = 20;
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `${'█'.repeat(full)}${'░'.repeat(width - full)} ${String(Math.round(fraction * 100)).padStart(3)}%`;
}
