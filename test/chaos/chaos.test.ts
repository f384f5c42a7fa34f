// The short chaos run of CI (issue 5): `npm run chaos` on each store, about 3 minutes each
// (DROVER_CHAOS_MINUTES to change it). The harness prints its own figures and every failed check;
// this test passes only if it exits 0. A failure names the seed to replay it with.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, STORES } from '@drover/testing/server';

const MINUTES = process.env.DROVER_CHAOS_MINUTES ?? '3';

function runChaos(store: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'chaos/run.ts'), '--store', store, '--minutes', MINUTES], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('exit', (code) => resolve({ code, output }));
  });
}

// The stores run side by side: each run is mostly sleeping processes (a step a second), and CI's
// time is better spent than waiting for them one after the other.
describe('chaos: kill -9, SIGTERM, SIGSTOP, coordinator restarts and S3 faults', { concurrency: STORES.length }, () => {
  for (const store of STORES) {
    test(`${store}: every job completes exactly once with the exact sum, no output lost, no stale write, bounded redone work`, { timeout: 15 * 60_000 }, async (t) => {
      const { code, output } = await runChaos(store);
      const summary = output.split('\n').filter((l) => /jobs completed in|FAIL|chaos:/.test(l));
      t.diagnostic(summary.join('\n'));
      assert.equal(code, 0, `chaos run failed:\n${output.split('\n').slice(-40).join('\n')}`);
    });
  }
});
