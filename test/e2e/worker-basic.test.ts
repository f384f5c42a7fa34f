// A real coordinator, a real `drover worker` process and a loopback S3 server: one job goes
// through before-sync, during-sync, after-sync and completes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startTestServer, type TestServer, type TestUser } from '../helpers/server.js';
import { spawnWorker, type TestWorker } from '../helpers/worker.js';
import { waitFor } from '../helpers/wait.js';
import { keysOf, readAll, startBackend, type Backend } from '../storage/harness.js';

const APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');

describe('worker end to end (S3)', () => {
  let server: TestServer;
  let user: TestUser;
  let s3: Backend;
  const workers: TestWorker[] = [];

  before(async () => {
    server = await startTestServer('sqlite');
    user = await server.user();
    s3 = await startBackend('s3');
  });
  after(async () => {
    for (const w of workers) await w.killNode();
    await s3.close();
    await server.close();
  });

  it('downloads the input, uploads checkpoints while the job runs, uploads the output and completes', async () => {
    await s3.store.put(s3.bucket, 'in/input.txt', Buffer.from('hello-input\n'));
    const group = 'g-basic';
    const job = await user.client.createJob({
      command: process.execPath,
      arguments: [APP],
      environment: { STEPS: '12', STEP_MS: '150', CKPT_DIR: 'ck', OUT_DIR: 'out', IN_DIR: 'in' },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: {
        before: [
          { bucket: s3.bucket, prefix: 'in/', local_path: 'in', direction: 'download' },
          { bucket: s3.bucket, prefix: 'ck/', local_path: 'ck', direction: 'download' },
        ],
        during: [{ bucket: s3.bucket, prefix: 'ck/', local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: s3.bucket, prefix: 'out/', local_path: 'out', direction: 'upload' }],
      },
    });
    // The job runs in another folder than the data root: it finds its sync folders through DROVER_DATA_ROOT.
    // The data root comes from the flag, not the environment, so only the worker can tell the job.
    const dataRoot = await mkdtemp(join(tmpdir(), 'drover-basic-'));
    const w = spawnWorker({ url: server.url, key: user.token, group, storageEnv: s3.env, cwd: s3.dir, dataRoot, env: { DROVER_DATA_ROOT: '' }, args: ['--data-root', dataRoot] });
    workers.push(w);
    await w.waitForLog('job started', (l) => l.msg === 'job process started');
    // Checkpoints appear in the bucket while the process still runs.
    await waitFor('a checkpoint in the bucket', async () => (await keysOf(s3.store, s3.bucket, 'ck/')).length > 0).catch((e: Error) => {
      throw new Error(`${e.message}\n${w.logs.map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr()}`);
    });
    const running = await user.client.getJob(job.id);
    assert.equal(running.status, 'running');
    await waitFor('job completed', async () => (await user.client.getJob(job.id)).status === 'completed', 30_000);
    const out = (await readAll(await s3.store.getStream(s3.bucket, 'out/result.txt'))).toString();
    assert.match(out, /done 12 steps, started at 0, input hello-input/);
    const ck = await keysOf(s3.store, s3.bucket, 'ck/');
    assert.ok(ck.includes('ck/ckpt-000012.json'), `last checkpoint uploaded: ${ck.join(', ')}`);
    assert.ok(!ck.some((k) => k.includes('.tmp-')), 'temp files are not uploaded (pattern ckpt-*)');
    const done = await user.client.getJob(job.id);
    assert.equal(done.progress?.fraction !== undefined, true, 'progress reached the coordinator');
  });
});
