// The series-sum demo (examples/series-sum) end to end, in both data modes: a real coordinator,
// real `drover worker` processes, a loopback S3 server, the app built to dist/. Jobs come from
// seriesSumJob(), as `drover demo` submits them. A node is killed with SIGKILL (or stopped with
// SIGTERM) mid-run; the next worker must resume from the saved state and the sum must be exact.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { describe, it } from 'node:test';
import {
  MAIN_JS, expectedSum, inputKey, logKey, outputKey, seriesSumJob, stateKey,
  type SeriesOutput, type SeriesState, type SeriesSumJobOptions, type SeriesSumMode,
} from '@drover/example-series-sum';
import { NotFoundError } from '@drover/storage';
import { startRecordingImds } from '@drover/testing/imds';
import { waitFor } from '@drover/testing/wait';
import { workerStack } from '@drover/testing/stack';
import { keysOf, readAll } from '@drover/testing/storage';

describe('series-sum demo end to end (S3)', () => {
  const stack = workerStack();
  const { worker } = stack;

  function dump(): string {
    return stack.workers.map((w) => `--- ${w.machineId}\n${w.logs.slice(-25).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-1500)}`).join('\n');
  }

  async function untilStatus(jobId: string, status: string, timeoutMs = 40_000): Promise<void> {
    try {
      await waitFor(`job ${jobId} ${status}`, async () => (await stack.user.client.getJob(jobId)).status === status, timeoutMs);
    } catch (err) {
      const job = await stack.user.client.getJob(jobId);
      throw new Error(`${(err as Error).message} (it is ${job.status})\n${dump()}`);
    }
  }

  async function text(key: string): Promise<string> {
    return (await readAll(await stack.s3.store.getStream(stack.s3.bucket, key))).toString('utf8');
  }

  async function savedState(prefix: string): Promise<SeriesState | undefined> {
    try {
      return JSON.parse(await text(stateKey(prefix))) as SeriesState;
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  async function submit(opts: Omit<SeriesSumJobOptions, 'bucket' | 'containerGroupId'> & { group: string }) {
    const { group, ...rest } = opts;
    return stack.user.client.createJob(seriesSumJob({ bucket: stack.s3.bucket, containerGroupId: group, heartbeatInterval: 1, ...rest }));
  }

  async function putInput(prefix: string, body: string): Promise<void> {
    await stack.s3.store.put(stack.s3.bucket, inputKey(prefix), Buffer.from(body));
  }

  for (const mode of ['worker', 'app'] as const satisfies readonly SeriesSumMode[]) {
    it(`${mode} mode: kill -9 after a state save; another worker resumes from it and the sum is exact`, async () => {
      const group = `ss-kill-${mode}`;
      const prefix = `series-sum/kill-${mode}/`;
      const [start, end] = [1_000_000_000_000_000, 1_000_000_000_000_059]; // the sum is beyond 2^53: BigInt at work
      await putInput(prefix, JSON.stringify({ start, end }));
      const job = await submit({ mode, group, prefix, stepSeconds: 0.1, saveIntervalSeconds: 0.3, sizeMiB: 1 });
      if (mode === 'app') assert.deepEqual(job.sync, {});
      else assert.deepEqual(job.sync?.before?.map((e) => e.prefix), [`${prefix}input/`, `${prefix}state/`]);

      const a = worker(group);
      await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
      // The state and the log are two uploads: wait for both to hold a save past step 0 (under load
      // the kill could fall between them, and the log checked below would miss A's save).
      const savedBy = (m: string) => new RegExp(`machine ${m}: saved step [1-9]\\d* of 60`);
      await waitFor('a state with step > 0 in the bucket, and its line in the log', async () =>
        ((await savedState(prefix))?.step ?? 0) > 0 && savedBy(a.machineId).test(await text(logKey(prefix)).catch(() => '')), 20_000);
      await a.killNode();
      const atKill = (await savedState(prefix))!;
      assert.ok(atKill.step > 0 && atKill.step < end - start + 1, `A was killed mid-run (saved step ${atKill.step})`);
      assert.deepEqual(atKill.machines, [a.machineId]);

      const b = worker(group);
      await untilStatus(job.id, 'completed');

      const out = JSON.parse(await text(outputKey(prefix))) as SeriesOutput;
      assert.equal(out.sum, expectedSum(start, end).toString());
      assert.equal(out.sum, '60000000000001770');
      assert.equal(out.steps, 60);
      assert.deepEqual([out.start, out.end], [start, end]);
      assert.deepEqual(out.machines, [a.machineId, b.machineId]);
      assert.deepEqual(out.runs.map((r) => r.machine), [a.machineId, b.machineId]);
      assert.equal(out.runs[0]!.from, 0);
      const resumed = out.runs[1]!.from;
      assert.ok(resumed > 0 && resumed >= atKill.step, `B resumed at step ${resumed}, the state at the kill said ${atKill.step}`);

      // The log (kept with the state, copied to the output) has both machines and the resume.
      const log = await text(`${prefix}output/log.txt`);
      assert.match(log, new RegExp(`machine ${a.machineId}: started ${start}\\.\\.${end} \\(60 steps\\) at step 0`));
      assert.match(log, savedBy(a.machineId));
      assert.match(log, new RegExp(`machine ${b.machineId}: resumed ${start}\\.\\.${end} at step ${resumed} of 60`));
      assert.match(log, new RegExp(`machine ${b.machineId}: done: the sum of ${start}\\.\\.${end} is ${out.sum}`));
      assert.equal(await text(logKey(prefix)), log, 'the state folder holds the same final log');
      const final = (await savedState(prefix))!;
      assert.equal(final.step, 60);
      assert.equal(final.sum, out.sum);

      // SIZE: one MiB of test data per save went up; one load file is left in the bucket.
      const loads = (await keysOf(stack.s3.store, stack.s3.bucket, `${prefix}load/`));
      assert.equal(loads.length, 1, loads.join(', '));
      assert.equal((await stack.s3.store.head(stack.s3.bucket, loads[0]!)).size, 1024 * 1024);

      // The app's progress reached the coordinator through the worker's heartbeats.
      const done = await stack.user.client.getJob(job.id);
      assert.ok(done.progress && done.progress.fraction > 0, `progress ${JSON.stringify(done.progress)}`);
      assert.match(done.progress.message ?? '', /^(step \d+\/60|done: 60 steps)$/);
      await b.stop();
    });

    it(`${mode} mode: SIGTERM to the worker: the app saves its state, the job is released and resumed at that step`, async () => {
      const group = `ss-term-${mode}`;
      const prefix = `series-sum/term-${mode}/`;
      await putInput(prefix, '{"start": -20, "end": 29}');
      const job = await submit({ mode, group, prefix, stepSeconds: 0.1, saveIntervalSeconds: 60 });

      const a = worker(group);
      await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
      // With a 60 s saving interval only the start has been saved: the state at the SIGTERM is new.
      await a.waitForLog('the app made some steps', (l) => l.job === job.id && /saved step 0 of 50/.test(l.msg));
      await new Promise((r) => setTimeout(r, 800));
      a.signal('SIGTERM');
      const said = await a.waitForLog('the app saved on SIGTERM', (l) => l.job === job.id && /stopped by SIGTERM at step \d+ of 50/.test(l.msg));
      const stoppedAt = Number(/at step (\d+)/.exec(said.msg)![1]);
      assert.deepEqual(await a.exited, { code: 0, signal: null }, a.stderr());
      assert.ok(a.logs.some((l) => l.job === job.id && l.msg === 'job reported released'), dump());
      assert.ok(stoppedAt > 0 && stoppedAt < 50, `stopped at ${stoppedAt}`);
      assert.equal((await savedState(prefix))?.step, stoppedAt, 'the state saved on SIGTERM is in the bucket before the release');

      const b = worker(group);
      await untilStatus(job.id, 'completed');
      const out = JSON.parse(await text(outputKey(prefix))) as SeriesOutput;
      assert.equal(out.sum, expectedSum(-20, 29).toString());
      assert.equal(out.sum, '225');
      assert.deepEqual(out.runs.map((r) => [r.machine, r.from]), [[a.machineId, 0], [b.machineId, stoppedAt]]);
      await b.stop();
    });

    it(`${mode} mode: bad input (start > end, not JSON, missing) completes the job with the error in its output`, async () => {
      const group = `ss-bad-${mode}`;
      const cases = [
        { prefix: `series-sum/bad-${mode}-order/`, input: '{"start": 10, "end": 1}', error: /"start" \(10\) is greater than "end" \(1\)/ },
        { prefix: `series-sum/bad-${mode}-json/`, input: '{"start": 1, "end": ', error: /not valid JSON/ },
        { prefix: `series-sum/bad-${mode}-field/`, input: '{"start": 1.5, "end": 3}', error: /"start" must be an integer/ },
        { prefix: `series-sum/bad-${mode}-missing/`, input: undefined, error: /input file is missing/ },
      ];
      const jobs = [];
      for (const c of cases) {
        if (c.input !== undefined) await putInput(c.prefix, c.input);
        jobs.push(await submit({ mode, group, prefix: c.prefix, stepSeconds: 0.05, saveIntervalSeconds: 1 }));
      }
      const w = worker(group);
      for (const [i, c] of cases.entries()) {
        await untilStatus(jobs[i]!.id, 'completed');
        const out = JSON.parse(await text(outputKey(c.prefix))) as { error?: string; sum?: string };
        assert.match(out.error ?? '', c.error, JSON.stringify(out));
        assert.equal(out.sum, undefined);
        assert.match(await text(`${c.prefix}output/log.txt`), new RegExp(`machine ${w.machineId}: bad input: `));
        assert.equal((await stack.user.client.getJob(jobs[i]!.id)).num_failures, 0);
      }
      await w.stop();
    });
  }

  it('app mode: uploads that cannot keep up make the app ask IMDS to reallocate the node', async () => {
    const imds = await startRecordingImds();
    const group = 'ss-realloc';
    const prefix = 'series-sum/realloc/';
    try {
      await putInput(prefix, '{"start": 1, "end": 100000}');
      const job = await submit({ mode: 'app', group, prefix, stepSeconds: 0.01, saveIntervalSeconds: 0.1, sizeMiB: 1 });
      const w = worker(group, { env: { DROVER_IMDS_URL: imds.url } });
      await waitFor('a first state in the bucket', async () => (await savedState(prefix)) !== undefined, 20_000);
      stack.s3.failNext(1_000_000); // every S3 request answers 503 from now on: a new load file per save piles up
      await waitFor('a reallocation request', () => imds.requests.some((r) => r.path === '/v1/reallocate'), 30_000);
      const req = imds.requests.find((r) => r.path === '/v1/reallocate')!;
      assert.equal(req.method, 'POST');
      const reason = (JSON.parse(req.body) as { reason: string }).reason;
      assert.match(reason, /^series-sum: (\d+ uploads are waiting \(more than 6\)|\d+ uploads failed \(more than 3\))/);
      await w.waitForLog('the app logged the reallocation', (l) => l.job === job.id && /reallocating this node: /.test(l.msg));
      await stack.user.client.cancelJob(job.id);
    } finally {
      stack.s3.failNext(0);
      await imds.close();
    }
  });

  it('app mode off SaladCloud (SALAD_MACHINE_ID=LOCAL): instead of reallocating, the app exits 1 and the attempt fails', async () => {
    const group = 'ss-realloc-local';
    const prefix = 'series-sum/realloc-local/';
    try {
      await putInput(prefix, '{"start": 1, "end": 100000}');
      const job = await stack.user.client.createJob({
        ...seriesSumJob({ mode: 'app', bucket: stack.s3.bucket, prefix, containerGroupId: group, stepSeconds: 0.01, saveIntervalSeconds: 0.1, sizeMiB: 1, heartbeatInterval: 1, maxFailures: 1 }),
      });
      const w = worker(group, { machineId: 'LOCAL' });
      // On a loaded machine the uploads may fall behind (more than 6 waiting) before the first state
      // lands: that is the same overload, and the app exits 1 at once. Either way, then fail S3.
      await waitFor('a first state in the bucket, or the attempt failed', async () =>
        (await savedState(prefix)) !== undefined || (await stack.user.client.getJob(job.id)).status === 'failed', 30_000);
      stack.s3.failNext(1_000_000);
      await untilStatus(job.id, 'failed');
      const exit = w.logs.find((l) => l.job === job.id && l.msg === 'job process exited');
      assert.equal(exit?.code, 1, dump());
      assert.ok(w.logs.some((l) => l.job === job.id && /not on SaladCloud .*exiting with 1/.test(l.msg)), dump());
    } finally {
      stack.s3.failNext(0);
    }
  });
});

describe('series-sum job definitions and settings', () => {
  it('expectedSum is the closed form of the loop, for negative, single and huge ranges', () => {
    for (const [a, b] of [[1, 1000], [-7, 3], [5, 5], [-10, -1], [0, 0]] as const) {
      let sum = 0n;
      for (let i = a; i <= b; i++) sum += BigInt(i);
      assert.equal(expectedSum(a, b), sum, `${a}..${b}`);
    }
    assert.equal(expectedSum(1, 1_000_000_000), 500000000500000000n);
    assert.throws(() => expectedSum(2, 1), /start \(2\) is greater than end \(1\)/);
  });

  it('seriesSumJob: node runs dist/main.js directly (no shell); worker jobs sync, app jobs have sync {}', () => {
    const w = seriesSumJob({ mode: 'worker', bucket: 'b', prefix: 'p/j1', containerGroupId: 'g', stepSeconds: 0.5, node: '/usr/bin/node' });
    assert.equal(w.command, '/usr/bin/node');
    assert.equal(w.arguments![0], MAIN_JS);
    assert.ok(isAbsolute(MAIN_JS) && existsSync(MAIN_JS), MAIN_JS);
    assert.deepEqual(w.arguments!.slice(1, 5), ['--mode', 'worker', '--step-seconds', '0.5']);
    assert.deepEqual(w.sync?.before?.map((e) => [e.prefix, e.local_path, e.direction]), [['p/j1/input/', 'series-sum/input', 'download'], ['p/j1/state/', 'series-sum/state', 'download']]);
    assert.deepEqual(w.sync?.during?.map((e) => e.prefix), ['p/j1/state/', 'p/j1/load/']);
    assert.deepEqual(w.sync?.after?.map((e) => e.prefix), ['p/j1/output/']);
    assert.equal(inputKey('p/j1'), 'p/j1/input/input.json');
    assert.equal(outputKey('p/j1/'), 'p/j1/output/output.json');

    const a = seriesSumJob({ mode: 'app', bucket: 'b', prefix: 'p/j2/', containerGroupId: 'g' });
    assert.deepEqual(a.sync, {});
    assert.deepEqual(a.arguments!.slice(-4), ['--bucket', 'b', '--prefix', 'p/j2/']);
    assert.equal(a.command, process.execPath);

    assert.throws(() => seriesSumJob({ mode: 'shell' as SeriesSumMode, bucket: 'b', prefix: '', containerGroupId: 'g' }), /mode must be "worker" or "app"/);
    assert.throws(() => seriesSumJob({ mode: 'app', bucket: '', prefix: '', containerGroupId: 'g' }), /bucket/);
    assert.throws(() => seriesSumJob({ mode: 'app', bucket: 'b', prefix: '', containerGroupId: 'g', sizeMiB: 1.5 }), /sizeMiB must be an integer/);
  });

  it('bad settings: exit 2 with one line naming the flag and its variable, no stack trace, nothing written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'series-sum-cfg-'));
    try {
      const run = (args: string[], env: Record<string, string> = {}) => {
        const r = spawnSync(process.execPath, [MAIN_JS, ...args], { cwd: dir, encoding: 'utf8', timeout: 15_000, env: { PATH: process.env.PATH ?? '', DROVER_DATA_ROOT: dir, ...env } });
        return { code: r.status, stderr: r.stderr.trim() };
      };
      const cases: [string[], Record<string, string>, RegExp][] = [
        [['--mode', 'worker', '--input-dir', 'i', '--state-dir', 's', '--output-dir', 'o', '--step-seconds', 'fast'], {}, /--step-seconds \(STEP_RUNNING_TIME\) must be a number >= 0, got "fast"/],
        [['--input-dir', 'i', '--state-dir', 's', '--output-dir', 'o'], { STATE_SAVING_INTERVAL: '0' }, /--save-interval \(STATE_SAVING_INTERVAL\) must be a number > 0, got "0" \(from STATE_SAVING_INTERVAL\)/],
        [['--input-dir', 'i', '--state-dir', 's', '--output-dir', 'o'], { SIZE: '-1' }, /--size \(SIZE\) must be an integer >= 0/],
        [[], { MODE: 'both' }, /--mode \(MODE\) must be "worker" or "app", got "both"/],
        [['--mode', 'app'], {}, /--bucket \(BUCKET\) is required in app mode/],
        [['--mode', 'worker'], {}, /--input-dir \(SERIES_INPUT_DIR \/ INPUT_DIR\) is required in worker mode/],
        [['--nope'], {}, /Unknown option '--nope'/],
      ];
      for (const [args, env, message] of cases) {
        const r = run(args, env);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(r.stderr.split('\n').length, 1, r.stderr);
        assert.doesNotMatch(r.stderr, /\bat .+:\d+:\d+/);
      }
      assert.deepEqual(readdirSync(dir), [], 'nothing was written');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
