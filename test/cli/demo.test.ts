// `drover demo` end to end, as `npm start` runs it: a local cluster, series-sum jobs in both data
// modes, one worker killed with SIGKILL mid-run and replaced, and every sum checked.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { DROVER_BIN } from '@drover/testing/server';
import { startSqs } from '@drover/testing/sqs';

const run = promisify(execFile);

describe('drover demo', () => {
  const dir = mkdtempSync(join(tmpdir(), 'drover-demo-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('survives a kill -9 mid-run and every sum is exact', async () => {
    const { stdout } = await run(
      process.execPath,
      [DROVER_BIN, 'demo', '--dir', join(dir, 'demo'), '--jobs', '4', '--steps', '60', '--step', '0.05'],
      { env: { ...process.env, NO_COLOR: '1' }, timeout: 110_000 },
    );
    assert.match(stdout, /kill -9 local-\d while it ran job \d at \d+%; started local-4 in its place/);
    assert.match(stdout, /every sum is exact/);
    const rows = stdout.split('\n').filter((l) => /^\d+\s+(worker|app)\s+completed/.test(l));
    assert.equal(rows.length, 4, stdout);
    assert.ok(rows.some((r) => /\bworker\b/.test(r)) && rows.some((r) => /\bapp\b/.test(r)), 'both data modes ran');
    assert.ok(rows.every((r) => /yes$/.test(r)), stdout);
    // The killed job finished on another machine: two machines in its row.
    assert.ok(rows.some((r) => /local-\d,local-\d/.test(r)), `a job resumed on a second machine:\n${stdout}`);
    assert.deepEqual(readdirSync(join(dir, 'demo', 'logs')).sort(), ['local-1.log', 'local-2.log', 'local-3.log', 'local-4.log']);
  });

  test("with --queue, the seeds' demo app 2: app-managed jobs through an SQS queue survive a kill -9, every sum exact", async () => {
    const sqs = await startSqs();
    try {
      const q = await sqs.queue({ redrive: true });
      const { stdout } = await run(
        process.execPath,
        [DROVER_BIN, 'demo', '--dir', join(dir, 'sqs'), '--jobs', '3', '--steps', '60', '--step', '0.05', '--mode', 'app', '--queue', q.url],
        {
          // Only the SQS server's address and keys: the demo's own storage is a local folder.
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', AWS_ENDPOINT_URL_SQS: sqs.s3.env.AWS_ENDPOINT_URL!, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' },
          timeout: 110_000,
        },
      );
      assert.match(stdout, new RegExp(`jobs through SQS queue ${q.url}`));
      assert.match(stdout, /kill -9 local-\d while it ran job \d at \d+%; started local-4 in its place/);
      assert.match(stdout, /every sum is exact/);
      const rows = stdout.split('\n').filter((l) => /^\d+\s+app\s+completed/.test(l));
      assert.equal(rows.length, 3, stdout);
      assert.ok(rows.some((r) => /local-\d,local-\d/.test(r)), `a job resumed on a second machine:\n${stdout}`);
      assert.deepEqual(await sqs.counts(q.url), { available: 0, inFlight: 0 });
    } finally {
      await sqs.close();
    }
  });

  test('a sum that is not exact makes it exit 1', async () => {
    // A step so slow that the jobs cannot finish before the timeout: the demo must not claim success.
    const err = await run(process.execPath, [DROVER_BIN, 'demo', '--dir', join(dir, 'slow'), '--jobs', '1', '--steps', '50', '--step', '1', '--timeout', '3', '--no-kill'], {
      env: { ...process.env, NO_COLOR: '1' },
      timeout: 60_000,
    }).then(
      () => undefined,
      (e: { code?: number; stdout?: string }) => e,
    );
    assert.ok(err, 'drover demo exits non-zero');
    assert.equal(err.code, 1);
    assert.match(err.stdout ?? '', /timed out after 3 s/);
    assert.match(err.stdout ?? '', /1 of 1 sums are not exact/);
  });
});
