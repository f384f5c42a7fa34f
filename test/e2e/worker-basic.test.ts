// A real coordinator, a real `drover worker` process and a loopback S3 server: one job goes
// through before-sync, during-sync, after-sync and completes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '@drover/testing/server';
import { workerStack } from '@drover/testing/stack';
import { waitFor } from '@drover/testing/wait';
import { keysOf, readAll } from '@drover/testing/storage';

const APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');

describe('worker end to end (S3)', () => {
  const stack = workerStack();
  const { worker } = stack;

  it('downloads the input, uploads checkpoints while the job runs, uploads the output and completes', async () => {
    await stack.s3.store.put(stack.s3.bucket, 'in/input.txt', Buffer.from('hello-input\n'));
    const group = 'g-basic';
    const job = await stack.user.client.createJob({
      command: process.execPath,
      arguments: [APP],
      environment: { STEPS: '12', STEP_MS: '150', CKPT_DIR: 'ck', OUT_DIR: 'out', IN_DIR: 'in' },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: {
        before: [
          { bucket: stack.s3.bucket, prefix: 'in/', local_path: 'in', direction: 'download' },
          { bucket: stack.s3.bucket, prefix: 'ck/', local_path: 'ck', direction: 'download' },
        ],
        during: [{ bucket: stack.s3.bucket, prefix: 'ck/', local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: stack.s3.bucket, prefix: 'out/', local_path: 'out', direction: 'upload' }],
      },
    });
    // The job runs in another folder than the data root: it finds its sync folders through DROVER_DATA_ROOT.
    // The data root comes from the flag, not the environment, so only the worker can tell the job.
    const dataRoot = await mkdtemp(join(tmpdir(), 'drover-basic-'));
    const w = worker(group, { cwd: stack.s3.dir, dataRoot, env: { DROVER_DATA_ROOT: '' }, args: ['--data-root', dataRoot] });
    await w.waitForLog('job started', (l) => l.msg === 'job process started');
    // Checkpoints appear in the bucket while the process still runs.
    await waitFor('a checkpoint in the bucket', async () => (await keysOf(stack.s3.store, stack.s3.bucket, 'ck/')).length > 0).catch((e: Error) => {
      throw new Error(`${e.message}\n${w.logs.map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr()}`);
    });
    const running = await stack.user.client.getJob(job.id);
    assert.equal(running.status, 'running');
    await waitFor('job completed', async () => (await stack.user.client.getJob(job.id)).status === 'completed', 30_000);
    const out = (await readAll(await stack.s3.store.getStream(stack.s3.bucket, 'out/result.txt'))).toString();
    assert.match(out, /done 12 steps, started at 0, input hello-input/);
    const ck = await keysOf(stack.s3.store, stack.s3.bucket, 'ck/');
    assert.ok(ck.includes('ck/ckpt-000012.json'), `last checkpoint uploaded: ${ck.join(', ')}`);
    assert.ok(!ck.some((k) => k.includes('.tmp-')), 'temp files are not uploaded (pattern ckpt-*)');
    const done = await stack.user.client.getJob(job.id);
    assert.equal(done.progress?.fraction !== undefined, true, 'progress reached the coordinator');
  });

  it("a finished job keeps the progress its app reported last, sent with the completion (not its last heartbeat's)", async () => {
    const group = 'g-final-progress';
    // One heartbeat a minute: none lands while the app runs, so only the completion can carry its progress.
    const job = await stack.user.client.createJob({
      ...{ command: process.execPath, arguments: ['-e', `require('fs').writeFileSync(process.env.DROVER_PROGRESS_FILE, JSON.stringify({ fraction: 1, message: 'finished' }))`] },
      container_group_id: group,
      heartbeat_interval: 60,
      sync: {},
    });
    worker(group);
    await waitFor('completed', async () => (await stack.user.client.getJob(job.id)).status === 'completed', 20_000);
    const done = await stack.user.client.getJob(job.id);
    assert.deepEqual(done.progress, { fraction: 1, message: 'finished' });
    assert.equal(done.num_heartbeats, 0);
  });

  for (const [label, key] of [['an unknown key', 'drv_nope_0000'], ['a malformed key', 'not-a-drover-token']] as const) {
    it(`a worker with ${label} gives up after 3 tries: exit 2 and one clear line, instead of retrying forever`, async () => {
      const w = worker('g-badkey', { key });
      const exit = await w.exited;
      assert.deepEqual(exit, { code: 2, signal: null }, w.stderr());
      const lines = w.stderr().trim().split('\n');
      assert.equal(lines.length, 1, w.stderr());
      assert.match(lines[0]!, new RegExp(`^drover worker: the coordinator at ${stack.server.url.replace(/[.:/]/g, '\\$&')} refuses the API key \\(403 unknown API key\\): check KELPIE_API_KEY \\(--api-key\\)$`));
      assert.equal(w.logs.filter((l) => l.msg === 'the coordinator refused the API key; trying again').length, 2, 'tried 3 times in all');
    });
  }
});
