// The transfer engine's request-saving paths, against the loopback S3 server: a small upload is
// one PUT with its Content-MD5 and no HEAD; a folder download takes size and ETag from the listing
// (no HEAD per file) and still gets the current version of an object replaced after the listing;
// a whole-object download is checked against its MD5 ETag as it arrives, and a corrupt one is
// retried, then refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  IntegrityError, MiB, RetryLimitError, downloadFile, downloadPrefix, uploadFile, uploadFolder, type ObjectStore,
} from '@drover/storage';
import { startBackend, type Backend } from '@drover/testing/storage';

const FAST_RETRY = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };

/** The real store with `getStream` replaced. */
function withGetStream(real: ObjectStore, getStream: ObjectStore['getStream']): ObjectStore {
  return {
    list: (bucket, prefix) => real.list(bucket, prefix),
    head: (bucket, key) => real.head(bucket, key),
    put: (bucket, key, data, o) => real.put(bucket, key, data, o),
    delete: (bucket, key) => real.delete(bucket, key),
    getStream,
  };
}

describe('transfer engine fast paths (s3)', () => {
  let b: Backend;
  before(async () => {
    b = await startBackend('s3');
  });
  after(async () => {
    await b?.close();
  });

  test('a file of at most one part goes up as a single PUT, without a HEAD afterwards', async () => {
    const file = join(b.dir, 'one-part.bin');
    const body = randomBytes(3 * MiB + 5);
    await writeFile(file, body);
    b.requests.length = 0;
    const out = await uploadFile(b.store, file, b.bucket, 'fast/one-part.bin');
    assert.deepEqual(b.requests.map((r) => r.split('?')[0]), [`PUT /${b.bucket}/fast/one-part.bin`]);
    assert.equal(out.size, body.length);
    assert.match(out.etag ?? '', /^[0-9a-f]{32}$/);
    const got = join(b.dir, 'one-part-copy.bin');
    await downloadFile(b.store, b.bucket, 'fast/one-part.bin', got);
    assert.ok((await readFile(got)).equals(body));
  });

  test('a folder download lists once and GETs each object, with no HEAD per file', async () => {
    const src = join(b.dir, 'tree');
    await mkdir(join(src, 'sub'), { recursive: true });
    const files = { 'a.bin': randomBytes(1000), 'sub/b.bin': randomBytes(2 * MiB), 'sub/c.bin': randomBytes(0) };
    for (const [rel, data] of Object.entries(files)) await writeFile(join(src, rel), data);
    await uploadFolder(b.store, src, b.bucket, 'tree/');
    b.requests.length = 0;
    const dst = join(b.dir, 'tree-copy');
    assert.deepEqual(await downloadPrefix(b.store, b.bucket, 'tree/', dst), { files: 3, bytes: 1000 + 2 * MiB });
    assert.equal(b.requests.filter((r) => r.startsWith('HEAD ')).length, 0, b.requests.join('\n'));
    assert.equal(b.requests.filter((r) => r.startsWith('GET ') && r.includes('list-type=2')).length, 1);
    for (const [rel, data] of Object.entries(files)) assert.ok((await readFile(join(dst, rel))).equals(data), rel);
  });

  test('an object replaced after the listing comes down in its new version', async () => {
    const oldBody = randomBytes(4000);
    const newBody = randomBytes(7000);
    await b.store.put(b.bucket, 'moved/x.bin', oldBody);
    // The listing reports the old object; the object is replaced just after it.
    const store: ObjectStore = {
      ...withGetStream(b.store, (bucket, key, o) => b.store.getStream(bucket, key, o)),
      list: async function* (bucket, prefix) {
        const seen = [];
        for await (const o of b.store.list(bucket, prefix)) seen.push(o);
        await b.store.put(bucket, 'moved/x.bin', newBody);
        yield* seen;
      },
    };
    const dst = join(b.dir, 'moved-copy');
    await downloadPrefix(store, b.bucket, 'moved/', dst);
    assert.ok((await readFile(join(dst, 'x.bin'))).equals(newBody));
  });

  test('a whole-object download that does not match its MD5 ETag is retried, then refused', async () => {
    const body = randomBytes(64 * 1024);
    await b.store.put(b.bucket, 'corrupt/x.bin', body);
    const corrupted = (): Readable => {
      const bad = Buffer.from(body);
      bad[1234] = bad[1234]! ^ 0xff;
      return Readable.from([bad.subarray(0, 1000), bad.subarray(1000)]);
    };

    // Corrupt once: the retry brings the right bytes.
    let served = 0;
    const once = withGetStream(b.store, async (bucket, key, o) => (served++ === 0 ? corrupted() : b.store.getStream(bucket, key, o)));
    const good = join(b.dir, 'corrupt-once.bin');
    await downloadFile(once, b.bucket, 'corrupt/x.bin', good, { retry: FAST_RETRY });
    assert.equal(served, 2);
    assert.ok((await readFile(good)).equals(body));

    // Corrupt every time: it gives up, and nothing lands.
    const always = withGetStream(b.store, async () => corrupted());
    const target = join(b.dir, 'corrupt-always.bin');
    await assert.rejects(
      downloadFile(always, b.bucket, 'corrupt/x.bin', target, { retry: FAST_RETRY }),
      (err) => err instanceof RetryLimitError && err.cause instanceof IntegrityError && /MD5/.test(err.cause.message),
    );
    assert.ok(!(await readdir(b.dir)).some((n) => n.startsWith('corrupt-always') || n.startsWith('.corrupt-always')));
  });
});
