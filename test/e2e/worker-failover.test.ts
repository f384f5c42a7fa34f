// Failover with a real coordinator, real `drover worker` processes and a loopback S3 server: a node
// killed with SIGKILL, a worker stopped with SIGTERM, a canceled job, jobs that fail (bans,
// MAX_JOB_FAILURES → IMDS reallocate, or exit 1 off SaladCloud), and a big checkpoint rewritten
// while it uploads.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { JobEvent } from '@drover/protocol';
import { startRecordingImds } from '@drover/testing/imds';
import { REPO_ROOT } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { pidAlive, type TestWorker, type WorkerLogLine } from '@drover/testing/worker';
import { workerStack } from '@drover/testing/stack';
import { keysOf, readAll } from '@drover/testing/storage';

const COUNTER = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');
const REWRITE = join(REPO_ROOT, 'test/fixtures/rewrite-app.mjs');

/** The step a job's process said it started at ("starting at step N"), from a worker's log. */
function startStep(w: TestWorker, jobId: string): number | undefined {
  const line = w.logs.find((l) => l.job === jobId && /starting at step \d+/.test(l.msg));
  return line ? Number(/starting at step (\d+)/.exec(line.msg)![1]) : undefined;
}

function stepOfKey(key: string): number {
  return Number(/ckpt-(\d+)\.json$/.exec(key)?.[1] ?? -1);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The bytes rewrite-app.mjs writes for version `v` (see the fixture). */
function rewriteContent(v: number, mib: number): Buffer {
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + v * 97) & 0xff;
  block.write(`rewrite-app version ${v}\n`, 0, 'latin1');
  return Buffer.concat(Array.from({ length: mib }, () => block));
}


function summary(events: JobEvent[]): string {
  return events.map((e) => `${e.type}@${e.machine_id ?? '-'}#${e.attempt}`).join(', ');
}

