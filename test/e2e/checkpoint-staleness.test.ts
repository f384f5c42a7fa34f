// A checkpoint is never starved (issue: an app rewriting state.json every 250 ms had not one
// checkpoint in the bucket while it ran, because the during-sync waited for the file to hold still
// for the settle time). With max-wait, a file that keeps changing is uploaded anyway, from a
// consistent snapshot, at most max-wait after its first change not yet uploaded. Real coordinator,
// real `drover worker` processes, loopback S3, the worker's default settle time (1 s).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { workerStack } from '@drover/testing/stack';
import { readAll } from '@drover/testing/storage';

const APP = join(REPO_ROOT, 'test/fixtures/rapid-checkpoint-app.mjs');
const MAX_WAIT_MS = 2000;

describe('bounded staleness of checkpoints (max-wait)', () => {
  const stack = workerStack();
  // Kelpie's variable name, in milliseconds; the settle time stays Drover's default (1 s).
  const worker = (group: string) => stack.worker(group, { env: { FILE_WATCHER_MAX_WAIT_MS: String(MAX_WAIT_MS), DROVER_SYNC_SETTLE_S: '1' } });

  function rapidJob(group: string, name: string, env: Record<string, string>) {
    return stack.user.client.createJob({
      command: process.execPath,
      arguments: [APP],
      environment: { CKPT_DIR: 'ck', CKPT_MS: '100', ...env },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: {
        before: [{ bucket: stack.s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'download' }],
        during: [{ bucket: stack.s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'upload', pattern: 'state.json' }],
      },
    });
  }

  /** The checkpoint in the bucket now, or undefined. */
  async function inBucket(key: string): Promise<{ step: number; at: number } | undefined> {
    try {
      return JSON.parse((await readAll(await stack.s3.store.getStream(stack.s3.bucket, key))).toString()) as { step: number; at: number };
    } catch {
      return undefined;
    }
  }

  /** Polls the bucket until `done()`; returns every distinct version seen. */
  async function watchBucket(key: string, done: () => boolean): Promise<Map<number, number>> {
    const seen = new Map<number, number>(); // step → when first seen
    while (!done()) {
      const v = await inBucket(key);
      if (v && !seen.has(v.step)) seen.set(v.step, Date.now());
      await new Promise((r) => setTimeout(r, 100));
    }
    return seen;
  }

  it('a checkpoint rewritten every 100 ms for 20 s reaches the bucket at least 3 times while the job runs', async () => {
    const job = await rapidJob('g-rapid', 'rapid', { STEPS: '200' });
    const w = worker('g-rapid');
    await w.waitForLog('the job started', (l) => l.job === job.id && l.msg === 'job process started');
    const exited = () => w.logs.some((l) => l.job === job.id && l.msg === 'job process exited');
    const seen = await watchBucket('rapid/ck/state.json', exited);
    const during = [...seen.keys()].filter((step) => step < 200);
    assert.ok(during.length >= 3, `distinct checkpoints in the bucket while the job ran: ${during.join(', ')}`);
    assert.ok(w.logs.some((l) => l.job === job.id && l.msg === 'uploaded' && l.stillChanging === true), 'uploaded while still changing (max-wait, not settle)');
    await waitFor('completed', async () => (await stack.user.client.getJob(job.id)).status === 'completed', 20_000);
    assert.equal((await inBucket('rapid/ck/state.json'))?.step, 200, 'the newest version lands last');
  });

  it('a kill -9 at a random moment resumes from a checkpoint no older than max-wait + one upload', async () => {
    const job = await rapidJob('g-rapid-kill', 'rapidkill', { STEPS: '120' });
    const a = worker('g-rapid-kill');
    await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
    await waitFor('a first checkpoint in the bucket', async () => (await inBucket('rapidkill/ck/state.json')) !== undefined, 15_000);
    const delay = Math.round(1000 + Math.random() * 4000); // somewhere in the cycle of max-wait uploads
    await new Promise((r) => setTimeout(r, delay));
    await a.killNode();
    const local = JSON.parse(readFileSync(join(a.dataRoot, 'ck', 'state.json'), 'utf8')) as { step: number; at: number };
    const uploads = a.logs.filter((l) => l.job === job.id && l.msg === 'uploaded').map((l) => l.durationMs as number);
    const oneUpload = Math.max(...uploads);

    const b = worker('g-rapid-kill');
    const said = await b.waitForLog('B resumed the job', (l) => l.job === job.id && /^resumed at step \d+/.test(l.msg), 30_000);
    const resumedStep = Number(/^resumed at step (\d+)/.exec(said.msg)![1]);
    const resumed = (await inBucket('rapidkill/ck/state.json'))!;
    assert.ok(resumed.step >= resumedStep, 'B resumed from what the bucket held');
    // What the kill lost: the time between the newest local checkpoint and the one B resumed from.
    // Bound: max-wait from the first unuploaded change, plus the scan that notices it (0.5 s), plus one upload.
    const lostMs = local.at - resumed.at;
    const bound = MAX_WAIT_MS + 500 + oneUpload + 250;
    assert.ok(resumedStep > 0, 'B resumed from a checkpoint');
    assert.ok(lostMs <= bound, `killed ${delay} ms after the first checkpoint: lost ${lostMs} ms of work (steps ${resumedStep}..${local.step}), bound ${bound} ms`);
    await waitFor('completed', async () => (await stack.user.client.getJob(job.id)).status === 'completed', 30_000);
  });

  it('a file appended continuously reaches the bucket while the job runs, each version a prefix of the final file', async () => {
    const job = await stack.user.client.createJob({
      command: process.execPath,
      arguments: [APP],
      environment: { APPEND_FILE: 'traj/trajectory.log', CKPT_MS: '20', STEPS: '300' },
      container_group_id: 'g-append',
      heartbeat_interval: 1,
      sync: {
        during: [{ bucket: stack.s3.bucket, prefix: 'append/traj/', local_path: 'traj', direction: 'upload' }],
        after: [{ bucket: stack.s3.bucket, prefix: 'append/traj/', local_path: 'traj', direction: 'upload' }],
      },
    });
    const w = worker('g-append');
    await w.waitForLog('the job started', (l) => l.job === job.id && l.msg === 'job process started');
    const versions: string[] = [];
    const exited = () => w.logs.some((l) => l.job === job.id && l.msg === 'job process exited');
    while (!exited()) {
      try {
        const text = (await readAll(await stack.s3.store.getStream(stack.s3.bucket, 'append/traj/trajectory.log'))).toString();
        if (versions.at(-1) !== text) versions.push(text);
      } catch {
        // not there yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(versions.length >= 1, 'the growing file was in the bucket before the job ended');
    await waitFor('completed', async () => (await stack.user.client.getJob(job.id)).status === 'completed', 20_000);
    const final = (await readAll(await stack.s3.store.getStream(stack.s3.bucket, 'append/traj/trajectory.log'))).toString();
    assert.equal(final.split('\n').length - 1, 300, 'the whole file landed at the end');
    for (const v of versions) {
      assert.ok(v.length < final.length, 'an earlier version');
      assert.ok(final.startsWith(v) && v.endsWith('\n'), `every version uploaded while it grew is a prefix of whole lines (${v.length} bytes)`);
    }
  });
});
