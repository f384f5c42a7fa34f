// The transfer engine's worker threads outside S3Store's lean path: bodies read into shared memory
// and hashed in a worker go through the SDK and into the local backend intact, and a whole-object
// download that is not on the lean path (the SDK's GetObject) is still checked against its MD5
// ETag by a worker reading the file back: a corrupt body is retried, then refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IntegrityError, MiB, RetryLimitError, S3Store, downloadFile, uploadFile } from '@drover/storage';
import { ACCESS_KEY_ID, startBackend, type Backend } from '@drover/testing/storage';

const FAST_RETRY = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };
const SIZES = [300 * 1024, 3 * MiB + 7, 12 * MiB + 5];

describe('transfer engine worker threads, S3 through the SDK', () => {
  let b: Backend;
  let sdk: S3Store;
  before(async () => {
    b = await startBackend('s3', { verifySignatures: true });
    sdk = new S3Store({
      endpoint: b.env.AWS_ENDPOINT_URL,
      region: 'us-east-1',
      credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: 'test' },
      forcePathStyle: true,
      directRequests: false,
    });
  });
  after(async () => {
    sdk?.client.destroy();
    await b?.close();
  });

  test('single PUTs and multipart parts hashed in workers upload and download byte-identical', async () => {
    for (const size of SIZES) {
      const body = randomBytes(size);
      const file = join(b.dir, `sdk-${size}.bin`);
      await writeFile(file, body);
      const from = b.requests.length;
      const sent = await uploadFile(sdk, file, b.bucket, `sdk/${size}.bin`, { partSize: 5 * MiB });
      assert.equal(sent.parts, size > 5 * MiB ? 3 : 1);
      assert.ok(b.requests.slice(from).every((r) => !r.startsWith('PUT ') || r.includes('x-id=')), 'the SDK sent the PUTs');
      const target = join(b.dir, `sdk-${size}-copy.bin`);
      await downloadFile(sdk, b.bucket, `sdk/${size}.bin`, target, { partSize: 5 * MiB });
      assert.ok((await readFile(target)).equals(body), `${size} bytes`);
    }
  });

  test('a corrupt whole-object body fetched through the SDK fails its MD5 check: retried, then refused', async () => {
    const body = randomBytes(300 * 1024);
    await sdk.put(b.bucket, 'sdk-corrupt/x.bin', body);
    b.corruptNext(1);
    const target = join(b.dir, 'sdk-corrupt-once.bin');
    await downloadFile(sdk, b.bucket, 'sdk-corrupt/x.bin', target, { retry: FAST_RETRY });
    assert.ok((await readFile(target)).equals(body));

    b.corruptNext(100);
    const never = join(b.dir, 'sdk-corrupt-always.bin');
    await assert.rejects(
      downloadFile(sdk, b.bucket, 'sdk-corrupt/x.bin', never, { retry: FAST_RETRY }),
      (err) => err instanceof RetryLimitError && err.cause instanceof IntegrityError && /MD5/.test(err.cause.message),
    );
    b.corruptNext(0);
    assert.ok(!(await readdir(b.dir)).some((n) => n.includes('sdk-corrupt-always')), 'no file or temp file is left');
  });
});

describe('transfer engine worker threads, local backend', () => {
  let b: Backend;
  before(async () => {
    b = await startBackend('local');
  });
  after(async () => {
    await b?.close();
  });

  test('files read into shared memory are stored and read back byte-identical', async () => {
    for (const size of SIZES) {
      const body = randomBytes(size);
      const file = join(b.dir, `local-${size}.bin`);
      await writeFile(file, body);
      await uploadFile(b.store, file, b.bucket, `local/${size}.bin`);
      const target = join(b.dir, `local-${size}-copy.bin`);
      await downloadFile(b.store, b.bucket, `local/${size}.bin`, target);
      assert.ok((await readFile(target)).equals(body), `${size} bytes`);
    }
  });
});
