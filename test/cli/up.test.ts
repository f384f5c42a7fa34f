// `drover up` as a user runs it: a real process with its coordinator, storage and worker processes;
// jobs submitted to it run on its workers; Ctrl-C (SIGINT) or the death of `up` itself leaves no
// process behind.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DroverClient } from '@drover/sdk';
import { DROVER_BIN } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { drover } from './run.js';

/** Processes whose working directory lies under `dir` (workers and their jobs run in their data roots). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/cwd`).startsWith(dir)) pids.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

interface Up {
  proc: ChildProcess;
  dir: string;
  out(): string;
  url: string;
  key: string;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

async function startUp(args: string[] = [], opts: { cwd?: string } = {}): Promise<Up> {
  const dir = mkdtempSync(join(tmpdir(), 'drover-up-'));
  // Started inside its folder: its workers and their jobs run where `up` runs, so they are found under it.
  const proc = spawn(process.execPath, [DROVER_BIN, 'up', '--port', '0', '--dir', dir, '--workers', '2', ...args], {
    cwd: opts.cwd ?? dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', DROVER_ADMIN_KEY: '' },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  await waitFor(`drover up to start:\n${out}`, () => /API key\s+(\S+)/.test(out) || proc.exitCode !== null, 30_000);
  assert.equal(proc.exitCode, null, `drover up exited early:\n${out}`);
  const url = /API\s+(http:\/\/\S+)/.exec(out)![1]!;
  const key = /API key\s+(\S+)/.exec(out)![1]!;
  return { proc, dir, out: () => out, url, key, exited };
}

describe('drover up', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('runs jobs on its workers, writes a profile, and Ctrl-C stops every process it started', async (t) => {
    const up = await startUp();
    dirs.push(up.dir);
    t.after(() => up.proc.kill('SIGKILL'));
    const profile = JSON.parse(readFileSync(join(up.dir, 'profile.json'), 'utf8')) as Record<string, string>;
    assert.equal(profile.api_url, up.url);
    assert.equal(profile.api_key, up.key);
    assert.equal(profile.container_group_id, 'local');
    assert.match(profile.storage!, /^file:\/\//);

    const client = new DroverClient({ url: up.url, key: up.key });
    const job = await client.createJob({
      command: process.execPath,
      arguments: ['-e', 'setTimeout(() => process.exit(0), 200)'],
      container_group_id: 'local',
      sync: {},
    });
    await waitFor('the job to complete on a local worker', async () => (await client.getJob(job.id)).status === 'completed', 30_000);
    assert.match((await client.getJob(job.id)).machine_id ?? '', /^local-[12]$/);

    // A long job is running when Ctrl-C comes: it is released, not left running anywhere.
    const long = await client.createJob({
      command: process.execPath,
      arguments: ['-e', 'setInterval(() => {}, 1000)'],
      container_group_id: 'local',
      sync: {},
    });
    await waitFor('the long job to run', async () => (await client.getJob(long.id)).status === 'running', 30_000);
    await waitFor('two workers and the job process to run under the cluster folder', () => processesUnder(up.dir).length >= 3);

    up.proc.kill('SIGINT');
    const [code] = await up.exited;
    assert.equal(code, 0, up.out());
    assert.match(up.out(), /stopped/);
    assert.deepEqual(processesUnder(up.dir), [], 'no worker or job process outlives drover up');

    // Started again on the same folder: same user and key (from the profile), the released job resumes.
    const again = await startUp(['--dir', up.dir]);
    try {
      assert.equal(again.key, up.key, 'the key in the profile is reused');
      const c2 = new DroverClient({ url: again.url, key: again.key });
      await waitFor('the released job to run again', async () => (await c2.getJob(long.id)).status === 'running', 30_000);
      await c2.cancelJob(long.id);
    } finally {
      again.proc.kill('SIGINT');
      await again.exited;
    }
  });

  test('workers do not outlive a drover up killed with SIGKILL', async () => {
    const up = await startUp();
    dirs.push(up.dir);
    await waitFor('two workers', () => processesUnder(up.dir).length >= 2, 20_000);
    up.proc.kill('SIGKILL');
    await up.exited;
    await waitFor('the workers to exit on their own', () => processesUnder(up.dir).length === 0, 30_000);
  });

  test('as docs/cli.md shows it: a job named by a relative path runs in the folder `up` was started in; the admin key is in the profile; no IMDS calls', async (t) => {
    const project = mkdtempSync(join(tmpdir(), 'drover-project-'));
    dirs.push(project);
    writeFileSync(join(project, 'train.py'), "import os\nopen('trained.txt', 'w').write('ok from ' + os.getcwd())\n");
    const up = await startUp(['--dir', join(project, '.drover')], { cwd: project });
    t.after(() => up.proc.kill('SIGKILL'));
    assert.match(up.out(), /jobs run\s+in /);
    const profile = JSON.parse(readFileSync(join(project, '.drover', 'profile.json'), 'utf8')) as Record<string, string>;
    assert.match(profile.admin_key ?? '', /^drv_admin_/, 'the admin key is kept in the profile');
    const sub = await drover(['submit', '-c', 'python3', '-a', 'train.py', '--no-sync'], { cwd: project });
    assert.equal(sub.code, 0, sub.stderr);
    const id = sub.stdout.trim();
    const client = new DroverClient({ url: up.url, key: up.key });
    await waitFor('the job to complete', async () => (await client.getJob(id)).status === 'completed', 30_000);
    assert.equal(readFileSync(join(project, 'trained.txt'), 'utf8'), `ok from ${realpathSync(project)}`);
    const bob = await drover(['users', 'create', 'bob', '--admin'], { cwd: project });
    assert.equal(bob.code, 0, bob.stderr);
    assert.match(bob.stdout, /^[0-9a-f-]{36}\n$/);
    const logs = readdirSync(join(project, '.drover', 'logs')).map((f) => readFileSync(join(project, '.drover', 'logs', f), 'utf8')).join('');
    assert.doesNotMatch(logs, /imds/i, 'no instance metadata calls (or failures) under drover up');
    up.proc.kill('SIGINT');
    await up.exited;
    const again = await startUp(['--dir', join(project, '.drover')], { cwd: project });
    try {
      const after = JSON.parse(readFileSync(join(project, '.drover', 'profile.json'), 'utf8')) as Record<string, string>;
      assert.equal(after.admin_key, profile.admin_key, 'the same admin key on the next start');
      assert.equal((await drover(['users', 'create', 'carol', '--admin'], { cwd: project })).code, 0);
    } finally {
      again.proc.kill('SIGINT');
      await again.exited;
    }
  });

  test('`drover up | tee up.log`, then Ctrl-C: a closed stdout does not crash it; the workers release their jobs, then it exits 0, leaving nothing behind', async (t) => {
    const up = await startUp();
    dirs.push(up.dir);
    t.after(() => up.proc.kill('SIGKILL'));
    const client = new DroverClient({ url: up.url, key: up.key });
    const long = await client.createJob({ command: process.execPath, arguments: ['-e', 'setInterval(() => {}, 1000)'], container_group_id: 'local', sync: {} });
    await waitFor('the long job to run', async () => (await client.getJob(long.id)).status === 'running', 30_000);
    // The reader of its output goes away (tee died of the same Ctrl-C), then the signal comes.
    up.proc.stdout!.destroy();
    up.proc.stderr!.destroy();
    up.proc.kill('SIGINT');
    const [code] = await up.exited;
    assert.equal(code, 0, 'exits 0, not an EPIPE crash');
    assert.deepEqual(processesUnder(up.dir), [], 'no worker or job process outlives drover up');
    const again = await startUp(['--dir', up.dir]);
    try {
      const c2 = new DroverClient({ url: again.url, key: again.key });
      const { events } = await c2.jobEvents(long.id);
      assert.ok(events.some((e) => e.type === 'released'), `released before the coordinator stopped: ${events.map((e) => e.type).join(', ')}`);
      await c2.cancelJob(long.id);
    } finally {
      again.proc.kill('SIGINT');
      await again.exited;
    }
  });

  test('bad flags are one clear line and exit 2, starting nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-up-'));
    dirs.push(dir);
    const proc = spawn(process.execPath, [DROVER_BIN, 'up', '--workers', '0', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(proc, 'exit')) as [number | null];
    assert.equal(code, 2);
    assert.match(err, /--workers must be a whole number from 1 to 64/);
    assert.deepEqual(readdirSync(dir), [], 'nothing was created');
  });
});
