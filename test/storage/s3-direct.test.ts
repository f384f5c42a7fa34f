// S3Store's lean request path (plain signed HTTP for GetObject, HeadObject, PutObject and
// UploadPart, and GETs streamed to files in worker threads), against the loopback S3 server behind
// a proxy that checks every SigV4 signature: the requests are signed right (odd keys included),
// errors keep the shapes the engine relies on (NotFound, Changed, InvalidRange, retryable 5xx,
// resets and timeouts, a clear error for wrong credentials), and a corrupt body is caught by its
// CRC32 metadata or its MD5.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import {
  ChangedError, IntegrityError, InvalidRangeError, MiB, NotFoundError, RetryLimitError, S3Store,
  downloadFile, downloadListedObject, downloadPrefix, uploadFile, uploadFolder,
} from '@drover/storage';
import { ACCESS_KEY_ID, keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';

const FAST_RETRY = { attempts: 4, baseDelayMs: 1, maxDelayMs: 5 };

function storeFor(b: Backend, opts: { secret?: string; keyId?: string; directRequests?: boolean; requestTimeoutMs?: number } = {}): S3Store {
  return new S3Store({
    endpoint: b.env.AWS_ENDPOINT_URL,
    region: 'us-east-1',
    credentials: { accessKeyId: opts.keyId ?? ACCESS_KEY_ID, secretAccessKey: opts.secret ?? 'test' },
    forcePathStyle: true,
    directRequests: opts.directRequests,
    requestTimeoutMs: opts.requestTimeoutMs,
  });
}

/** Only the requests whose line starts with `prefix` (e.g. "GET /jobs/x"), since `from`. */
function lines(b: Backend, prefix: string, from = 0): string[] {
  return b.requests.slice(from).filter((r) => r.startsWith(prefix));
}

describe('S3Store lean request path', () => {
  let b: Backend;
  before(async () => {
    b = await startBackend('s3', { verifySignatures: true });
  });
  after(async () => {
    await b?.close();
  });

  test('GET, HEAD and PUT skip the SDK; with directRequests: false they go through it, to the same objects', async () => {
    const body = randomBytes(3000);
    const from = b.requests.length;
    await b.store.put(b.bucket, 'lean/a.bin', body);
    assert.equal((await b.store.head(b.bucket, 'lean/a.bin')).size, 3000);
    assert.ok((await readAll(await b.store.getStream(b.bucket, 'lean/a.bin'))).equals(body));
    // The SDK marks its requests with ?x-id=PutObject / GetObject; the lean path sends bare URLs.
    assert.deepEqual(b.requests.slice(from), ['PUT /jobs/lean/a.bin', 'HEAD /jobs/lean/a.bin', 'GET /jobs/lean/a.bin']);

    const sdk = storeFor(b, { directRequests: false });
    try {
      const from2 = b.requests.length;
      assert.ok((await readAll(await sdk.getStream(b.bucket, 'lean/a.bin'))).equals(body));
      assert.match(lines(b, 'GET /jobs/lean/a.bin', from2)[0] ?? '', /x-id=GetObject/);
    } finally {
      sdk.client.destroy();
    }
  });

  test('keys with spaces, unicode and reserved characters are signed and addressed as the SDK does', async () => {
    const keys = ['odd/a b+c.txt', 'odd/ünï cødé/ß.bin', "odd/it's (1)!*~@$&=;,.txt", 'odd/%41%2F.txt', 'odd//double/slash'];
    for (const [i, key] of keys.entries()) {
      await b.store.put(b.bucket, key, Buffer.from(`body ${i}`));
      assert.equal((await b.store.head(b.bucket, key)).size, `body ${i}`.length, key);
      assert.equal((await readAll(await b.store.getStream(b.bucket, key))).toString(), `body ${i}`, key);
    }
    // The SDK lists exactly these keys, so the lean path stored them under the intended names.
    assert.deepEqual((await keysOf(b.store, b.bucket, 'odd/')).sort(), [...keys].sort());
    const target = join(b.dir, 'odd-copy');
    await downloadPrefix(b.store, b.bucket, 'odd/', target);
    assert.equal(await readFile(join(target, 'a b+c.txt'), 'utf8'), 'body 0');
    assert.equal(await readFile(join(target, 'ünï cødé', 'ß.bin'), 'utf8'), 'body 1');
  });

  test('a missing object is NotFoundError for head, get and the worker-thread download', async () => {
    await assert.rejects(b.store.head(b.bucket, 'missing/x'), NotFoundError);
    await assert.rejects(b.store.getStream(b.bucket, 'missing/x'), NotFoundError);
    const ghost = { key: 'missing/x', size: 5 * MiB, etag: 'd41d8cd98f00b204e9800998ecf8427e', lastModified: new Date() };
    const target = join(b.dir, 'ghost.bin');
    await assert.rejects(downloadListedObject(b.store, b.bucket, ghost, target), NotFoundError);
    assert.ok(!(await readdir(b.dir)).some((n) => n.includes('ghost')), 'no file or temp file is left');
  });

  test('If-Match on a changed object is ChangedError; a range past the end is InvalidRangeError', async () => {
    await b.store.put(b.bucket, 'cond/x.bin', randomBytes(1000));
    const { etag } = await b.store.head(b.bucket, 'cond/x.bin');
    assert.ok(etag);
    await b.store.put(b.bucket, 'cond/x.bin', randomBytes(1000));
    await assert.rejects(b.store.getStream(b.bucket, 'cond/x.bin', { ifMatch: etag }), ChangedError);
    await assert.rejects(b.store.getStream(b.bucket, 'cond/x.bin', { range: { start: 5000, end: 6000 } }), InvalidRangeError);
  });

  test('an object replaced after its listing is fetched again in its new version (412 from the worker-thread GET)', async () => {
    const oldBody = randomBytes(300 * 1024);
    const newBody = randomBytes(200 * 1024);
    await b.store.put(b.bucket, 'relisted/x.bin', oldBody);
    const listed = (await b.store.head(b.bucket, 'relisted/x.bin'));
    await b.store.put(b.bucket, 'relisted/x.bin', newBody);
    const from = b.requests.length;
    const target = join(b.dir, 'relisted.bin');
    const out = await downloadListedObject(b.store, b.bucket, listed, target);
    assert.equal(out.size, newBody.length);
    assert.ok((await readFile(target)).equals(newBody));
    assert.deepEqual(b.requests.slice(from).map((r) => r.split(' ')[0]), ['GET', 'HEAD', 'GET'], 'pinned GET refused, then looked up and fetched afresh');
  });

  test('a ranged download whose object is replaced midway fails with ChangedError, leaving nothing behind', async () => {
    const file = join(b.dir, 'moving-src.bin');
    await writeFile(file, randomBytes(12 * MiB));
    await uploadFile(b.store, file, b.bucket, 'moving/x.bin');
    let ranges = 0;
    b.beforeRequest = async (req) => {
      if (req.method === 'GET' && req.url === '/jobs/moving/x.bin' && req.headers.range && ++ranges === 2) {
        await b.store.put(b.bucket, 'moving/x.bin', randomBytes(1024));
      }
    };
    try {
      const target = join(b.dir, 'moving-copy.bin');
      await assert.rejects(downloadFile(b.store, b.bucket, 'moving/x.bin', target, { partSize: 5 * MiB, concurrency: 1 }), ChangedError);
      assert.ok(ranges >= 2);
      assert.ok(!(await readdir(b.dir)).some((n) => n.includes('moving-copy')), 'no file or temp file is left');
    } finally {
      b.beforeRequest = undefined;
    }
  });

  test('503 answers are retried for lean PUTs, UploadParts and worker-thread GETs', async () => {
    const small = randomBytes(700 * 1024);
    const big = randomBytes(11 * MiB);
    const smallFile = join(b.dir, 'r503-small.bin');
    const bigFile = join(b.dir, 'r503-big.bin');
    await writeFile(smallFile, small);
    await writeFile(bigFile, big);
    const retries: string[] = [];
    const opts = { partSize: 5 * MiB, retry: { ...FAST_RETRY, onRetry: (r: { operation: string }) => retries.push(r.operation) } };

    b.failNext(2);
    await uploadFile(b.store, smallFile, b.bucket, 'r503/small.bin', opts);
    assert.deepEqual(retries.splice(0), ['put jobs/r503/small.bin', 'put jobs/r503/small.bin']);

    const from = b.requests.length;
    // The 503 goes to the first UploadPart (not to CreateMultipartUpload, which the SDK sends).
    b.beforeRequest = (req) => {
      if (req.method === 'PUT' && req.url?.includes('partNumber=1&')) {
        b.beforeRequest = undefined;
        b.failNext(1);
      }
    };
    await uploadFile(b.store, bigFile, b.bucket, 'r503/big.bin', { ...opts, concurrency: 1 });
    assert.deepEqual(retries.splice(0), ['upload part 1/3 of jobs/r503/big.bin']);
    assert.equal(lines(b, 'PUT /jobs/r503/big.bin?', from).length, 3 + 1, 'three parts, the first sent twice');

    b.failNext(2);
    const target = join(b.dir, 'r503-small-copy.bin');
    await downloadFile(b.store, b.bucket, 'r503/small.bin', target, opts);
    assert.equal(retries.splice(0).length, 2);
    assert.ok((await readFile(target)).equals(small));

    b.failNext(1);
    const bigTarget = join(b.dir, 'r503-big-copy.bin');
    await downloadFile(b.store, b.bucket, 'r503/big.bin', bigTarget, opts);
    assert.equal(retries.splice(0).length, 1);
    assert.ok((await readFile(bigTarget)).equals(big));
  });

  test('connections reset mid-request are retried for lean PUTs and worker-thread GETs', async () => {
    const body = randomBytes(2 * MiB);
    const file = join(b.dir, 'reset-src.bin');
    await writeFile(file, body);
    const before = b.failed();
    b.resetNext(2);
    await uploadFile(b.store, file, b.bucket, 'reset/x.bin', { retry: FAST_RETRY });
    b.resetNext(2);
    const target = join(b.dir, 'reset-copy.bin');
    await downloadFile(b.store, b.bucket, 'reset/x.bin', target, { retry: FAST_RETRY });
    assert.equal(b.failed() - before, 4);
    assert.ok((await readFile(target)).equals(body));
    b.resetNext(1);
    await assert.rejects(b.store.getStream(b.bucket, 'reset/x.bin'), (err) => (err as { code?: string }).code === 'ECONNRESET');
  });

  test('a server that stops answering is a TimeoutError, and a transfer retries past it', async () => {
    const impatient = storeFor(b, { requestTimeoutMs: 300 });
    try {
      await impatient.put(b.bucket, 'slow/x.bin', Buffer.from('patience'));
      b.stallNext(1);
      await assert.rejects(impatient.getStream(b.bucket, 'slow/x.bin'), { name: 'TimeoutError' });
      const info = await impatient.head(b.bucket, 'slow/x.bin');
      b.stallNext(1);
      const target = join(b.dir, 'slow-copy.txt');
      await downloadListedObject(impatient, b.bucket, info, target, { retry: FAST_RETRY });
      assert.equal(await readFile(target, 'utf8'), 'patience');
    } finally {
      impatient.client.destroy();
    }
  });

  test('a corrupt body is caught by its MD5 in the worker-thread download: retried, or refused with nothing left', async () => {
    const body = randomBytes(600 * 1024);
    await b.store.put(b.bucket, 'corrupt/x.bin', body);
    const target = join(b.dir, 'corrupt-once.bin');
    b.corruptNext(1);
    const out = await downloadFile(b.store, b.bucket, 'corrupt/x.bin', target, { retry: FAST_RETRY });
    assert.equal(out.parts, 1);
    assert.ok((await readFile(target)).equals(body));

    b.corruptNext(100);
    const never = join(b.dir, 'corrupt-always.bin');
    await assert.rejects(
      downloadFile(b.store, b.bucket, 'corrupt/x.bin', never, { retry: FAST_RETRY }),
      (err) => err instanceof RetryLimitError && err.cause instanceof IntegrityError && /MD5/.test(err.cause.message),
    );
    b.corruptNext(0);
    assert.ok(!(await readdir(b.dir)).some((n) => n.includes('corrupt-always')), 'no file or temp file is left');
  });

  test('an upload stores its CRC32 as metadata, and the worker-thread download checks the bytes against it', async () => {
    const body = randomBytes(700 * 1024 + 3);
    const file = join(b.dir, 'crc.bin');
    await writeFile(file, body);
    await uploadFile(b.store, file, b.bucket, 'crc/x.bin');
    const head = await (b.store as S3Store).client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: 'crc/x.bin' }));
    assert.equal(head.Metadata?.['drover-crc32'], crc32(body).toString(16).padStart(8, '0'));

    // A damaged body fails the CRC32 (the MD5 is not what is checked first)...
    b.corruptNext(1);
    await assert.rejects(
      downloadFile(b.store, b.bucket, 'crc/x.bin', join(b.dir, 'crc-never.bin'), { retry: { attempts: 1 } }),
      (err) => err instanceof RetryLimitError && err.cause instanceof IntegrityError && /CRC32 [0-9a-f]{8} of the bytes received/.test(err.cause.message),
    );
    // ...is retried...
    const target = join(b.dir, 'crc-once.bin');
    b.corruptNext(1);
    await downloadFile(b.store, b.bucket, 'crc/x.bin', target, { retry: FAST_RETRY });
    assert.ok((await readFile(target)).equals(body));
    // ...or refused (the retries check the MD5 of the ETag, which the server checked on upload).
    b.corruptNext(100);
    try {
      await assert.rejects(
        downloadFile(b.store, b.bucket, 'crc/x.bin', join(b.dir, 'crc-never.bin'), { retry: FAST_RETRY }),
        (err) => err instanceof RetryLimitError && err.cause instanceof IntegrityError && /MD5/.test(err.cause.message),
      );
    } finally {
      b.corruptNext(0);
    }
    assert.ok(!(await readdir(b.dir)).some((n) => n.includes('crc-never')), 'no file or temp file is left');
  });

  test('a multipart upload carries the file\'s CRC32; a download in ranges checks their CRC32s, combined, against it', async () => {
    const body = randomBytes(10 * MiB + 12345);
    const file = join(b.dir, 'crc-multi.bin');
    await writeFile(file, body);
    // 5 MiB: the smallest part S3 (and the loopback server) accepts
    const up = await uploadFile(b.store, file, b.bucket, 'crc/multi.bin', { partSize: 5 * MiB });
    assert.equal(up.parts, 3);
    const head = await (b.store as S3Store).client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: 'crc/multi.bin' }));
    assert.match(head.ETag ?? '', /-3"$/, 'a multipart ETag, which no download can check by MD5');
    assert.equal(head.Metadata?.['drover-crc32'], crc32(body).toString(16).padStart(8, '0'));

    // One damaged range passes its own checks (length); the combined CRC32 catches it, and all
    // three ranges are fetched again.
    const from = b.requests.length;
    const target = join(b.dir, 'crc-multi-once.bin');
    b.corruptNext(1);
    const out = await downloadFile(b.store, b.bucket, 'crc/multi.bin', target, { partSize: 5 * MiB, retry: FAST_RETRY });
    assert.equal(out.parts, 3);
    assert.ok((await readFile(target)).equals(body));
    assert.equal(lines(b, 'GET /jobs/crc/multi.bin', from).length, 6);

    // Damaged every time: refused after three rounds, with nothing left behind.
    b.corruptNext(100);
    try {
      await assert.rejects(
        downloadFile(b.store, b.bucket, 'crc/multi.bin', join(b.dir, 'crc-multi-never.bin'), { partSize: 5 * MiB, retry: FAST_RETRY }),
        (err) => err instanceof RetryLimitError && err.attempts === 3 && err.cause instanceof IntegrityError && /CRC32 [0-9a-f]{8} of the 3 ranges received/.test(err.cause.message),
      );
    } finally {
      b.corruptNext(0);
    }
    assert.ok(!(await readdir(b.dir)).some((n) => n.includes('crc-multi-never')), 'no file or temp file is left');
  });

  test('a file that changes during its multipart upload is not completed: no object, the upload aborted', async () => {
    const file = join(b.dir, 'crc-changing.bin');
    await writeFile(file, randomBytes(3 * MiB));
    let rewritten = false;
    b.beforeRequest = async (req) => {
      // While part 1 is on its way, part 3 changes on disk (it has not been read yet: one part at a time).
      if (!rewritten && req.method === 'PUT' && req.url?.includes('partNumber=1&')) {
        rewritten = true;
        const fh = await open(file, 'r+');
        await fh.write(randomBytes(100), 0, 100, 2 * MiB + 10);
        await fh.close();
      }
    };
    const from = b.requests.length;
    try {
      await assert.rejects(
        uploadFile(b.store, file, b.bucket, 'crc/changing.bin', { partSize: MiB, concurrency: 1, retry: FAST_RETRY }),
        (err) => err instanceof IntegrityError && /crc-changing\.bin changed while it was being uploaded/.test(err.message),
      );
    } finally {
      b.beforeRequest = undefined;
    }
    assert.ok(rewritten);
    await assert.rejects(b.store.head(b.bucket, 'crc/changing.bin'), NotFoundError);
    assert.equal(lines(b, 'DELETE /jobs/crc/changing.bin?uploadId=', from).length, 1, 'the multipart upload is aborted');
  });

  test('metadata that does not match the bytes is not trusted over the MD5 ETag the server checked', async () => {
    const body = randomBytes(200 * 1024);
    await b.store.put(b.bucket, 'crc/wrong-meta.bin', body, { metadata: { 'drover-crc32': '00000000' } });
    const from = b.requests.length;
    const target = join(b.dir, 'wrong-meta.bin');
    await downloadFile(b.store, b.bucket, 'crc/wrong-meta.bin', target, { retry: FAST_RETRY });
    assert.ok((await readFile(target)).equals(body));
    // The first GET failed its CRC32 check; the second was checked by MD5 and passed.
    assert.equal(lines(b, 'GET /jobs/crc/wrong-meta.bin', from).length, 2);
  });

  test('wrong credentials are a clear, non-retried error on every lean request', async () => {
    const wrongSecret = storeFor(b, { secret: 'not-the-secret' });
    const wrongKey = storeFor(b, { keyId: 'nobody' });
    try {
      const file = join(b.dir, 'denied.txt');
      await writeFile(file, 'denied');
      const from = b.requests.length;
      await assert.rejects(uploadFile(wrongSecret, file, b.bucket, 'denied.txt', { retry: FAST_RETRY }), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(err.name, 'SignatureDoesNotMatch');
        assert.equal(err.$metadata?.httpStatusCode, 403);
        assert.match(err.message, /^S3 PUT jobs\/denied\.txt: HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match/);
        return true;
      });
      assert.equal(b.requests.length - from, 1, 'a 403 is not retried');
      await assert.rejects(wrongKey.getStream(b.bucket, 'lean/a.bin'), { name: 'InvalidAccessKeyId', message: /HTTP 403 InvalidAccessKeyId: The AWS Access Key Id you provided does not exist/ });
      await assert.rejects(wrongKey.head(b.bucket, 'lean/a.bin'), { name: 'Forbidden', message: /HTTP 403 Forbidden/ });
      const info = await b.store.head(b.bucket, 'lean/a.bin');
      await assert.rejects(downloadListedObject(wrongSecret, b.bucket, info, join(b.dir, 'denied-copy.bin'), { retry: FAST_RETRY }), { name: 'SignatureDoesNotMatch' });
    } finally {
      wrongSecret.client.destroy();
      wrongKey.client.destroy();
    }
  });

  test('durable downloads (fsync in the worker thread, then the rename) land whole, with no temp file left', async () => {
    const body = randomBytes(12 * MiB + 3);
    const file = join(b.dir, 'durable-src.bin');
    await writeFile(file, body);
    await uploadFile(b.store, file, b.bucket, 'durable/x.bin', { partSize: 5 * MiB });
    await b.store.put(b.bucket, 'durable/small.bin', body.subarray(0, 300 * 1024));
    const dir = join(b.dir, 'durable');
    await mkdir(dir);
    const whole = await downloadFile(b.store, b.bucket, 'durable/small.bin', join(dir, 'small.bin'), { durable: true });
    const ranged = await downloadFile(b.store, b.bucket, 'durable/x.bin', join(dir, 'x.bin'), { durable: true, partSize: 5 * MiB });
    assert.deepEqual([whole.parts, ranged.parts], [1, 3]);
    assert.ok((await readFile(join(dir, 'small.bin'))).equals(body.subarray(0, 300 * 1024)));
    assert.ok((await readFile(join(dir, 'x.bin'))).equals(body));
    assert.deepEqual((await readdir(dir)).sort(), ['small.bin', 'x.bin']);
  });

  test('a folder of small files goes up and comes back byte-identical through the lean path', async () => {
    const src = join(b.dir, 'many');
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 24; i++) files.set(`d${i % 3}/f${i}.bin`, randomBytes(i % 2 === 0 ? 200 * 1024 + i : 1000 + i));
    for (const [rel, data] of files) {
      await mkdir(join(src, rel, '..'), { recursive: true });
      await writeFile(join(src, rel), data);
    }
    await uploadFolder(b.store, src, b.bucket, 'many/');
    const dst = join(b.dir, 'many-copy');
    assert.deepEqual(await downloadPrefix(b.store, b.bucket, 'many/', dst), { files: files.size, bytes: [...files.values()].reduce((a, d) => a + d.length, 0) });
    for (const [rel, data] of files) assert.ok((await readFile(join(dst, rel))).equals(data), rel);
  });
});
