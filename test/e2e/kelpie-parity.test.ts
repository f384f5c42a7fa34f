// The Kelpie worker's behaviours that a container definition written for it relies on, with a
// real coordinator, real `drover worker` processes, a loopback IMDS and both storage backends:
// `compression: true`, the deletion cost through a job's life, and MAX_TIME_WITH_NO_WORK_S.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { JobDefinition } from '@drover/protocol';
import { startRecordingImds, type RecordingImds } from '@drover/testing/imds';
import { startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { spawnWorker, type TestWorker, type WorkerSpec } from '@drover/testing/worker';
import { BACKENDS, keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';

/** A job process: a `node -e` module script. */
function script(body: string): Pick<JobDefinition, 'command' | 'arguments'> {
  const prelude = `import fs from 'node:fs'; import path from 'node:path';
const root = process.env.DROVER_DATA_ROOT; const at = (p) => path.join(root, p);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const put = (p, text) => { fs.mkdirSync(path.dirname(at(p)), { recursive: true }); fs.writeFileSync(at(p), text); };
`;
  return { command: process.execPath, arguments: ['--input-type=module', '-e', prelude + body] };
}

describe('Kelpie worker parity', () => {
  let server: TestServer;
  let user: TestUser;
  let imds: RecordingImds;
  const workers: TestWorker[] = [];

  function worker(spec: Omit<WorkerSpec, 'url' | 'key'>): TestWorker {
    const w = spawnWorker({ url: server.url, key: user.token, ...spec });
    workers.push(w);
    return w;
  }

  async function untilStatus(jobId: string, status: string, w: TestWorker): Promise<void> {
    try {
      await waitFor(`job ${status}`, async () => (await user.client.getJob(jobId)).status === status, 30_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${w.logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-1500)}`);
    }
  }

  before(async () => {
    server = await startTestServer('sqlite');
    user = await server.user();
    imds = await startRecordingImds();
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.killNode()));
    await imds.close();
    await server.close();
  });

  for (const kind of BACKENDS) {
    describe(`compression: true (${kind})`, () => {
      let store: Backend;
      before(async () => {
        store = await startBackend(kind);
      });
      after(() => store.close());

      it('downloads .gz objects gunzipped, uploads every file gzipped under <key>.gz, and deletes <key>.gz', async () => {
        await store.store.put(store.bucket, 'cz/in/data.txt.gz', gzipSync('hello from a gzipped input'));
        await store.store.put(store.bucket, 'cz/in/plain.txt', Buffer.from('not compressed'));
        const group = `g-gz-${kind}`;
        const job = await user.client.createJob({
          ...script(`
            const data = fs.readFileSync(at('in/data.txt'), 'utf8');
            const plain = fs.readFileSync(at('in/plain.txt'), 'utf8');
            put('ck/gone.txt', 'uploaded, then removed');
            await sleep(1500);
            fs.rmSync(at('ck/gone.txt'));
            put('ck/kept.json', JSON.stringify({ step: 7 }));
            await sleep(1500);
            put('out/result.txt', data + ' / ' + plain + ' / ' + fs.existsSync(at('in/data.txt.gz')));
          `),
          container_group_id: group,
          heartbeat_interval: 1,
          compression: true,
          sync: {
            before: [{ bucket: store.bucket, prefix: 'cz/in/', local_path: 'in', direction: 'download', pattern: '*.txt' }],
            during: [{ bucket: store.bucket, prefix: 'cz/ck/', local_path: 'ck', direction: 'upload' }],
            after: [{ bucket: store.bucket, prefix: 'cz/out/', local_path: 'out', direction: 'upload' }],
          },
        });
        const w = worker({ group, storageEnv: store.env });
        await untilStatus(job.id, 'completed', w);
        const get = async (key: string) => readAll(await store.store.getStream(store.bucket, key));
        assert.equal(gunzipSync(await get('cz/out/result.txt.gz')).toString(), 'hello from a gzipped input / not compressed / false', 'inputs gunzipped (pattern judged without .gz), output gzipped');
        assert.deepEqual(JSON.parse(gunzipSync(await get('cz/ck/kept.json.gz')).toString()), { step: 7 });
        assert.deepEqual(await keysOf(store.store, store.bucket, 'cz/ck/'), ['cz/ck/kept.json.gz'], 'the removed file is deleted under its .gz key');
        assert.deepEqual(await keysOf(store.store, store.bucket, 'cz/out/'), ['cz/out/result.txt.gz']);
        assert.ok(w.logs.some((l) => l.job === job.id && l.msg === 'uploaded' && l.key === 'cz/ck/gone.txt.gz'), 'gone.txt was uploaded before it was removed');
      });
    });
  }

  it('the deletion cost is 0 idle, rises with every heartbeat, is highest during the final upload, and 0 once reported', async () => {
    const s3 = await startBackend('s3');
    try {
      imds.requests.length = 0;
      const group = 'g-cost';
      const w = worker({ group, storageEnv: s3.env, machineId: 'salad-node-cost', env: { DROVER_IMDS_URL: imds.url } });
      await waitFor('the idle cost', () => imds.requests.length >= 1, 15_000);
      const job = await user.client.createJob({
        ...script(`await sleep(4500); put('out/big.bin', Buffer.alloc(40 * 1024 * 1024, 7));`),
        container_group_id: group,
        heartbeat_interval: 1,
        sync: { after: [{ bucket: s3.bucket, prefix: 'cost/out/', local_path: 'out', direction: 'upload' }] },
      });
      await untilStatus(job.id, 'completed', w);
      await waitFor('the cost back to 0', () => imds.requests.at(-1)?.body === '{"deletion_cost":0}' && imds.requests.length > 3, 10_000);
      const costs = imds.requests.map((r) => (JSON.parse(r.body) as { deletion_cost: number }).deletion_cost);
      assert.ok(imds.requests.every((r) => r.method === 'PUT' && r.path === '/v1/deletion-cost' && r.headers.metadata === 'true'));
      assert.equal(costs[0], 0, `idle first: ${costs.join(', ')}`);
      assert.equal(costs[1], 1, `1 once a job is claimed: ${costs.join(', ')}`);
      const top = costs.indexOf(999_999_999);
      assert.ok(top > 2, `rising with the heartbeats before the final upload: ${costs.join(', ')}`);
      const running = costs.slice(1, top);
      assert.ok(running.length >= 3 && running.every((c, i) => i === 0 || c > running[i - 1]!), `strictly rising while it runs: ${costs.join(', ')}`);
      assert.deepEqual(costs.slice(top), [999_999_999, 0], `highest during the final upload, then idle: ${costs.join(', ')}`);
      const completedAt = Date.parse((await user.client.jobEvents(job.id)).events.find((e) => e.type === 'completed')!.at);
      assert.ok(imds.requests[top]!.at <= completedAt, 'the highest cost was set before the job was reported completed');
      assert.ok(imds.requests.at(-1)!.at >= completedAt - 5, 'and released after it');
    } finally {
      await s3.close();
    }
  });

  it('MAX_TIME_WITH_NO_WORK_S: an idle node finishes its uploads, then asks IMDS to reallocate it', async () => {
    const s3 = await startBackend('s3');
    try {
      imds.requests.length = 0;
      const group = 'g-idle';
      const job = await user.client.createJob({
        ...script(`put('out/big.bin', Buffer.alloc(40 * 1024 * 1024, 3));`),
        container_group_id: group,
        heartbeat_interval: 1,
        sync: { after: [{ bucket: s3.bucket, prefix: 'idle/out/', local_path: 'out', direction: 'upload' }] },
      });
      const w = worker({ group, storageEnv: s3.env, machineId: 'salad-node-idle', env: { DROVER_IMDS_URL: imds.url, MAX_TIME_WITH_NO_WORK_S: '1' } });
      await waitFor('a reallocation', () => imds.requests.some((r) => r.path === '/v1/reallocate'), 20_000);
      const realloc = imds.requests.find((r) => r.path === '/v1/reallocate')!;
      assert.equal(realloc.method, 'POST');
      assert.match((JSON.parse(realloc.body) as { reason: string }).reason, /no work for 1 s \(MAX_TIME_WITH_NO_WORK_S\)/);
      const completedAt = Date.parse((await user.client.jobEvents(job.id)).events.find((e) => e.type === 'completed')!.at);
      assert.ok(realloc.at >= completedAt, 'not before the outputs were uploaded and the job reported');
      assert.equal(w.proc.exitCode, null, 'the worker waits for SaladCloud to move it');
      assert.deepEqual(await w.stop(), { code: 0, signal: null });
    } finally {
      await s3.close();
    }
  });

  it('MAX_TIME_WITH_NO_WORK_S off SaladCloud: the worker exits 0, with nothing to reallocate', async () => {
    imds.requests.length = 0;
    const w = worker({ group: 'g-idle-local', machineId: 'LOCAL', env: { DROVER_IMDS_URL: imds.url, MAX_TIME_WITH_NO_WORK_S: '1' } });
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    assert.equal(imds.requests.length, 0);
    assert.ok(w.logs.some((l) => /not on SaladCloud: nothing to reallocate/.test(l.msg)));
  });
});
