import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChangedError, MiB, RetryLimitError, downloadFile, uploadFile, type ObjectStore, type Progress } from '@drover/storage';
import { BACKENDS, startBackend, type Backend } from '@drover/testing/storage';

const FAST_RETRY = { attempts: 5, baseDelayMs: 5, maxDelayMs: 20 };

for (const kind of BACKENDS) {
  describe(`transfer engine (${kind})`, () => {
    let b: Backend;
    let big: Buffer;
    let bigFile: string;
    before(async () => {
      b = await startBackend(kind);
      big = randomBytes(25 * MiB);
      bigFile = join(b.dir, 'big.bin');
      await writeFile(bigFile, big);
    });
    after(async () => {
      await b?.close();
    });

    test('a 25 MiB file uploads and downloads back byte-identical, with progress reaching the total', async () => {
      const up: Progress[] = [];
      const sent = await uploadFile(b.store, bigFile, b.bucket, 'big/data.bin', { onProgress: (p) => up.push(p) });
      assert.equal(sent.size, big.length);
      assert.equal(sent.parts, kind === 's3' ? 3 : 1, 'S3 takes 25 MiB as three multipart parts; the local backend streams it');
      assert.deepEqual(up.at(-1), { bytes: big.length, total: big.length });
      assert.equal((await b.store.head(b.bucket, 'big/data.bin')).size, big.length);

      const down: Progress[] = [];
      const target = join(b.dir, 'big-copy.bin');
      const got = await downloadFile(b.store, b.bucket, 'big/data.bin', target, { onProgress: (p) => down.push(p) });
      assert.equal(got.parts, 3, 'a 25 MiB object comes down as three 10 MiB ranges');
      assert.deepEqual(down.at(-1), { bytes: big.length, total: big.length });
      assert.ok((await readFile(target)).equals(big));
      assert.deepEqual((await readdir(b.dir)).sort(), ['big-copy.bin', 'big.bin', ...(kind === 'local' ? ['store'] : [])], 'no temp file is left beside the download');
    });

    test('a small file is one request each way and lands whole', async () => {
      const file = join(b.dir, 'small.txt');
      await writeFile(file, 'hello storage');
      const sent = await uploadFile(b.store, file, b.bucket, 'small.txt');
      assert.equal(sent.parts, 1);
      const target = join(b.dir, 'small-copy.txt');
      const got = await downloadFile(b.store, b.bucket, 'small.txt', target);
      assert.equal(got.parts, 1);
      assert.equal(await readFile(target, 'utf8'), 'hello storage');
    });

    test('an empty file round-trips as an empty object', async () => {
      const file = join(b.dir, 'empty');
      await writeFile(file, '');
      await uploadFile(b.store, file, b.bucket, 'empty');
      const target = join(b.dir, 'empty-copy');
      await downloadFile(b.store, b.bucket, 'empty', target);
      assert.equal((await readFile(target)).length, 0);
    });
  });
}

describe('transfer engine against S3', () => {
  let b: Backend;
  let file: string;
  let body: Buffer;
  before(async () => {
    b = await startBackend('s3');
    body = randomBytes(12 * MiB + 123);
    file = join(b.dir, 'twelve.bin');
    await writeFile(file, body);
  });
  after(async () => {
    await b?.close();
  });

  test('a large upload is a multipart upload of 10 MiB parts with an AWS-style multipart ETag', async () => {
    b.requests.length = 0;
    const out = await uploadFile(b.store, file, b.bucket, 'multi.bin', { partSize: 5 * MiB, concurrency: 2 });
    const parts = b.requests.filter((r) => r.startsWith('PUT ') && /[?&]partNumber=\d+/.test(r));
    assert.equal(parts.length, 3, '12 MiB in 5 MiB parts is three UploadPart requests');
    assert.equal(out.parts, 3);
    assert.match(out.etag ?? '', /^[0-9a-f]{32}-3$/);
    assert.ok(b.requests.some((r) => r.startsWith('POST ') && r.includes('uploadId=')), 'the upload was completed');
  });

  test('a default-sized upload of 12 MiB is two parts (10 MiB default part size)', async () => {
    const out = await uploadFile(b.store, file, b.bucket, 'default-parts.bin');
    assert.equal(out.parts, 2);
  });

  test('uploads and downloads retry through 503 answers and still land byte-identical', async () => {
    const retries: string[] = [];
    const opts = { partSize: 5 * MiB, retry: { ...FAST_RETRY, onRetry: (r: { operation: string }) => retries.push(r.operation) } };
    b.failNext(3);
    const before503 = b.failed();
    await uploadFile(b.store, file, b.bucket, 'retried.bin', opts);
    assert.equal(b.failed() - before503, 3);
    assert.equal(retries.length, 3);
    b.failNext(2);
    const target = join(b.dir, 'retried-copy.bin');
    await downloadFile(b.store, b.bucket, 'retried.bin', target, opts);
    assert.equal(retries.length, 5);
    assert.ok((await readFile(target)).equals(body));
  });

  test('a server that keeps answering 503 makes the transfer give up with RetryLimitError after the attempt limit', async () => {
    b.failNext(1000);
    const small = join(b.dir, 'small-503.txt');
    await writeFile(small, 'never lands');
    const before503 = b.failed();
    await assert.rejects(
      uploadFile(b.store, small, b.bucket, 'never.txt', { retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 } }),
      (err) => err instanceof RetryLimitError && err.attempts === 3 && /failed after 3 attempts/.test(err.message),
    );
    assert.equal(b.failed() - before503, 3, 'exactly the allowed attempts were made');
    b.failNext(0);
    const target = join(b.dir, 'never-copy.txt');
    await assert.rejects(downloadFile(b.store, b.bucket, 'never.txt', target), { name: 'NotFoundError' });
  });

  test('connections reset mid-request are retried and the transfer still lands byte-identical', async () => {
    const opts = { partSize: 5 * MiB, retry: FAST_RETRY };
    const before = b.failed();
    b.resetNext(2);
    await uploadFile(b.store, file, b.bucket, 'reset.bin', opts);
    b.resetNext(2);
    const target = join(b.dir, 'reset-copy.bin');
    await downloadFile(b.store, b.bucket, 'reset.bin', target, opts);
    assert.equal(b.failed() - before, 4);
    assert.ok((await readFile(target)).equals(body));
  });

  test('an object replaced during a ranged download fails with ChangedError instead of mixing versions', async () => {
    await uploadFile(b.store, file, b.bucket, 'moving.bin');
    // The real store, with one twist: just before the second range is fetched, the object is replaced.
    let replaced = false;
    const store: ObjectStore = {
      list: (bucket, prefix) => b.store.list(bucket, prefix),
      head: (bucket, key) => b.store.head(bucket, key),
      put: (bucket, key, data, o) => b.store.put(bucket, key, data, o),
      delete: (bucket, key) => b.store.delete(bucket, key),
      getStream: async (bucket, key, o) => {
        if (!replaced && (o?.range?.start ?? 0) > 0) {
          replaced = true;
          await b.store.put(bucket, key, randomBytes(1024));
        }
        return b.store.getStream(bucket, key, o);
      },
    };
    const target = join(b.dir, 'moving-copy.bin');
    await assert.rejects(downloadFile(store, b.bucket, 'moving.bin', target, { partSize: 5 * MiB, concurrency: 1 }), ChangedError);
    assert.ok(replaced);
    await assert.rejects(readFile(target), { code: 'ENOENT' }, 'nothing lands under the target name');
  });
});
