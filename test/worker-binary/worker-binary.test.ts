// The single-file `drover-worker` (scripts/build-worker-binary.mjs), built fresh for this run and
// copied alone into an empty folder, run with a clean environment whose PATH has no node (only the
// few tools the job's shell script uses, as a GPU image has its own runtime): against a real
// coordinator and a loopback S3 server it runs a job with before, during and after sync, and after
// a kill -9 mid-job a second copy resumes it from the checkpoint the first uploaded. The first runs
// its transfers in worker threads (their files unpacked into its TMPDIR), the second has no
// writable TMPDIR and runs them on the main thread.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { spawnWorker, type TestWorker } from '@drover/testing/worker';
import { readAll, startBackend, type Backend } from '@drover/testing/storage';

const run = promisify(execFile);

/** The job: counts to job/steps.txt, one step every STEP_S, resuming from state/step.txt; moves its input data.bin to out/. */
const JOB_SCRIPT = `set -eu
if command -v node >/dev/null 2>&1; then echo "node is on PATH" >&2; exit 3; fi
read total < job/steps.txt
step=0
if [ -f state/step.txt ]; then read step < state/step.txt; fi
start=$step
echo "starting at step $start of $total"
while [ "$step" -lt "$total" ]; do
  sleep "$STEP_S"
  step=$((step + 1))
  echo "$step" > state/.step.tmp
  mv state/.step.tmp state/step.txt
done
mkdir -p out
mv job/data.bin out/data.bin
echo "done $total steps, started at $start" > out/result.txt
`;

/** Tools the job script needs that are not sh builtins; nothing else is on the workers' PATH. */
const TOOLS = ['sh', 'sleep', 'mv', 'mkdir'];

