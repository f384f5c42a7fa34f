// The client tools of the seeds' demo app 2 as `drover` commands, through the real built binary,
// against a real SQS-protocol server (fauxqs) and real `drover worker --queue` processes: submit a
// batch, queue counts, per-job status from the workers' records, purge.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { SqsJobRecord } from '@drover/protocol';
import { REPO_ROOT } from '@drover/testing/server';
import { sqsStack } from '@drover/testing/sqs';
import { waitFor } from '@drover/testing/wait';
import { drover, ids, tmp } from './run.js';

const COUNTER_APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');

describe('drover commands for an SQS queue', () => {
  const h = sqsStack();

  it('submit a batch, count the queue, and follow each job through drover status --queue and drover jobs get --queue', async () => {
    const q = await h.queue({ redrive: true });
    const env = h.env(q);
    const cwd = tmp();
    const job = ['-c', process.execPath, '-a', COUNTER_APP, '-e', 'STEPS=40', '-e', 'STEP_MS=100', '-e', 'CKPT_DIR=ck', '-e', 'OUT_DIR=out', '--heartbeat-interval', '1'];
    const sub = await drover(['submit', '--queue', q.url, ...job, '--count', '12'], { env, cwd });
    assert.equal(sub.code, 0, sub.stderr);
    const queued = ids(sub.stdout);
    assert.equal(queued.length, 12, 'two batches of SendMessageBatch (10 + 2)');
    assert.match(sub.stderr, new RegExp(`queued 12 jobs on SQS queue ${q.url}; ids appended to job_history.txt`));
    assert.deepEqual(ids(readFileSync(join(cwd, 'job_history.txt'), 'utf8')), queued);
    const failing = ids((await drover(['submit', '--queue', q.url, '-c', process.execPath, '-a', COUNTER_APP, '-e', 'EXIT_CODE=4', '--max-failures', '1', '--no-history'], { env, cwd })).stdout);
    assert.equal(failing.length, 1);

    const stats = await drover(['queue', 'stats', '--json'], { env, cwd });
    assert.equal(stats.code, 0, stats.stderr);
    const [main, dead] = JSON.parse(stats.stdout) as { name: string; available: number; in_flight: number }[];
    assert.deepEqual([main?.name, main?.available, main?.in_flight], ['queue', 13, 0]);
    assert.deepEqual([dead?.name, dead?.available], ['dead letters', 0]);

    const pending = await drover(['status', '--queue', q.url], { env, cwd });
    assert.equal(pending.code, 0, pending.stderr);
    assert.match(pending.stdout, /12 jobs: 12 pending/);

    const w = h.worker(q);
    await w.waitForLog('the first job running', (l) => l.msg === 'job process started');
    const started = w.logs.find((l) => l.msg === 'job process started')!;
    const first = started.job as string;
    // The job's process is frozen while its record is read (the worker keeps heartbeating), so a
    // loaded machine's slow CLI runs cannot see the 4 s job end first.
    process.kill(started.pid as number, 'SIGSTOP');
    let seen = '';
    try {
      await waitFor('a heartbeat in its record', async () => {
        const r = await drover(['jobs', 'get', first, '--queue', q.url, '--json'], { env, cwd });
        return r.code === 0 && (JSON.parse(r.stdout) as SqsJobRecord).num_heartbeats > 0;
      }, 20_000);
      await waitFor('status and jobs get to show the job running', async () => {
        const running = await drover(['status', '--queue', q.url, first], { env, cwd });
        const shown = await drover(['jobs', 'get', first, '--queue', q.url], { env, cwd });
        seen = `${running.stdout}\n${shown.stdout}`;
        const row = running.stdout.split('\n').find((l) => l.startsWith(first)) ?? '';
        return running.code === 0 && shown.code === 0 && new RegExp(`^${first}\\s+running\\s+1\\s+0/3\\s+${w.machineId}\\s+\\S+ ago`).test(row) && /status\s+running/.test(shown.stdout);
      }, 20_000).catch((err: Error) => assert.fail(`${err.message}\n${seen}`));
    } finally {
      process.kill(started.pid as number, 'SIGCONT');
    }
    assert.match(seen, new RegExp(`queue\\s+${q.url}`));
    assert.match(seen, new RegExp(`machine\\s+${w.machineId}`));

    const watched = await drover(['status', '--queue', q.url, '--watch', '0.5', ...failing], { env, cwd });
    assert.equal(watched.code, 0, 'the watch ends once every job is finished');
    assert.match(watched.stdout, /dead-lettered/);
    const all = await drover(['status', '--queue', q.url, '--watch', '0.5', '--json'], { env, cwd });
    assert.equal(all.code, 0, all.stderr);
    const last = JSON.parse(all.stdout.trim().split('\n').at(-1)!) as SqsJobRecord[];
    assert.deepEqual([...new Set(last.map((r) => r.status))], ['completed']);
    assert.deepEqual(last.map((r) => r.id), queued);
    assert.ok(last.every((r) => r.machine_id === w.machineId && r.attempt === 1));
    const got = await drover(['jobs', 'get', failing[0]!, '--queue', q.url], { env, cwd });
    assert.match(got.stdout, /status\s+dead-lettered/);
    assert.match(got.stdout, /last error\s+the job process exited with code 4/);
    assert.match(got.stdout, new RegExp(`banned machines\\s+${w.machineId} \\(they failed it\\)`));
    assert.match(got.stdout, new RegExp(`dead-letter queue\\s+${q.deadLetterUrl}`));
  });

  it('jobs cancel --queue: the node running the job stops it within two heartbeats; a job still in the queue is deleted unrun', async () => {
    const q = await h.queue({ redrive: true });
    const env = h.env(q);
    const cwd = tmp();
    const job = (steps: number) => ['-c', process.execPath, '-a', COUNTER_APP, '-e', `STEPS=${steps}`, '-e', 'STEP_MS=100', '-e', 'CKPT_DIR=ck', '-e', 'OUT_DIR=out', '--heartbeat-interval', '1', '--no-history'];
    const [long] = ids((await drover(['submit', '--queue', q.url, ...job(600)], { env, cwd })).stdout);
    const w = h.worker(q);
    await w.waitForLog('the long job running', (l) => l.job === long && l.msg === 'job process started');
    // One job at a time per node: this one waits in the queue while the long one runs.
    const [waiting] = ids((await drover(['submit', '--queue', q.url, ...job(2)], { env, cwd })).stdout);

    const cancel = await drover(['jobs', 'cancel', long!, waiting!, '--queue', q.url], { env, cwd });
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(
      cancel.stdout,
      `cancel requested ${long} (it stops within two heartbeats)\ncancel requested ${waiting} (no worker has received it yet: the next one to do so deletes it)\n`,
    );
    // The job would run 60 s: it is stopped, not left to end.
    await w.waitForLog('the long job stopped', (l) => l.job === long && l.msg === 'job dropped' && l.status === 'canceled', 15_000);
    assert.ok(w.logs.some((l) => l.job === long && l.msg === 'stopping the job process'));
    await waitFor('both jobs canceled and no message left', async () => {
      const got = await drover(['status', '--queue', q.url, '--json', long!, waiting!], { env, cwd });
      const recs = JSON.parse(got.stdout) as SqsJobRecord[];
      const counts = await h.counts(q.url);
      return recs.every((r) => r.status === 'canceled') && counts.available === 0 && counts.inFlight === 0;
    }, 20_000);
    assert.ok(!w.logs.some((l) => l.job === waiting && l.msg === 'claimed a job'), 'the waiting job never ran');
    const shown = await drover(['jobs', 'get', long!, '--queue', q.url], { env, cwd });
    assert.match(shown.stdout, /status\s+canceled/);
    assert.match(shown.stdout, /canceled\s+\S+T\S+ \(/);

    const again = await drover(['jobs', 'cancel', long!, '--queue', q.url], { env, cwd });
    assert.equal(again.code, 0);
    assert.equal(again.stdout, '');
    assert.equal(again.stderr, `drover jobs cancel: job ${long} is already canceled\n`);
    // The node goes on with the next job.
    const [next] = ids((await drover(['submit', '--queue', q.url, ...job(2)], { env, cwd })).stdout);
    await waitFor('the next job completed', async () => {
      const got = await drover(['jobs', 'get', next!, '--queue', q.url, '--json'], { env, cwd });
      return got.code === 0 && (JSON.parse(got.stdout) as SqsJobRecord).status === 'completed';
    }, 30_000);
  });

  it('queue purge empties the queue (or its dead-letter queue) only when told --yes', async () => {
    const q = await h.queue({ redrive: true });
    const env = h.env(q);
    const cwd = tmp();
    const sub = await drover(['submit', '--queue', q.url, '-c', 'true', '--count', '3', '--no-history'], { env, cwd });
    assert.equal(sub.code, 0, sub.stderr);
    const no = await drover(['queue', 'purge'], { env, cwd });
    assert.equal(no.code, 2);
    assert.match(no.stderr, /pass --yes/);
    assert.equal((await h.counts(q.url)).available, 3);
    const yes = await drover(['queue', 'purge', '--yes'], { env, cwd });
    assert.equal(yes.code, 0, yes.stderr);
    assert.equal(yes.stdout, `purged ${q.url}\n`);
    assert.equal((await h.counts(q.url)).available, 0);
    const dlq = await drover(['queue', 'purge', '--dead-letters', '--yes'], { env, cwd });
    assert.equal(dlq.stdout, `purged ${q.deadLetterUrl}\n`);
  });

  it('names a bad queue or a missing setting, as usage errors (exit 2), before sending anything', async () => {
    const q = await h.queue();
    const { DROVER_SQS_STATUS_BUCKET: _bucket, ...noBucket } = h.env(q);
    const cwd = tmp();
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['submit', '--queue', 'https://example.com/nope', '-c', 'true'], noBucket, /--queue "https:\/\/example.com\/nope" is not an SQS queue URL/],
      [['status', '--queue', q.url, '00000000-0000-4000-8000-000000000000'], noBucket, /name the bucket of the job records: --sqs-status-bucket/],
      [['queue', 'stats'], { ...noBucket, DROVER_SQS_QUEUE_URL: '' }, /no queue: pass --queue/],
    ];
    for (const [args, env, message] of cases) {
      const r = await drover(args, { env, cwd });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const missing = await drover(['queue', 'stats', '--queue', `${q.url}-none`], { env: noBucket, cwd });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist/);
    assert.equal((await h.counts(q.url)).available, 0);
  });
});
