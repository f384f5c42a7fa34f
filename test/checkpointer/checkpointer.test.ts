// The Checkpointer (@drover/checkpointer: the seeds' upload thread and local queue) against both real storage
// backends: the loopback S3 server (fauxqs behind the harness's fault proxy) and a local folder.
// Each backend is driven two ways: a Checkpointer given a store object (uploads on this thread),
// and Checkpointer.fromEnv (uploads in its worker thread, on a store it opens from the env).
// Uploads are held back at a gate — a store wrapper on this thread, a small HTTP proxy that
// parks PUT requests in front of S3 for the worker thread — to see what happens while they wait.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Checkpointer, CHECKPOINTER_DIR, type CheckpointerEvent, type CheckpointerOptions } from '@drover/checkpointer';
import { MiB, type ObjectStore } from '@drover/storage';
import { BACKENDS, keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';
import { waitFor } from '@drover/testing/wait';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (err) => unhandled.push(err));

interface Gate {
  hold(): void;
  release(): void;
  /** Uploads parked at the gate right now. */
  held(): number;
}

/** A store wrapper for the in-thread Checkpointer: a gate on writes, injected 503s, and a log of single-PUT bodies. */
function wrapStore(inner: ObjectStore) {
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  let held = 0;
  let failures = 0;
  const bodies = new Map<string, Buffer[]>();
  const beforeWrite = async (): Promise<void> => {
    if (failures > 0) {
      failures--;
      throw Object.assign(new Error('503 Service Unavailable (injected by the test)'), { $metadata: { httpStatusCode: 503 } });
    }
    if (gate) {
      held++;
      try {
        await gate.promise;
      } finally {
        held--;
      }
    }
  };
  const store: ObjectStore = {
    list: (bucket, prefix) => inner.list(bucket, prefix),
    head: (bucket, key) => inner.head(bucket, key),
    getStream: (bucket, key, opts) => inner.getStream(bucket, key, opts),
    delete: (bucket, key) => inner.delete(bucket, key),
    async put(bucket, key, body, opts) {
      if (Buffer.isBuffer(body)) bodies.set(key, [...(bodies.get(key) ?? []), Buffer.from(body)]);
      await beforeWrite();
      return inner.put(bucket, key, body, opts);
    },
    multipart: inner.multipart && {
      create: (bucket, key, o) => inner.multipart!.create(bucket, key, o),
      async uploadPart(bucket, key, uploadId, n, body, md5) {
        await beforeWrite();
        return inner.multipart!.uploadPart(bucket, key, uploadId, n, body, md5);
      },
      complete: (bucket, key, uploadId, parts) => inner.multipart!.complete(bucket, key, uploadId, parts),
      abort: (bucket, key, uploadId) => inner.multipart!.abort(bucket, key, uploadId),
    },
  };
  const g: Gate = {
    hold() {
      if (gate) return;
      let open!: () => void;
      const promise = new Promise<void>((r) => { open = r; });
      gate = { promise, open };
    },
    release() {
      gate?.open();
      gate = undefined;
    },
    held: () => held,
  };
  return { store, gate: g, bodies, failNext: (n: number) => { failures = n; } };
}