describe('drover-worker, the single-file binary', () => {
  let dir: string;
  let binary: string;
  let toolsDir: string;
  let server: TestServer;
  let user: TestUser;
  let s3: Backend;
  const workers: TestWorker[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'drover-binary-'));
    // Built fresh from this checkout's dist/ (about 3 s), so the test never runs a stale binary.
    const built = join(dir, 'build', 'drover-worker');
    execFileSync(process.execPath, [join(REPO_ROOT, 'scripts/build-worker-binary.mjs'), '--out', built, '--quiet'], { stdio: 'inherit' });
    // Alone in an empty folder: no node_modules, no package.json, nothing beside it.
    mkdirSync(join(dir, 'bin'));
    binary = join(dir, 'bin', 'drover-worker');
    copyFileSync(built, binary);
    chmodSync(binary, 0o755);
    rmSync(join(dir, 'build'), { recursive: true });
    toolsDir = join(dir, 'tools');
    mkdirSync(toolsDir);
    for (const tool of TOOLS) symlinkSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(), join(toolsDir, tool));
    server = await startTestServer('sqlite');
    user = await server.user();
    s3 = await startBackend('s3');
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.killNode()));
    await s3?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function binaryWorker(group: string, tmp: string): TestWorker {
    const w = spawnWorker({ bin: binary, path: toolsDir, url: server.url, key: user.token, group, storageEnv: s3.env, env: { TMPDIR: tmp } });
    workers.push(w);
    return w;
  }

  it('has no node on its PATH and prints its version and usage errors as drover worker does', async () => {
    const env = { PATH: toolsDir, HOME: dir };
    await assert.rejects(run('sh', ['-c', 'command -v node'], { env }), 'node is not on the PATH the binaries get');
    const { stdout } = await run(binary, ['--version'], { env });
    assert.match(stdout, /^drover-worker 0\.1\.0 \(Node\.js v20\.\d+\.\d+ linux-(x64|arm64)\)\n$/);
    const missing = await run(binary, [], { env: { ...env, DROVER_IMDS_URL: 'off' } }).then(
      () => assert.fail('a worker without its coordinator URL must not start'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /KELPIE_API_URL/);
    const unknown = await run(binary, ['--no-such-flag'], { env }).then(
      () => assert.fail('an unknown flag must be refused'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--no-such-flag'/);
  });

  it('runs a job with before, during and after sync, and after a kill -9 a second binary resumes it from the uploaded checkpoint', async () => {
    const group = 'g-binary';
    const prefix = 'binary-job/';
    const data = randomBytes(3 * 1024 * 1024 + 17); // above the engine's threshold for worker-thread hashing
    await s3.store.put(s3.bucket, `${prefix}job/run.sh`, Buffer.from(JOB_SCRIPT));
    await s3.store.put(s3.bucket, `${prefix}job/steps.txt`, Buffer.from('40\n'));
    await s3.store.put(s3.bucket, `${prefix}job/data.bin`, data);
    const job = await user.client.createJob({
      command: 'sh',
      arguments: ['job/run.sh'],
      environment: { STEP_S: '0.25' },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: {
        before: [
          { bucket: s3.bucket, prefix: `${prefix}job/`, local_path: 'job', direction: 'download' },
          { bucket: s3.bucket, prefix: `${prefix}state/`, local_path: 'state', direction: 'download' },
        ],
        during: [{ bucket: s3.bucket, prefix: `${prefix}state/`, local_path: 'state', direction: 'upload', pattern: 'step.txt' }],
        after: [{ bucket: s3.bucket, prefix: `${prefix}out/`, local_path: 'out', direction: 'upload' }],
      },
    });
    const checkpoint = async (): Promise<number> => {
      try {
        return Number((await readAll(await s3.store.getStream(s3.bucket, `${prefix}state/step.txt`))).toString().trim());
      } catch {
        return 0;
      }
    };

    const tmpA = join(dir, 'tmp-a');
    mkdirSync(tmpA);
    const a = binaryWorker(group, tmpA);
    await a.waitForLog('A started the job', (l) => l.job === job.id && l.msg === 'job process started');
    await waitFor('a checkpoint at step 5 or later in the bucket', async () => (await checkpoint()) >= 5, 20_000);
    await a.killNode();
    const atKill = await checkpoint();
    assert.ok(atKill < 40, `A was killed before the end (checkpoint ${atKill})`);
    // A unpacked its transfer threads' files into its own TMPDIR, nowhere beside the binary.
    const [unpacked] = readdirSync(join(tmpA, `drover-worker-${process.getuid!()}`));
    assert.deepEqual(readdirSync(join(tmpA, `drover-worker-${process.getuid!()}`, unpacked!)).sort(), ['package.json', 'pool-worker.js', 'worker.js']);
    assert.deepEqual(readdirSync(join(dir, 'bin')), ['drover-worker']);

    // B's TMPDIR cannot be made (a file is in the way): it runs its transfers on the main thread.
    writeFileSync(join(dir, 'not-a-folder'), '');
    const b = binaryWorker(group, join(dir, 'not-a-folder', 'tmp'));
    try {
      await waitFor(`job ${job.id} completed`, async () => (await user.client.getJob(job.id)).status === 'completed', 40_000);
    } catch (err) {
      const tails = [a, b].map((w) => `--- ${w.machineId}\n${w.logs.slice(-12).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-1000)}`);
      throw new Error(`${(err as Error).message}\n${tails.join('\n')}`);
    }
    assert.match(b.stderr(), /transfer threads unavailable \(cannot unpack their files: .*\); transfers run on the main thread/);
    const done = await user.client.getJob(job.id);
    assert.equal(done.machine_id, b.machineId);
    assert.equal(done.attempt, 2);
    assert.equal(done.num_failures, 0, 'a lapsed lease is not a failure');

    const result = (await readAll(await s3.store.getStream(s3.bucket, `${prefix}out/result.txt`))).toString();
    const resumed = Number(/started at (\d+)/.exec(result)?.[1]);
    assert.ok(resumed >= atKill && resumed > 0, `B resumed at step ${resumed}, the checkpoint at the kill was ${atKill}`);
    assert.equal(result, `done 40 steps, started at ${resumed}\n`);
    assert.ok((await readAll(await s3.store.getStream(s3.bucket, `${prefix}out/data.bin`))).equals(data), 'the input went down and back up byte for byte');
    assert.equal(await checkpoint(), 40, 'the during-sync uploaded the last checkpoint');
    assert.ok(b.logs.some((l) => l.job === job.id && /starting at step \d+ of 40/.test(l.msg)), 'B ran the job');
    assert.ok(!existsSync(join(dir, 'not-a-folder', 'tmp')));
  });
});