describe('worker failover (S3)', () => {
  const stack = workerStack();
  const { worker } = stack;

  /** Waits for the job's status, showing every worker's last log lines if it does not come. */
  async function untilStatus(jobId: string, status: string, timeoutMs = 25_000): Promise<void> {
    try {
      await waitFor(`job ${jobId} ${status}`, async () => (await stack.user.client.getJob(jobId)).status === status, timeoutMs);
    } catch (err) {
      const job = await stack.user.client.getJob(jobId);
      const tails = stack.workers.map((w) => `--- ${w.machineId}\n${w.logs.slice(-12).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-1000)}`);
      throw new Error(`${(err as Error).message} (it is ${job.status})\n${tails.join('\n')}`);
    }
  }

  /** The ckpt-NNNNNN.json keys under a prefix, by step. */
  async function checkpoints(prefix: string): Promise<string[]> {
    return (await keysOf(stack.s3.store, stack.s3.bucket, prefix)).filter((k) => stepOfKey(k) >= 0).sort();
  }

  function counterJob(group: string, name: string, env: Record<string, string>) {
    return stack.user.client.createJob({
      command: process.execPath,
      arguments: [COUNTER],
      environment: { CKPT_DIR: 'ck', OUT_DIR: 'out', ...env },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: {
        before: [{ bucket: stack.s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'download' }],
        during: [{ bucket: stack.s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: stack.s3.bucket, prefix: `${name}/out/`, local_path: 'out', direction: 'upload' }],
      },
    });
  }

  it('kill -9 mid-job: another worker claims it after the lease lapses and resumes from the last checkpoint', async () => {
    const group = 'g-kill';
    const job = await counterJob(group, 'kill', { STEPS: '25', STEP_MS: '200' });
    const a = worker(group);
    await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
    await waitFor('3 checkpoints in the bucket', async () => (await checkpoints('kill/ck/')).length >= 3, 15_000);
    await a.killNode();
    const atKill = await checkpoints('kill/ck/');
    const lastAtKill = stepOfKey(atKill.at(-1)!);
    assert.ok(lastAtKill < 25, `A was killed before the end (last checkpoint ${lastAtKill})`);

    const b = worker(group);
    await untilStatus(job.id, 'completed');
    const resumed = startStep(b, job.id);
    assert.ok(resumed !== undefined, 'B ran the job');
    assert.ok(resumed >= lastAtKill && resumed > 0, `B resumed at step ${resumed}, last checkpoint at the kill ${lastAtKill}`);
    const out = (await readAll(await stack.s3.store.getStream(stack.s3.bucket, 'kill/out/result.txt'))).toString();
    assert.equal(out, `done 25 steps, started at ${resumed}, input \n`);

    const { events } = await stack.user.client.jobEvents(job.id);
    const claims = events.filter((e) => e.type === 'claimed');
    assert.deepEqual(claims.map((e) => e.machine_id), [a.machineId, b.machineId], summary(events));
    assert.ok(events.some((e) => e.type === 'lease_expired' && e.machine_id === a.machineId), summary(events));
    assert.deepEqual(events.filter((e) => e.type === 'completed').map((e) => e.machine_id), [b.machineId], summary(events));
  });

  it('SIGTERM: the app saves a checkpoint, the worker uploads it, releases the job and exits 0; another worker resumes it', async () => {
    const group = 'g-term';
    const job = await counterJob(group, 'term', { STEPS: '25', STEP_MS: '200' });
    const a = worker(group);
    await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
    // B waits in a long-poll: the release hands it the job at once.
    const b = worker(group);
    await waitFor('2 checkpoints in the bucket', async () => (await checkpoints('term/ck/')).length >= 2, 15_000);
    a.signal('SIGTERM');
    const said = await a.waitForLog('the app got SIGTERM', (l) => l.job === job.id && /^SIGTERM at step \d+/.test(l.msg));
    const savedStep = Number(/^SIGTERM at step (\d+)/.exec(said.msg)![1]);
    const exit = await a.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, `A exits 0\n${a.stderr()}`);
    assert.ok(a.logs.some((l) => l.job === job.id && l.msg === 'job reported released'), `A released the job:\n${a.logs.slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
    // The checkpoint saved on SIGTERM is in the bucket before the release.
    assert.ok((await checkpoints('term/ck/')).includes(`term/ck/ckpt-${String(savedStep).padStart(6, '0')}.json`));

    await untilStatus(job.id, 'completed');
    assert.equal(startStep(b, job.id), savedStep, 'B resumed from the checkpoint saved on SIGTERM');
    const out = (await readAll(await stack.s3.store.getStream(stack.s3.bucket, 'term/out/result.txt'))).toString();
    assert.equal(out, `done 25 steps, started at ${savedStep}, input \n`);
    const { events } = await stack.user.client.jobEvents(job.id);
    assert.deepEqual(
      events.filter((e) => ['claimed', 'released', 'completed'].includes(e.type)).map((e) => `${e.type}:${e.machine_id}`),
      [`claimed:${a.machineId}`, `released:${a.machineId}`, `claimed:${b.machineId}`, `completed:${b.machineId}`],
      summary(events),
    );
    assert.ok(!events.some((e) => e.type === 'lease_expired'), `released, not lapsed: ${summary(events)}`);
  });

  it('cancel: the worker stops the job process, the job stays canceled, and the worker runs the next job', async () => {
    const group = 'g-cancel';
    const long = await counterJob(group, 'cancel1', { STEPS: '200', STEP_MS: '100' });
    const next = await counterJob(group, 'cancel2', { STEPS: '3', STEP_MS: '50' });
    const w = worker(group);
    const started = await w.waitForLog('the long job started', (l) => l.job === long.id && l.msg === 'job process started');
    const pid = started.pid as number;
    await waitFor('a checkpoint of the long job', async () => (await checkpoints('cancel1/ck/')).length > 0, 15_000);
    assert.ok(pidAlive(pid), 'the job process runs');
    await stack.user.client.cancelJob(long.id);
    await waitFor(`job process ${pid} gone`, () => !pidAlive(pid), 15_000);
    assert.ok(w.logs.some((l) => l.job === long.id && /^SIGINT at step/.test(l.msg)), 'the app got SIGINT');
    await untilStatus(next.id, 'completed');
    assert.equal((await stack.user.client.getJob(long.id)).status, 'canceled');
    const { events } = await stack.user.client.jobEvents(long.id);
    assert.deepEqual(events.map((e) => e.type), ['created', 'claimed', 'canceled'], summary(events));
    assert.ok(w.logs.some((l) => l.job === long.id && l.msg === 'job dropped'));
    assert.equal(w.proc.exitCode, null, 'the worker still runs');
  });

  it('a job that exits 1 fails on three machines (one ban each) and ends failed', async () => {
    const group = 'g-fail';
    const job = await stack.user.client.createJob({
      command: process.execPath,
      arguments: [COUNTER],
      environment: { EXIT_CODE: '1' },
      container_group_id: group,
      heartbeat_interval: 1,
      max_failures: 3,
      sync: {},
    });
    const ws = [worker(group), worker(group), worker(group)];
    await untilStatus(job.id, 'failed');
    const done = await stack.user.client.getJob(job.id);
    assert.equal(done.num_failures, 3);
    const { events } = await stack.user.client.jobEvents(job.id);
    const attempts = events.filter((e) => e.type === 'failed_attempt').map((e) => e.machine_id);
    assert.equal(attempts.length, 3, summary(events));
    assert.deepEqual(new Set(attempts), new Set(ws.map((w) => w.machineId)), summary(events));
    assert.equal(events.filter((e) => e.type === 'failed').length, 1, summary(events));
    assert.equal(events.filter((e) => e.type === 'claimed').length, 3, `no machine ran it twice: ${summary(events)}`);
    // Each worker said why: the user sees it in the events, without the nodes' logs.
    const reasons = events.filter((e) => e.type === 'failed_attempt' || e.type === 'failed').map((e) => e.reason);
    assert.deepEqual(reasons, Array(4).fill('the job process exited with code 1'), summary(events));
  });

  it('MAX_JOB_FAILURES: after that many failed jobs the worker asks IMDS to reallocate (off SaladCloud it exits 1)', async () => {
    const imds = await startRecordingImds();
    try {
      const failing = (group: string) =>
        stack.user.client.createJob({ command: process.execPath, arguments: [COUNTER], environment: { EXIT_CODE: '1' }, container_group_id: group, heartbeat_interval: 1, sync: {} });
      const group = 'g-realloc';
      const jobs = [await failing(group), await failing(group)];
      const w = worker(group, { env: { MAX_JOB_FAILURES: '2', DROVER_IMDS_URL: imds.url } });
      await waitFor('POST /v1/reallocate', () => imds.requests.some((r) => r.path === '/v1/reallocate'), 25_000);
      const calls = imds.requests.filter((r) => r.path === '/v1/reallocate');
      assert.equal(calls.length, 1);
      const [call] = calls;
      assert.equal(call!.method, 'POST');
      assert.equal(call!.headers.metadata, 'true');
      assert.match(call!.headers['content-type'] ?? '', /^application\/json/);
      const body = JSON.parse(call!.body) as { reason?: unknown };
      assert.deepEqual(Object.keys(body), ['reason']);
      assert.match(String(body.reason), /2 jobs failed.*MAX_JOB_FAILURES=2/);
      for (const j of jobs) assert.equal((await stack.user.client.getJob(j.id)).num_failures, 1);
      // At once, not after the long-poll that was in flight when the second failure was reported.
      const decided = w.logs.find((l) => /jobs failed on this machine/.test(l.msg));
      assert.ok(decided, 'the worker logged why it reallocates');
      assert.ok(call!.at - (decided.time as number) < 5000, `reallocate came ${call!.at - (decided.time as number)} ms after the decision`);
      // Then it waits to be moved (it does not exit by itself), and a SIGTERM ends it normally.
      assert.equal(w.proc.exitCode, null, 'the worker waits after asking to be reallocated');
      w.signal('SIGTERM');
      assert.deepEqual(await w.exited, { code: 0, signal: null });
      await w.waitForLog('the worker stopped', (l) => l.msg === 'drover worker stopped', 5000);

      const localGroup = 'g-realloc-local';
      const localJobs = [await failing(localGroup), await failing(localGroup)];
      const local = worker(localGroup, { machineId: 'LOCAL', env: { MAX_JOB_FAILURES: '2', DROVER_IMDS_URL: imds.url } });
      const exit = await Promise.race([local.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 25_000).unref())]);
      assert.deepEqual(exit, { code: 1, signal: null }, `the LOCAL worker exits 1\n${local.logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
      for (const j of localJobs) assert.equal((await stack.user.client.getJob(j.id)).num_failures, 1);
      assert.equal(imds.requests.filter((r) => r.path === '/v1/reallocate').length, 1, 'no IMDS call off SaladCloud');
      assert.ok(local.stderr().includes('not on SaladCloud') || local.logs.some((l) => String(l.msg).includes('not on SaladCloud')));
    } finally {
      await imds.close();
    }
  });

  it('a 50 MiB checkpoint rewritten while it uploads: the bucket ends with the last version', async () => {
    const group = 'g-rewrite';
    const mib = 50;
    const job = await stack.user.client.createJob({
      command: process.execPath,
      arguments: [REWRITE],
      environment: { BIG_DIR: 'rw', BIG_MIB: String(mib), VERSIONS: '3', EXIT_AFTER_MS: '300' },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: { during: [{ bucket: stack.s3.bucket, prefix: 'rw/', local_path: 'rw', direction: 'upload' }] },
    });
    const w = worker(group, { env: { DROVER_PART_CONCURRENCY: '1' } });
    await untilStatus(job.id, 'completed', 40_000);
    const rewrites = w.logs.filter((l: WorkerLogLine) => l.job === job.id && /^rewrote big.bin to version/.test(l.msg)).map((l) => l.msg);
    assert.equal(rewrites.length, 2, rewrites.join('\n'));
    assert.ok(rewrites.some((m) => m.endsWith('(still uploading: yes)')), `a rewrite landed during an upload:\n${rewrites.join('\n')}`);

    const got = await readAll(await stack.s3.store.getStream(stack.s3.bucket, 'rw/big.bin'));
    assert.equal(got.length, mib * 1024 * 1024);
    assert.equal(got.subarray(0, 22).toString('latin1'), 'rewrite-app version 3\n');
    assert.equal(sha256(got), sha256(rewriteContent(3, mib)), 'the object is exactly version 3');
    const uploads = w.logs.filter((l) => l.job === job.id && l.msg === 'uploaded' && l.key === 'rw/big.bin').length;
    const started = stack.s3.requests.filter((r) => r.startsWith('POST /jobs/rw/big.bin?uploads')).length;
    assert.ok(uploads >= 2, `uploaded ${uploads} times`);
    assert.ok(started >= uploads, `${started} multipart uploads started`);
  });
});
