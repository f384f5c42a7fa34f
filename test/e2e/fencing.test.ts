// Fencing (issue 5): a worker frozen past its lease (SIGSTOP) and thawed (SIGCONT) after another
// machine took its job learns from its next heartbeat to stop, writes nothing more to the bucket
// (no checkpoint, no output), and cannot complete the job. Each worker signs its S3 requests with
// its own access key, so the proxy in front of the S3 server tells whose writes landed when.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JobEvent } from '@drover/protocol';
import { accessKeyOf, isWrite } from '../../chaos/fault-proxy.js';
import { REPO_ROOT, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { pidAlive, spawnWorker, type TestWorker } from '@drover/testing/worker';
import { readAll, startBackend, type Backend } from '@drover/testing/storage';

const COUNTER = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');

interface Write {
  at: number;
  key: string | undefined;
  request: string;
}


const summary = (events: JobEvent[]) => events.map((e) => `${e.type}@${e.machine_id ?? '-'}#${e.attempt}`).join(', ');

describe('fencing: a worker frozen past its lease, then thawed', () => {
  let server: TestServer;
  let user: TestUser;
  let s3: Backend;
  const workers: TestWorker[] = [];
  const writes: Write[] = [];

  /** A worker whose S3 requests carry the access key `name`. */
  function worker(group: string, name: string): TestWorker {
    const w = spawnWorker({ url: server.url, key: user.token, group, machineId: name, storageEnv: { ...s3.env, AWS_ACCESS_KEY_ID: name } });
    workers.push(w);
    return w;
  }

  function counterJob(group: string, name: string, steps: number) {
    return user.client.createJob({
      command: process.execPath,
      arguments: [COUNTER],
      environment: { CKPT_DIR: 'ck', OUT_DIR: 'out', STEPS: String(steps), STEP_MS: '250' },
      container_group_id: group,
      heartbeat_interval: 1, // lease: 2 s
      sync: {
        before: [{ bucket: s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'download' }],
        during: [{ bucket: s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: s3.bucket, prefix: `${name}/out/`, local_path: 'out', direction: 'upload' }],
      },
    });
  }

  /** When machine `m` claimed the job (server clock, the same machine's clock as this test's). */
  async function claimedAt(jobId: string, m: string): Promise<number> {
    const { events } = await user.client.jobEvents(jobId);
    const claim = events.find((e) => e.type === 'claimed' && e.machine_id === m);
    assert.ok(claim, `${m} claimed ${jobId}: ${summary(events)}`);
    return Date.parse(claim.at);
  }

  const writesBy = (key: string, prefix: string) => writes.filter((w) => w.key === key && w.request.includes(`/${prefix}/`));

  before(async () => {
    server = await startTestServer('sqlite');
    user = await server.user();
    s3 = await startBackend('s3');
    s3.beforeRequest = (req) => {
      const r = { method: req.method ?? '', url: req.url ?? '' };
      if (isWrite(r)) writes.push({ at: Date.now(), key: accessKeyOf(req), request: `${r.method} ${r.url}` });
    };
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.killNode()));
    await s3.close();
    await server.close();
  });

  it('learns from its next heartbeat to stop the job, and uploads no checkpoint once another machine holds it', async () => {
    const group = 'g-ckpt';
    const job = await counterJob(group, 'ckpt', 40);
    const a = worker(group, 'fence-a1');
    const started = await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
    await waitFor('A uploaded 2 checkpoints', () => writesBy('fence-a1', 'ckpt').length >= 2, 15_000);
    a.signal('SIGSTOP');
    // A's job process runs on and writes checkpoints while A is frozen; B takes the job once the lease lapses.
    const b = worker(group, 'fence-b1');
    await b.waitForLog('B started the job', (l) => l.job === job.id && l.msg === 'job process started');
    const bClaimed = await claimedAt(job.id, 'fence-b1');
    await new Promise((r) => setTimeout(r, 1000));
    a.signal('SIGCONT');

    await a.waitForLog('A dropped the job', (l) => l.job === job.id && l.msg === 'job dropped', 15_000);
    const childPid = started.pid as number;
    await waitFor(`A's job process ${childPid} stopped`, () => !pidAlive(childPid), 10_000);
    await waitFor('job completed', async () => (await user.client.getJob(job.id)).status === 'completed', 30_000);

    const late = writesBy('fence-a1', 'ckpt').filter((w) => w.at >= bClaimed);
    assert.deepEqual(late, [], 'A wrote nothing once B held the job');
    assert.ok(writesBy('fence-b1', 'ckpt').length > 0, 'B wrote checkpoints');
    const { events } = await user.client.jobEvents(job.id);
    assert.deepEqual(events.filter((e) => e.type === 'completed').map((e) => e.machine_id), ['fence-b1'], summary(events));
  });

  it('cannot complete the job or upload its output when its process finished while it was frozen', async () => {
    const group = 'g-done';
    const job = await counterJob(group, 'done', 8); // 2 s of work
    const a = worker(group, 'fence-a2');
    await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
    a.signal('SIGSTOP');
    // A's process finishes (exit 0, output written) while A is frozen; B takes the job meanwhile.
    const b = worker(group, 'fence-b2');
    await b.waitForLog('B started the job', (l) => l.job === job.id && l.msg === 'job process started');
    const bClaimed = await claimedAt(job.id, 'fence-b2');
    a.signal('SIGCONT');

    await a.waitForLog('A dropped the job', (l) => l.job === job.id && l.msg === 'job dropped', 15_000);
    await waitFor('job completed', async () => (await user.client.getJob(job.id)).status === 'completed', 30_000);

    assert.deepEqual(writesBy('fence-a2', 'done').filter((w) => w.at >= bClaimed), [], 'A wrote nothing once B held the job');
    assert.ok(!a.logs.some((l) => l.job === job.id && /reported completed/.test(l.msg)), 'A never reported the job completed');
    const { events } = await user.client.jobEvents(job.id);
    assert.deepEqual(events.filter((e) => e.type === 'completed').map((e) => e.machine_id), ['fence-b2'], summary(events));
    const bStart = b.logs.find((l) => l.job === job.id && /starting at step \d+/.test(l.msg));
    const from = Number(/starting at step (\d+)/.exec(bStart?.msg ?? '')?.[1]);
    const out = (await readAll(await s3.store.getStream(s3.bucket, 'done/out/result.txt'))).toString();
    assert.equal(out, `done 8 steps, started at ${from}, input \n`, 'the output is B\'s');
  });
});
