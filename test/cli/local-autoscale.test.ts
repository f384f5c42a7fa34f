// Autoscaling on one machine with real `drover worker` processes: `drover up --autoscale` idles at
// 0 workers, starts them as jobs arrive and stops them after the idle threshold; a scale-down
// stops an idle worker while a busy one keeps its job, and a busy worker is stopped (by SIGTERM,
// handing its job back) only when no idle one is left.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DroverClient } from '@drover/sdk';
import { startLocalCluster, type LocalCluster } from '../../packages/cli/src/cluster/local-cluster.js';
import { DROVER_BIN } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';

/** `drover worker` processes whose working directory lies under `dir` (each runs where its cluster's jobs run). */
function workersUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readlinkSync(`/proc/${name}/cwd`).startsWith(dir)) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes(DROVER_BIN) && argv.includes('worker')) pids.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** A job that runs until `file` exists. */
const untilFile = (file: string, group: string) => ({
  command: process.execPath,
  arguments: ['-e', 'const f = process.argv[1]; setInterval(() => { if (require("fs").existsSync(f)) process.exit(0); }, 50)', file],
  container_group_id: group,
  sync: {},
});
const quick = (group: string) => ({ command: process.execPath, arguments: ['-e', ''], container_group_id: group, sync: {} });

describe('autoscaling local workers', () => {
  const dirs: string[] = [];
  const procs: ChildProcess[] = [];
  after(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('drover up --autoscale runs 0 workers idle, starts them when jobs arrive, and is back to 0 after the idle threshold', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-up-auto-'));
    dirs.push(dir);
    // Started inside its folder: its workers run where `up` runs, so they are found under it.
    const proc = spawn(process.execPath, [DROVER_BIN, 'up', '--autoscale', '--workers', '2', '--idle-threshold', '2', '--port', '0', '--dir', dir], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', DROVER_ADMIN_KEY: '' },
    });
    procs.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(`drover up to start:\n${out}`, () => /API key\s+(\S+)/.test(out) || proc.exitCode !== null, 30_000);
    assert.match(out, /Drover is up \(autoscaled: 0–2 workers in container group "local", idle threshold 2 s\)/);
    const client = new DroverClient({ url: /API\s+(http:\/\/\S+)/.exec(out)![1]!, key: /API key\s+(\S+)/.exec(out)![1]! });
    const rule = await client.getScalingRule('local');
    assert.deepEqual([rule.provider, rule.min_replicas, rule.max_replicas, rule.idle_threshold_seconds], ['local', 0, 2, 2]);
    await waitFor('the first decision', async () => (await client.getScalingRule('local')).evaluated !== null);
    assert.deepEqual(workersUnder(dir), [], 'no worker while there is no work');

    const done = join(dir, 'release-jobs');
    const jobs = await client.createJobs([untilFile(done, 'local'), untilFile(done, 'local'), untilFile(done, 'local')]);
    await waitFor('two workers (the most) to run two of the jobs', async () => {
      const running = (await Promise.all(jobs.map((j) => client.getJob(j.id)))).filter((j) => j.status === 'running');
      return running.length === 2 && workersUnder(dir).length === 2;
    }, 60_000);
    assert.match(out, /autoscale started worker local-1/);

    writeFileSync(done, '');
    await waitFor('every job to complete', async () => (await Promise.all(jobs.map((j) => client.getJob(j.id)))).every((j) => j.status === 'completed'), 60_000);
    const completed = Math.max(...(await Promise.all(jobs.map((j) => client.getJob(j.id)))).map((j) => Date.parse(j.completed!)));
    await waitFor('no worker left', () => workersUnder(dir).length === 0, 60_000);
    const decisions = (await client.scalingDecisions('local')).decisions;
    const stop = decisions.find((d) => d.action === 'stop' && d.outcome === 'applied');
    assert.ok(stop, decisions.map((d) => d.reason).join('\n'));
    assert.ok(Date.parse(stop.at) - completed >= 2000, `stopped ${Date.parse(stop.at) - completed} ms after the last job ended (idle threshold 2 s)`);

    proc.kill('SIGINT');
    const [code] = (await once(proc, 'exit')) as [number | null];
    assert.equal(code, 0, out);
  });

  test('a scale-down stops an idle worker and leaves the busy one its job; a busy one is stopped, handing its job back, only when no idle one is left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-local-auto-'));
    dirs.push(dir);
    const events: string[] = [];
    const cluster: LocalCluster = await startLocalCluster({
      dir,
      workers: 2,
      port: 0,
      host: '127.0.0.1',
      containerGroupId: 'busy-idle',
      bucket: 'drover',
      profileFile: join(dir, 'profile.json'),
      jobCwd: dir,
      autoscale: { idleThresholdSeconds: 1 },
      onScale: (e) => events.push(`${e.kind} ${e.machineId}`),
    });
    try {
      const c = cluster.client;
      await waitFor('the first decision', async () => (await c.getScalingRule('busy-idle')).evaluated !== null);
      const release = join(dir, 'release-long');
      const long = await c.createJob(untilFile(release, 'busy-idle'));
      const short = await c.createJob(quick('busy-idle'));
      await waitFor('two workers, the long job running and the short one done', async () => {
        const [l, s] = await Promise.all([c.getJob(long.id), c.getJob(short.id)]);
        return cluster.workers.length === 2 && l.status === 'running' && s.status === 'completed';
      }, 60_000);
      const busy = (await c.getJob(long.id)).machine_id!;
      const idle = cluster.workers.find((w) => w.machineId !== busy)!;
      const holder = cluster.workers.find((w) => w.machineId === busy)!;

      // The short job's idle threshold passes: one replica is wanted, and the idle worker goes.
      await idle.exited;
      assert.deepEqual(events, ['start local-1', 'start local-2', `stop ${idle.machineId}`]);
      assert.equal(holder.proc.exitCode, null, 'the busy worker runs on');
      const l = await c.getJob(long.id);
      assert.deepEqual([l.status, l.machine_id, l.attempt], ['running', busy, 1], 'its job was never interrupted');

      // No replica allowed at all: the busy worker is the only one left, so it is stopped; SIGTERM makes it hand the job back.
      await c.updateScalingRule('busy-idle', { max_replicas: 0 });
      await holder.exited;
      const events2 = (await c.jobEvents(long.id)).events.map((e) => e.type);
      assert.deepEqual(events2, ['created', 'claimed', 'released'], 'released, not failed');
      assert.equal((await c.getJob(long.id)).num_failures, 0);

      // Allowed again, a new worker picks the job up.
      await c.updateScalingRule('busy-idle', { max_replicas: 1 });
      await waitFor('the job to run again', async () => (await c.getJob(long.id)).attempt === 2, 60_000);
      writeFileSync(release, '');
      await waitFor('the job to complete', async () => (await c.getJob(long.id)).status === 'completed', 60_000);
    } finally {
      await cluster.stop();
    }
    assert.deepEqual(workersUnder(dir), []);
  });
});