/** An HTTP proxy in front of the S3 endpoint that can park PUT requests, and logs whole-object PUT bodies by path. */
async function startStallProxy(upstream: string): Promise<Gate & { url: string; bodies: Map<string, Buffer[]>; close(): Promise<void> }> {
  const target = new URL(upstream);
  let holding = false;
  let parked: (() => void)[] = [];
  const bodies = new Map<string, Buffer[]>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://proxy');
      if (req.method === 'PUT' && !url.searchParams.has('uploadId')) {
        const p = decodeURIComponent(url.pathname);
        bodies.set(p, [...(bodies.get(p) ?? []), body]);
      }
      const forward = (): void => {
        const up = request(
          { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
          (upRes) => {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
          },
        );
        up.on('error', () => res.destroy());
        up.end(body);
      };
      if (req.method === 'PUT' && holding) parked.push(forward);
      else forward();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    hold: () => { holding = true; },
    release: () => {
      holding = false;
      const go = parked;
      parked = [];
      for (const f of go) f();
    },
    held: () => parked.length,
    close: async () => {
      holding = false;
      for (const f of parked.splice(0)) f();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

type Made = Omit<CheckpointerOptions, 'store' | 'bucket'>;

interface Rig {
  label: string;
  create(o: Made): Checkpointer;
  /** Held-back uploads (every rig but the local backend through the worker thread). */
  gate?: Gate;
  /** Bodies of the whole-object PUTs sent for `key`, when the rig can see them. */
  bodiesPut?(key: string): Buffer[];
  /** Makes the next n storage writes (or requests, on S3) fail with 503. */
  failNext?(n: number): void;
}

async function object(b: Backend, key: string): Promise<Buffer> {
  return readAll(await b.store.getStream(b.bucket, key) as AsyncIterable<Buffer>);
}

for (const kind of BACKENDS) {
  for (const way of ['store object, uploads on this thread', 'fromEnv, uploads in the worker thread'] as const) {
    describe(`Checkpointer (${kind}; ${way})`, () => {
      const controllable = !(kind === 'local' && way === 'fromEnv, uploads in the worker thread');
      let b: Backend;
      let rig: Rig;
      let stall: Awaited<ReturnType<typeof startStallProxy>> | undefined;
      let n = 0;
      const open: Checkpointer[] = [];
      const fresh = async (): Promise<{ dir: string; prefix: string }> => ({
        dir: await mkdtemp(path.join(b.dir, 'app-')),
        prefix: `run-${++n}`,
      });
      const make = (o: Made): Checkpointer => {
        const cp = rig.create({ maxAttempts: 2, retryDelayMs: 1, ...o });
        open.push(cp);
        return cp;
      };

      before(async () => {
        b = await startBackend(kind);
        if (way === 'store object, uploads on this thread') {
          const w = wrapStore(b.store);
          rig = {
            label: way,
            create: (o) => new Checkpointer({ ...o, store: w.store, bucket: b.bucket }),
            gate: w.gate,
            bodiesPut: (key) => w.bodies.get(key) ?? [],
            failNext: kind === 's3' ? (k) => b.failNext(k) : w.failNext,
          };
        } else if (kind === 's3') {
          stall = await startStallProxy(b.env.AWS_ENDPOINT_URL!);
          const env = { ...b.env, AWS_ENDPOINT_URL: stall.url };
          const s = stall;
          rig = {
            label: way,
            create: (o) => Checkpointer.fromEnv({ ...o, env, bucket: b.bucket }),
            gate: s,
            bodiesPut: (key) => s.bodies.get(`/${b.bucket}/${key}`) ?? [],
            failNext: (k) => b.failNext(k),
          };
        } else {
          rig = { label: way, create: (o) => Checkpointer.fromEnv({ ...o, env: b.env, bucket: b.bucket }) };
        }
      });
      after(async () => {
        rig?.gate?.release();
        if (kind === 's3') b?.failNext(0);
        await Promise.all(open.map((cp) => cp.close()));
        await stall?.close();
        await b?.close();
        assert.deepEqual(unhandled, [], 'no unhandled promise rejections');
      });

      test('restore() with nothing saved returns [] and writes nothing', async () => {
        const { dir, prefix } = await fresh();
        const cp = make({ localDir: dir, prefix });
        assert.deepEqual(await cp.restore(), []);
        assert.deepEqual(await readdir(dir), []);
      });

      test('saved files land under prefix + relative path; a new node restores them all, or only the ones asked for', async () => {
        const { dir, prefix } = await fresh();
        // A snapshot folder left by a process that no longer exists is swept on the first save.
        const stale = path.join(dir, CHECKPOINTER_DIR, '999999999-deadbeef');
        await mkdir(stale, { recursive: true });
        await writeFile(path.join(stale, '.drover-snap-1'), 'stale');
        const events: CheckpointerEvent[] = [];
        const cp = make({ localDir: dir, prefix: `${prefix}/`, onEvent: (e) => events.push(e) });
        const big = randomBytes(kind === 's3' ? 12 * MiB + 5 : 3 * MiB); // multipart on S3
        await writeFile(path.join(dir, 'state.json'), '{"k":41,"sum":1.64}');
        await mkdir(path.join(dir, 'sub'));
        await writeFile(path.join(dir, 'sub', 'big.bin'), big);
        await cp.save(['state.json', path.join(dir, 'sub', 'big.bin')]);
        await cp.flush();

        const stats = cp.stats();
        assert.equal(stats.uploaded, 2);
        assert.equal(stats.errors, 0);
        assert.equal(stats.pending + stats.inFlight, 0);
        assert.equal(stats.bytesUploaded, big.length + 19);
        assert.deepEqual(events.map((e) => [e.type, e.path, e.bytes]).sort(), [['uploaded', 'state.json', 19], ['uploaded', 'sub/big.bin', big.length]]);
        assert.deepEqual(await keysOf(b.store, b.bucket, `${prefix}/`), [`${prefix}/state.json`, `${prefix}/sub/big.bin`], 'the snapshot folder is never uploaded');
        assert.ok((await object(b, `${prefix}/sub/big.bin`)).equals(big));
        assert.deepEqual(await readdir(path.join(dir, CHECKPOINTER_DIR)), [path.basename(cp.snapshotDir)], 'the stale snapshot folder was removed');
        assert.deepEqual(await readdir(cp.snapshotDir), [], 'snapshots are deleted once uploaded');

        const { dir: elsewhere } = await fresh();
        const other = make({ localDir: elsewhere, prefix });
        assert.deepEqual(await other.restore(), ['state.json', 'sub/big.bin']);
        assert.equal(await readFile(path.join(elsewhere, 'state.json'), 'utf8'), '{"k":41,"sum":1.64}');
        assert.ok((await readFile(path.join(elsewhere, 'sub', 'big.bin'))).equals(big));

        const { dir: third } = await fresh();
        assert.deepEqual(await make({ localDir: third, prefix }).restore({ files: ['state.json', 'not-there.bin'] }), ['state.json']);
        assert.deepEqual(await readdir(third), ['state.json']);
      });

      test('a missing file rejects with a clear error and queues nothing; paths outside localDir are refused', async () => {
        const { dir, prefix } = await fresh();
        const cp = make({ localDir: dir, prefix });
        await writeFile(path.join(dir, 'here.txt'), 'here');
        await assert.rejects(cp.save('gone.bin'), /Checkpointer\.save: no such file: gone\.bin/);
        await assert.rejects(cp.save(['here.txt', 'gone.bin']), /no such file: gone\.bin/);
        await assert.rejects(cp.save('../outside.txt'), /not a file inside localDir/);
        await assert.rejects(cp.save(`${CHECKPOINTER_DIR}/x`), /snapshot folder/);
        await assert.rejects(cp.save('.'), /not a file inside localDir/);
        await mkdir(path.join(dir, 'folder'));
        await assert.rejects(cp.save('folder'), /folder is not a regular file/);
        assert.deepEqual(cp.stats(), { pending: 0, inFlight: 0, errors: 0, uploaded: 0, bytesUploaded: 0, bytesPerSecond: 0 });
        await cp.flush();
        assert.deepEqual(await keysOf(b.store, b.bucket, `${prefix}/`), [], 'here.txt was not uploaded either');
        assert.deepEqual((await readdir(dir)).sort(), ['folder', 'here.txt'], 'no snapshot was even started');
      });

      test('close() waits for the queue, removes the snapshot folder, and later saves are refused', async () => {
        const { dir, prefix } = await fresh();
        const cp = make({ localDir: dir, prefix });
        await writeFile(path.join(dir, 'last.txt'), 'final state');
        await cp.save('last.txt');
        await cp.close();
        assert.equal((await object(b, `${prefix}/last.txt`)).toString(), 'final state');
        assert.deepEqual(await readdir(dir), ['last.txt'], 'the .checkpointer folder is gone');
        await assert.rejects(cp.save('last.txt'), /closed/);
      });

      test('stats() reports recent throughput while uploads run', async () => {
        const { dir, prefix } = await fresh();
        let rateAtUpload = -1;
        const cp: Checkpointer = make({ localDir: dir, prefix, onEvent: (e) => { if (e.type === 'uploaded') rateAtUpload = cp.stats().bytesPerSecond; } });
        await writeFile(path.join(dir, 'x.bin'), randomBytes(MiB));
        await cp.save('x.bin');
        await cp.flush();
        assert.ok(rateAtUpload > 0, `bytesPerSecond was ${rateAtUpload} right after an upload`);
        assert.equal((await stat(path.join(dir, 'x.bin'))).size, MiB);
      });

      // The local store opened inside the worker thread can be neither held back nor made to fail
      // from here; every other rig can (and the code paths are the same).
      if (!controllable) return;

      test('uploads that still fail after maxAttempts count as errors without hurting the app; saves work again once storage recovers', async () => {
        const { dir, prefix } = await fresh();
        rig.failNext!(0);
        const events: CheckpointerEvent[] = [];
        const cp = make({ localDir: dir, prefix, maxAttempts: 2, retryDelayMs: 1, onEvent: (e) => events.push(e) });
        await writeFile(path.join(dir, 'a.txt'), 'version a1');
        await writeFile(path.join(dir, 'b.txt'), 'version b1');
        rig.failNext!(1000);
        await cp.save('a.txt');
        await cp.save('b.txt');
        await cp.flush();
        rig.failNext!(0);
        assert.deepEqual({ ...cp.stats(), bytesPerSecond: 0 }, { pending: 0, inFlight: 0, errors: 2, uploaded: 0, bytesUploaded: 0, bytesPerSecond: 0 });
        const errs = events.filter((e) => e.type === 'error');
        assert.deepEqual(errs.map((e) => e.path).sort(), ['a.txt', 'b.txt']);
        for (const e of errs) assert.match(String((e.error as Error).message), /failed after 2 attempts/);
        assert.deepEqual(await readdir(cp.snapshotDir), [], 'a failed upload\'s snapshot is deleted too');
        assert.deepEqual(await keysOf(b.store, b.bucket, `${prefix}/`), []);

        // Storage is back: one 503 is absorbed by the retries, and the newest state lands.
        await writeFile(path.join(dir, 'a.txt'), 'version a2');
        rig.failNext!(1);
        await cp.save('a.txt');
        await cp.flush();
        assert.equal(cp.stats().errors, 2);
        assert.equal(cp.stats().uploaded, 1);
        assert.equal((await object(b, `${prefix}/a.txt`)).toString(), 'version a2');
        assert.deepEqual(unhandled, []);
      });

      describe('with uploads held back', () => {
        test('save() resolves while its upload waits; rewriting the file right after does not change what is uploaded; flush() waits', async () => {
          const gate = rig.gate!;
          const { dir, prefix } = await fresh();
          const cp = make({ localDir: dir, prefix });
          const saved = randomBytes(kind === 's3' ? 12 * MiB + 1 : 2 * MiB);
          const file = path.join(dir, 'state.bin');
          await writeFile(file, saved);
          gate.hold();
          try {
            await cp.save('state.bin'); // would never resolve if it waited for the upload
            assert.equal(cp.stats().inFlight, 1);
            assert.equal(cp.stats().uploaded, 0);
            await writeFile(file, randomBytes(saved.length + 1000)); // the app moves on at once
            await waitFor('the upload to reach the gate', () => gate.held() > 0);
            let flushed = false;
            const flushing = cp.flush().then(() => { flushed = true; });
            await sleep(100);
            assert.equal(flushed, false, 'flush() waits for the held upload');
            gate.release();
            await flushing;
          } finally {
            gate.release();
          }
          assert.equal(cp.stats().uploaded, 1);
          assert.equal(cp.stats().bytesUploaded, saved.length);
          assert.ok((await object(b, `${prefix}/state.bin`)).equals(saved), 'the stored object is the file as it was at save()');
          assert.deepEqual(await readdir(cp.snapshotDir), []);
        });

        test('saves of a file whose upload is in flight coalesce: only the newest waiting version is uploaded next', async () => {
          const gate = rig.gate!;
          const { dir, prefix } = await fresh();
          const events: CheckpointerEvent[] = [];
          const cp = make({ localDir: dir, prefix, concurrency: 2, onEvent: (e) => events.push(e) });
          const file = path.join(dir, 'state.bin');
          const v = (i: number) => Buffer.from(`state version ${i} `.repeat(1000));
          gate.hold();
          try {
            await writeFile(file, v(1));
            await cp.save('state.bin');
            await waitFor('version 1 to reach the gate', () => gate.held() > 0);
            await writeFile(file, v(2));
            await cp.save('state.bin');
            await writeFile(file, v(3));
            await cp.save('state.bin');
            assert.deepEqual({ pending: cp.stats().pending, inFlight: cp.stats().inFlight }, { pending: 1, inFlight: 1 },
              'one waiting version, and never two uploads of one file at once');
            assert.deepEqual(events, [{ type: 'replaced', path: 'state.bin', bytes: v(2).length }]);
            assert.equal((await readdir(cp.snapshotDir)).length, 2, 'the replaced snapshot is deleted');
            gate.release();
            await cp.flush();
          } finally {
            gate.release();
          }
          const key = `${prefix}/state.bin`;
          assert.deepEqual(rig.bodiesPut!(key).map((x) => x.toString().slice(0, 16)), [v(1), v(3)].map((x) => x.toString().slice(0, 16)),
            'version 1 then version 3 went out; version 2 never did');
          assert.ok((await object(b, key)).equals(v(3)));
          assert.deepEqual(events.map((e) => e.type), ['replaced', 'uploaded', 'uploaded']);
          const stats = cp.stats();
          assert.equal(stats.uploaded, 2);
          assert.equal(stats.bytesUploaded, v(1).length + v(3).length);
        });

      });
    });
  }
}

describe('Checkpointer options', () => {
  test('bad options are refused with the field named', async () => {
    const dir = await mkdtemp(path.join((await import('node:os')).tmpdir(), 'drover-cp-opts-'));
    const env = { DROVER_STORAGE: `file://${dir}/store` };
    const base = { bucket: 'b', prefix: 'p', localDir: dir, env };
    assert.throws(() => Checkpointer.fromEnv({ ...base, concurrency: 0 }), /CheckpointerOptions\.concurrency must be a whole number >= 1/);
    assert.throws(() => Checkpointer.fromEnv({ ...base, maxAttempts: 1.5 }), /CheckpointerOptions\.maxAttempts/);
    assert.throws(() => Checkpointer.fromEnv({ ...base, retryDelayMs: -1 }), /CheckpointerOptions\.retryDelayMs/);
    assert.throws(() => Checkpointer.fromEnv({ ...base, bucket: '' }), /CheckpointerOptions\.bucket/);
    assert.throws(() => Checkpointer.fromEnv({ ...base, uploadThreadNice: 20 }), /uploadThreadNice/);
    assert.throws(() => Checkpointer.fromEnv({ ...base, env: { DROVER_STORAGE: 'ftp://x' } }), /storage must be "s3" or a file:/);
    const cp = Checkpointer.fromEnv(base);
    assert.equal(cp.prefix, 'p/');
    await cp.close();
  });
});
