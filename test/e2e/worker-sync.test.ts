// The worker's data sync and its edges, end to end: a real coordinator, real `drover worker`
// processes, a loopback S3 server (and the local folder backend), and job processes that wait on
// "gate" files the test writes, so what is checked while a job runs is checked while it runs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Job, JobDefinition } from '@drover/protocol';
import { DroverClient } from '@drover/sdk';
import { planSync } from '@drover/worker';
import { DROVER_BIN, REPO_ROOT, freePort, freshDatabase, spawnServer, startTestServer, type ServerProcess, type TestServer, type TestUser } from '@drover/testing/server';
import { SqliteStore } from '@drover/server';
import { spawnWorker, type TestWorker, type WorkerLogLine, type WorkerSpec } from '@drover/testing/worker';
import { waitFor } from '@drover/testing/wait';
import { keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';

const APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');

// Job processes are `node -e` scripts with these helpers. gate(name) waits until the test creates
// the file `name` in the job's working folder (the worker's data root).
const PRELUDE = `
import fs from 'node:fs';
import path from 'node:path';
const env = process.env;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const put = (file, text) => { fs.mkdirSync(path.dirname(file), { recursive: true }); fs.writeFileSync(file, text); };
const gate = async (name) => {
  const end = Date.now() + 45000;
  while (!fs.existsSync(name)) {
    if (Date.now() > end) { console.error('gate ' + name + ' never opened'); process.exit(9); }
    await sleep(30);
  }
};
`;

function script(body: string): Pick<JobDefinition, 'command' | 'arguments'> {
  return { command: process.execPath, arguments: ['--input-type=module', '-e', PRELUDE + body] };
}

/** Opens a gate a job process waits on. */
function openGate(w: TestWorker, name: string): void {
  writeFileSync(join(w.dataRoot, name), '');
}

function dump(w: TestWorker): string {
  return `${w.logs.map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${w.stderr().slice(-2000)}`;
}

/** A tiny HTTP proxy in front of the coordinator; `intercept` may answer a request itself. */
interface Proxy {
  url: string;
  /** Every request that reached the proxy: time (ms), method, path with query. */
  seen: { at: number; method: string; url: string }[];
  close(): Promise<void>;
}

async function startProxy(target: string, opts: { intercept?: (req: { method: string; url: URL }) => { status: number; body: unknown } | undefined; rewrite?: (url: URL) => void }): Promise<Proxy> {
  const upstream = new URL(target);
  const seen: Proxy['seen'] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    seen.push({ at: Date.now(), method: req.method ?? '', url: req.url ?? '' });
    const answer = opts.intercept?.({ method: req.method ?? '', url });
    if (answer) {
      req.resume();
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
      return;
    }
    opts.rewrite?.(url);
    const headers = { ...req.headers, host: upstream.host };
    const up = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: `${url.pathname}${url.search}`, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}


/** `drover worker` that is expected to refuse to start: its exit code and stderr. */
async function runWorkerExpectingExit(env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'drover-worker-cfg-'));
  try {
    const proc = spawn(process.execPath, [DROVER_BIN, 'worker'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', DROVER_DATA_ROOT: join(dir, 'data'), DROVER_IMDS_URL: 'http://127.0.0.1:9', ...env },
    });
    let stderr = '';
    let stdout = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    const [code] = (await once(proc, 'exit')) as [number | null];
    clearTimeout(killer);
    return { code, stderr, stdout };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('worker data sync end to end', () => {
  let server: TestServer;
  let user: TestUser;
  let s3: Backend;
  let local: Backend;
  const workers: TestWorker[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    server = await startTestServer('sqlite');
    user = await server.user();
    s3 = await startBackend('s3');
    local = await startBackend('local');
  });
  after(async () => {
    for (const w of workers) {
      await w.killNode();
      rmSync(w.dataRoot, { recursive: true, force: true });
    }
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await s3?.close();
    await local?.close();
    await server?.close();
  });

  function worker(group: string, spec: Partial<WorkerSpec> = {}, url = server.url, key = user.token): TestWorker {
    const w = spawnWorker({ url, key, group, storageEnv: s3.env, ...spec });
    workers.push(w);
    return w;
  }

  function create(def: Omit<JobDefinition, 'container_group_id'> & { container_group_id: string }, client = user.client): Promise<Job> {
    return client.createJob({ heartbeat_interval: 1, max_failures: 1, ...def });
  }

  async function finalStatus(w: TestWorker, id: string, want: string, client = user.client, timeoutMs = 20_000): Promise<Job> {
    let job: Job | undefined;
    const final = ['completed', 'failed', 'canceled'];
    await waitFor(`job ${id} ${want}`, async () => {
      job = await client.getJob(id);
      return final.includes(job.status);
    }, timeoutMs).catch((e: Error) => {
      throw new Error(`${e.message} (status ${job?.status})\n${dump(w)}`);
    });
    assert.equal(job!.status, want, `job ${id} ended ${job!.status}, expected ${want}\n${dump(w)}`);
    return job!;
  }

  const jobLogs = (w: TestWorker, id: string) => w.logs.filter((l) => l.job === id);

  it('legacy fields on the local backend: input and checkpoint downloaded, checkpoints uploaded while it runs, output uploaded', async () => {
    const b = local;
    await b.store.put(b.bucket, 'legacy/in/input.txt', Buffer.from('hello-legacy\n'));
    await b.store.put(b.bucket, 'legacy/ck/ckpt-000003.json', Buffer.from(JSON.stringify({ step: 3 })));
    const group = 'g-legacy';
    const w = worker(group, { storageEnv: b.env });
    const job = await create({
      command: process.execPath,
      arguments: [APP],
      environment: { STEPS: '8', STEP_MS: '250' },
      container_group_id: group,
      input_bucket: b.bucket,
      input_prefix: 'legacy/in/',
      checkpoint_bucket: b.bucket,
      checkpoint_prefix: 'legacy/ck/',
      output_bucket: b.bucket,
      output_prefix: 'legacy/out/',
    });
    await finalStatus(w, job.id, 'completed');
    const result = (await readAll(await b.store.getStream(b.bucket, 'legacy/out/result.txt'))).toString();
    assert.equal(result, 'done 8 steps, started at 3, input hello-legacy\n', 'the app saw the input and resumed from the downloaded checkpoint');
    const ck = await keysOf(b.store, b.bucket, 'legacy/ck/');
    for (let i = 3; i <= 8; i++) assert.ok(ck.includes(`legacy/ck/ckpt-00000${i}.json`), `checkpoint ${i} in the bucket: ${ck.join(', ')}`);
    assert.ok(!ck.some((k) => k.includes('.tmp-')), `no temp file uploaded: ${ck.join(', ')}`);
    // A checkpoint went up while the process was still running (during-sync), not only after.
    const lines = jobLogs(w, job.id);
    const firstUpload = lines.findIndex((l) => l.msg === 'uploaded' && String(l.key).startsWith('legacy/ck/ckpt-'));
    const exited = lines.findIndex((l) => l.msg === 'job process exited');
    assert.ok(firstUpload >= 0 && exited >= 0 && firstUpload < exited, `a checkpoint was uploaded before the process exited\n${dump(w)}`);
    assert.ok(lines.some((l) => l.msg === 'inputs downloaded' && l.files === 2), 'input and checkpoint downloaded');
  });

  it('sync: {} wins over the legacy fields: nothing is downloaded or uploaded, and the job completes', async () => {
    await s3.store.put(s3.bucket, 'empty/in/input.txt', Buffer.from('not for you\n'));
    await s3.store.put(s3.bucket, 'empty/ck/ckpt-000002.json', Buffer.from('{}'));
    const group = 'g-empty-sync';
    const w = worker(group);
    const job = await create({
      ...script(`
        console.log('listing ' + JSON.stringify({ input: fs.readdirSync(env.INPUT_DIR), ckpt: fs.readdirSync(env.CHECKPOINT_DIR) }));
        put(path.join(env.OUTPUT_DIR, 'result.txt'), 'out');
        put(path.join(env.CHECKPOINT_DIR, 'ckpt-000005.json'), '{}');
        await sleep(600);
      `),
      container_group_id: group,
      sync: {},
      input_bucket: s3.bucket,
      input_prefix: 'empty/in/',
      checkpoint_bucket: s3.bucket,
      checkpoint_prefix: 'empty/ck/',
      output_bucket: s3.bucket,
      output_prefix: 'empty/out/',
    });
    assert.deepEqual(job.sync, {}, 'the coordinator keeps sync: {}');
    await finalStatus(w, job.id, 'completed');
    const lines = jobLogs(w, job.id);
    assert.ok(lines.some((l) => l.msg === 'listing {"input":[],"ckpt":[]}'), `the app found empty folders\n${dump(w)}`);
    assert.deepEqual((await keysOf(s3.store, s3.bucket, 'empty/')).sort(), ['empty/ck/ckpt-000002.json', 'empty/in/input.txt']);
    assert.ok(!lines.some((l) => /^(downloaded|uploaded|inputs downloaded|outputs uploaded)$/.test(l.msg)), 'no transfer logged');
  });

  it('refuses local_paths outside the data root: the job fails here, nothing outside is written or deleted', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'drover-safety-'));
    cleanups.push(async () => rmSync(parent, { recursive: true, force: true }));
    const dataRoot = join(parent, 'root');
    mkdirSync(dataRoot);
    writeFileSync(join(parent, 'canary.txt'), 'next to the data root');
    mkdirSync(join(parent, 'outside'));
    writeFileSync(join(parent, 'outside', 'keep.txt'), 'behind a symlink');
    symlinkSync(join(parent, 'outside'), join(dataRoot, 'link'));
    await s3.store.put(s3.bucket, 'evil/payload.txt', Buffer.from('payload'));

    const paths = ['/', '/etc', '../escape', '..', 'link', 'link/sub', '.drover/x'];
    // This machine may run tests as root: make sure no path here can reach a worker unrefused
    // (one that purged `/` would wipe the machine) before giving them to one.
    const folders = { dataRoot, inputDir: join(dataRoot, 'input'), outputDir: join(dataRoot, 'output'), checkpointDir: join(dataRoot, 'checkpoint') };
    for (const p of paths) {
      const probe = { sync: { before: [{ bucket: 'b', prefix: '', local_path: p, direction: 'download' as const }] } } as unknown as Job;
      await assert.rejects(planSync(probe, folders), /not allowed/, `planSync refuses ${p}`);
    }

    const group = 'g-safety';
    const jobs: { path: string; job: Job }[] = [];
    // A Drover coordinator refuses ".." at submission, but a Kelpie coordinator hands such jobs out:
    // they go in with a stand-in path, which is then set to the real one in the store itself.
    const STAND_IN = '__path_set_below__';
    const db = (server.server.store as SqliteStore).db;
    for (const [i, p] of paths.entries()) {
      const entry = { bucket: s3.bucket, prefix: 'evil/', local_path: p.includes('..') ? STAND_IN : p };
      const sync = i % 2 === 0
        ? { before: [{ ...entry, direction: 'download' as const }] }
        : { during: [{ ...entry, direction: 'upload' as const }], after: [{ ...entry, direction: 'upload' as const }] };
      const job = await create({ ...script(`fs.writeFileSync(${JSON.stringify(join(parent, `ran-${i}`))}, 'ran');`), container_group_id: group, sync });
      if (p.includes('..')) {
        const { spec } = await db.selectFrom('jobs').select('spec').where('id', '=', job.id).executeTakeFirstOrThrow();
        await db.updateTable('jobs').set({ spec: spec.replaceAll(JSON.stringify(STAND_IN), JSON.stringify(p)) }).where('id', '=', job.id).execute();
      }
      jobs.push({ path: p, job });
    }
    const w = worker(group, { dataRoot, env: { MAX_JOB_FAILURES: '100' } });
    for (const { path: p, job } of jobs) {
      await finalStatus(w, job.id, 'failed');
      const events = await user.client.jobEvents(job.id);
      assert.ok(events.events.some((e) => e.type === 'failed' && e.machine_id === w.machineId), `failed by this worker: ${JSON.stringify(events)}`);
      const refusal = jobLogs(w, job.id).find((l) => l.msg.includes('not allowed'));
      assert.ok(refusal, `a log line says ${p} is not allowed\n${dump(w)}`);
      assert.ok(refusal.msg.includes(`local_path ${JSON.stringify(p)} is not allowed`), `the log line names the path: ${refusal.msg}`);
      assert.ok(!jobLogs(w, job.id).some((l) => l.msg === 'job process started'), `the job for ${p} never ran`);
    }
    assert.equal(readFileSync(join(parent, 'canary.txt'), 'utf8'), 'next to the data root');
    assert.deepEqual(readdirSync(join(parent, 'outside')), ['keep.txt'], 'nothing written behind the symlink');
    assert.equal(readFileSync(join(parent, 'outside', 'keep.txt'), 'utf8'), 'behind a symlink');
    assert.deepEqual(readdirSync(parent).sort(), ['canary.txt', 'outside', 'root'], 'nothing created next to the data root');
    assert.ok(existsSync('/etc/passwd') && !existsSync('/payload.txt') && !existsSync('/etc/payload.txt'));
  });

  it('uploads only what a glob selects: *.bin at any depth, checkpoint-* with everything inside the folder', async () => {
    const group = 'g-glob';
    const w = worker(group);
    const job = await create({
      ...script(`
        for (const f of ['models/a.bin', 'models/b.txt', 'models/sub/c.bin', 'models/sub/d.bin.txt', 'models/.e.bin']) put(f, f);
        for (const f of ['ck/checkpoint-500/model.pt', 'ck/checkpoint-500/opt/state.pt', 'ck/other/x.pt', 'ck/log.txt', 'ck/checkpoint-500.txt']) put(f, f);
        await gate('go');
      `),
      container_group_id: group,
      sync: {
        during: [
          { bucket: s3.bucket, prefix: 'glob/m/', local_path: 'models', direction: 'upload', pattern: '*.bin' },
          { bucket: s3.bucket, prefix: 'glob/c/', local_path: 'ck', direction: 'upload', pattern: 'checkpoint-*' },
        ],
      },
    });
    const want = ['glob/c/checkpoint-500.txt', 'glob/c/checkpoint-500/model.pt', 'glob/c/checkpoint-500/opt/state.pt', 'glob/m/.e.bin', 'glob/m/a.bin', 'glob/m/sub/c.bin'];
    await waitFor('the selected files uploaded while the job runs', async () => (await keysOf(s3.store, s3.bucket, 'glob/')).length >= want.length).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump(w)}`);
    });
    assert.equal((await user.client.getJob(job.id)).status, 'running');
    openGate(w, 'go');
    await finalStatus(w, job.id, 'completed');
    assert.deepEqual((await keysOf(s3.store, s3.bucket, 'glob/')).sort(), want);
  });

  it('deletes from the bucket the files the job removes while it runs', async () => {
    const group = 'g-delete';
    const w = worker(group);
    const job = await create({
      ...script(`
        put('out/a.txt', 'a'); put('out/b.txt', 'b'); put('out/sub/c.txt', 'c');
        await gate('go1');
        fs.rmSync('out/a.txt'); fs.rmSync('out/sub', { recursive: true });
        await gate('go2');
      `),
      container_group_id: group,
      sync: { during: [{ bucket: s3.bucket, prefix: 'del/', local_path: 'out', direction: 'upload' }] },
    });
    const keys = async () => (await keysOf(s3.store, s3.bucket, 'del/')).sort();
    await waitFor('three files uploaded', async () => (await keys()).length === 3).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump(w)}`);
    });
    assert.deepEqual(await keys(), ['del/a.txt', 'del/b.txt', 'del/sub/c.txt']);
    openGate(w, 'go1');
    await waitFor('the removed files deleted from the bucket', async () => (await keys()).length === 1).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump(w)}`);
    });
    assert.deepEqual(await keys(), ['del/b.txt']);
    assert.equal((await user.client.getJob(job.id)).status, 'running');
    // The worker logs each delete once S3 has answered it, so its lines may trail the bucket.
    const deletes = () => jobLogs(w, job.id).filter((l) => l.msg === 'deleted (removed locally)');
    await waitFor('both deletes logged', () => deletes().length >= 2).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump(w)}`);
    });
    openGate(w, 'go2');
    await finalStatus(w, job.id, 'completed');
    assert.deepEqual(await keys(), ['del/b.txt']);
    assert.deepEqual(deletes().map((l) => l.key).sort(), ['del/a.txt', 'del/sub/c.txt'], 'each removed file deleted once');
  });

  it('keeps KELPIE_STATE_FILE in the documented shape while the job runs and after it completes', async () => {
    const group = 'g-state';
    const w = worker(group);
    const started = await w.waitForLog('worker started', (l) => l.msg === 'drover worker started');
    const stateFile = started.stateFile as string;
    assert.equal(typeof stateFile, 'string');
    const job = await create({
      ...script(`
        console.log('state file ' + env.KELPIE_STATE_FILE);
        await gate('go');
        fs.mkdirSync('out', { recursive: true });
        fs.copyFileSync(env.KELPIE_STATE_FILE, 'out/state.json');
      `),
      container_group_id: group,
      sync: { after: [{ bucket: s3.bucket, prefix: 'state/', local_path: 'out', direction: 'upload' }] },
    });
    const read = () => JSON.parse(readFileSync(stateFile, 'utf8')) as { start: string; jobs: Record<string, unknown>[] };
    const jobKeys = ['activeDownloads', 'activeUploads', 'exitCode', 'exitTime', 'id', 'start', 'status'];
    const checkShape = (s: ReturnType<typeof read>) => {
      assert.deepEqual(Object.keys(s).sort(), ['jobs', 'start']);
      assert.ok(!Number.isNaN(Date.parse(s.start)), `start is a time: ${s.start}`);
      assert.equal(s.jobs.length, 1, JSON.stringify(s));
      const j = s.jobs[0]!;
      assert.deepEqual(Object.keys(j).sort(), jobKeys);
      assert.equal(j.id, job.id);
      assert.ok(!Number.isNaN(Date.parse(j.start as string)), `job start is a time: ${String(j.start)}`);
      assert.ok(Array.isArray(j.activeUploads) && Array.isArray(j.activeDownloads));
      return j;
    };
    await w.waitForLog('the job runs', (l) => l.job === job.id && l.msg === `state file ${stateFile}`);
    const running = checkShape(read());
    assert.equal(running.status, 'running');
    assert.equal(running.exitCode, null);
    assert.equal(running.exitTime, null);
    assert.deepEqual(running.activeDownloads, []);

    openGate(w, 'go');
    await finalStatus(w, job.id, 'completed');
    await waitFor('the state file says completed', () => read().jobs[0]?.status === 'completed');
    const done = checkShape(read());
    assert.equal(done.exitCode, 0);
    assert.ok(!Number.isNaN(Date.parse(done.exitTime as string)), `exitTime is a time: ${String(done.exitTime)}`);
    assert.deepEqual(done.activeUploads, []);
    // What the app itself read while it ran.
    const seen = JSON.parse((await readAll(await s3.store.getStream(s3.bucket, 'state/state.json'))).toString()) as ReturnType<typeof read>;
    const inApp = checkShape(seen);
    assert.equal(inApp.status, 'running');
    assert.equal(inApp.exitCode, null);
  });

  it('fails a job whose command does not exist, says so, and goes on with the next job', async () => {
    const group = 'g-nocommand';
    const w = worker(group);
    const missing = await create({ command: '/nonexistent/drover-no-such-command', arguments: ['x'], container_group_id: group });
    const next = await create({ ...script(`console.log('next job ran');`), container_group_id: group });
    await finalStatus(w, missing.id, 'failed');
    const line = jobLogs(w, missing.id).find((l) => l.msg.includes('could not be started'));
    assert.ok(line, `the log says the command could not be started\n${dump(w)}`);
    assert.match(line.msg, /ENOENT/);
    await finalStatus(w, next.id, 'completed');
    assert.ok(jobLogs(w, next.id).some((l) => l.msg === 'next job ran'));
    assert.equal(w.proc.exitCode, null, 'the worker still runs');
  });

  it('sends the progress the app writes to DROVER_PROGRESS_FILE with its heartbeats', async () => {
    const group = 'g-progress';
    const w = worker(group);
    const job = await create({
      ...script(`
        fs.writeFileSync(env.DROVER_PROGRESS_FILE, JSON.stringify({ fraction: 0.25, message: 'quarter done' }));
        await gate('go1');
        fs.writeFileSync(env.DROVER_PROGRESS_FILE, JSON.stringify({ fraction: 0.75, message: 'three quarters' }));
        await gate('go2');
      `),
      container_group_id: group,
    });
    const progressIs = (fraction: number) => async () => {
      const j = await user.client.getJob(job.id);
      return j.status === 'running' && j.progress?.fraction === fraction;
    };
    await waitFor('progress 0.25 while running', progressIs(0.25)).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump(w)}`);
    });
    assert.deepEqual((await user.client.getJob(job.id)).progress, { fraction: 0.25, message: 'quarter done' });
    openGate(w, 'go1');
    await waitFor('progress 0.75 while running', progressIs(0.75));
    assert.deepEqual((await user.client.getJob(job.id)).progress, { fraction: 0.75, message: 'three quarters' });
    openGate(w, 'go2');
    await finalStatus(w, job.id, 'completed');
  });

  it('falls back to plain polling when the coordinator refuses a long-poll, and still gets the job', async () => {
    const proxy = await startProxy(server.url, {
      intercept: ({ method, url }) =>
        method === 'GET' && url.pathname === '/work' && url.searchParams.has('wait')
          ? { status: 400, body: { statusCode: 400, error: 'Bad Request', message: 'querystring must NOT have additional properties' } }
          : undefined,
    });
    cleanups.push(() => proxy.close());
    const group = 'g-fallback';
    const job = await create({ ...script(`console.log('ran behind the proxy');`), container_group_id: group });
    const w = worker(group, { env: { DROVER_POLL_INTERVAL_S: '0.5' } }, proxy.url);
    await w.waitForLog('the fallback', (l) => l.msg.includes('refused a long-poll claim'));
    await finalStatus(w, job.id, 'completed');
    const claims = proxy.seen.filter((r) => r.method === 'GET' && r.url.startsWith('/work?'));
    assert.equal(claims.filter((r) => r.url.includes('wait=')).length, 1, `one long-poll try: ${claims.map((r) => r.url).join('\n')}`);
    assert.ok(claims.some((r) => !r.url.includes('wait=')), 'then claims without wait');
  });

  it('a job handed back to the node still finishing it is not run twice: it waits for the attempt in flight, whose report ends the job', async () => {
    // Its heartbeats and its report do not get through (a coordinator behind a failing proxy), so the
    // lease lapses while the job's report waits to be sent, and the next claim hands the job back here.
    let blocked = true;
    const proxy = await startProxy(server.url, {
      intercept: ({ method, url }) =>
        blocked && method === 'POST' && /\/(heartbeat|completed)$/.test(url.pathname) ? { status: 503, body: { error: 'unavailable', message: 'try again' } } : undefined,
    });
    cleanups.push(() => proxy.close());
    const group = 'g-reclaimed';
    const job = await create({ ...script(`console.log('ran once');`), container_group_id: group, sync: {} });
    const w = worker(group, {}, proxy.url);
    await w.waitForLog('the same job claimed again', (l) => l.job === job.id && l.msg === 'claimed a job this node is still finishing: waiting for that attempt to end', 30_000);
    blocked = false;
    await finalStatus(w, job.id, 'completed');
    assert.equal(jobLogs(w, job.id).filter((l) => l.msg === 'job process started').length, 1, `one process for the job\n${dump(w)}`);
    const { events } = await user.client.jobEvents(job.id);
    assert.deepEqual(events.map((e) => `${e.type}#${e.attempt}`), ['created#0', 'claimed#1', 'lease_expired#1', 'claimed#2', 'completed#2']);
    await w.waitForLog('not run again', (l) => l.job === job.id && l.msg === 'the job ended with the attempt this node was finishing: not run again' && l.status === 'completed');
  });

  it('reports a failure without its reason to a coordinator that refuses the field (Kelpie)', async () => {
    let refused = 0;
    const proxy = await startProxy(server.url, {
      intercept: ({ method, url }) =>
        method === 'POST' && url.pathname.endsWith('/failed') && refused++ === 0
          ? { status: 400, body: { statusCode: 400, error: 'Bad Request', message: 'body must NOT have additional properties' } }
          : undefined,
    });
    cleanups.push(() => proxy.close());
    const group = 'g-kelpie-failed';
    const job = await create({ ...script(`process.exit(4);`), container_group_id: group });
    const w = worker(group, {}, proxy.url);
    await finalStatus(w, job.id, 'failed');
    assert.equal(proxy.seen.filter((r) => r.method === 'POST' && r.url.endsWith('/failed')).length, 2, 'the refused report, then the one without a reason');
    const { events } = await user.client.jobEvents(job.id);
    const failed = events.filter((e) => e.type === 'failed_attempt');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.reason, undefined);
    // The worker logs the report once the coordinator has answered it, so after the status changed.
    await w.waitForLog('the report logged with its reason', (l) => l.job === job.id && l.msg === 'job reported failed' && l.reason === 'the job process exited with code 4');
  });

  it('paces its polls when the coordinator answers at once (a Kelpie that ignores wait)', async (t) => {
    const proxy = await startProxy(server.url, { rewrite: (url) => url.searchParams.delete('wait') });
    cleanups.push(() => proxy.close());
    const group = 'g-pacing';
    const w = worker(group, { env: { DROVER_POLL_INTERVAL_S: '0.5' } }, proxy.url);
    const claims = () => proxy.seen.filter((r) => r.method === 'GET' && r.url.startsWith('/work?'));
    await waitFor('the first poll', () => claims().length > 0).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump(w)}`);
    });
    const from = claims()[0]!.at;
    // A measurement window, not a wait for a condition.
    await new Promise((r) => setTimeout(r, 2100));
    const n = claims().filter((r) => r.at >= from && r.at < from + 2000).length;
    t.diagnostic(`GET /work in 2 s at DROVER_POLL_INTERVAL_S=0.5: ${n}`);
    assert.ok(n >= 3 && n <= 6, `about 4 polls in 2 s at DROVER_POLL_INTERVAL_S=0.5, got ${n}`);
    const job = await create({ ...script(`console.log('picked up');`), container_group_id: group });
    await finalStatus(w, job.id, 'completed');
  });

  it('exits 2 with a message naming the setting on bad configuration', async () => {
    const good = { KELPIE_API_URL: 'http://127.0.0.1:9', KELPIE_API_KEY: 'k', SALAD_CONTAINER_GROUP_ID: 'g' };
    const [retries, noUrl, ftp] = await Promise.all([
      runWorkerExpectingExit({ ...good, MAX_RETRIES: 'abc' }),
      runWorkerExpectingExit({ KELPIE_API_KEY: 'k', SALAD_CONTAINER_GROUP_ID: 'g' }),
      runWorkerExpectingExit({ ...good, DROVER_STORAGE: 'ftp://x' }),
    ]);
    for (const r of [retries, noUrl, ftp]) {
      assert.equal(r.code, 2, `exit code 2: ${r.stderr}`);
      assert.ok(!r.stderr.includes('    at '), `a message, not a stack trace: ${r.stderr}`);
      assert.ok(!r.stdout.includes('drover worker started'), 'no worker started');
    }
    assert.match(retries.stderr, /MAX_RETRIES/);
    assert.match(retries.stderr, /abc/);
    assert.match(noUrl.stderr, /KELPIE_API_URL/);
    assert.match(ftp.stderr, /ftp:\/\/x/);
    assert.match(ftp.stderr, /s3|file:\/\//);
  });

  it('keeps the job running while the coordinator restarts: heartbeats fail, recover, and the job completes', async () => {
    const db = await freshDatabase('sqlite');
    cleanups.push(() => db.cleanup());
    const port = await freePort();
    const adminKey = `admin-${process.pid}-restart`;
    let coordinator: ServerProcess = await spawnServer({ database: db.database, adminKey, port });
    cleanups.push(() => coordinator.stop('SIGKILL'));
    const admin = new DroverClient({ url: coordinator.url, key: adminKey, retries: 0 });
    const u = await admin.createUser('restarter');
    const { token } = await admin.createToken(u.id);
    const client = new DroverClient({ url: coordinator.url, key: token, retries: 2 });
    const group = 'g-restart';
    const w = worker(group, { env: { MAX_RETRIES: '0' } }, coordinator.url, token);
    const job = await create({ ...script(`await gate('go'); console.log('finished after the restart');`), container_group_id: group }, client);
    await w.waitForLog('the job process', (l) => l.job === job.id && l.msg === 'job process started');
    await waitFor('a heartbeat', async () => (await client.getJob(job.id)).num_heartbeats >= 1);

    await coordinator.stop('SIGKILL');
    const failedBeat = await w.waitForLog('a failed heartbeat', (l) => l.job === job.id && String(l.msg).startsWith('heartbeat failed'));
    coordinator = await spawnServer({ database: db.database, adminKey, port });
    await w.waitForLog('heartbeats again', (l) => l.job === job.id && l.msg === 'heartbeat: coordinator reachable again', 20_000);
    const mid = await client.getJob(job.id);
    assert.equal(mid.status, 'running');
    assert.equal(mid.machine_id, w.machineId);
    assert.ok(w.logs.indexOf(failedBeat) < w.logs.findIndex((l: WorkerLogLine) => l.msg === 'heartbeat: coordinator reachable again'));

    openGate(w, 'go');
    await finalStatus(w, job.id, 'completed', client);
    assert.ok(jobLogs(w, job.id).some((l) => l.msg === 'finished after the restart'));
    assert.equal(jobLogs(w, job.id).filter((l) => l.msg === 'job process started').length, 1, 'the process ran once, not restarted');
  });
});
