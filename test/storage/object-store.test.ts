import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidRangeError, NotFoundError } from '@drover/storage';
import { BACKENDS, keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';

for (const kind of BACKENDS) {
  describe(`object store (${kind})`, () => {
    let b: Backend;
    before(async () => {
      b = await startBackend(kind);
    });
    after(async () => {
      await b?.close();
    });

    test('an object put is read back whole, with its size from head', async () => {
      const body = randomBytes(100_000);
      await b.store.put(b.bucket, 'round/trip.bin', body);
      const info = await b.store.head(b.bucket, 'round/trip.bin');
      assert.equal(info.size, body.length);
      assert.ok(info.lastModified instanceof Date);
      assert.deepEqual(await readAll(await b.store.getStream(b.bucket, 'round/trip.bin')), body);
    });

    test('a put replaces the previous object under the same key', async () => {
      await b.store.put(b.bucket, 'replace.txt', Buffer.from('old contents'));
      await b.store.put(b.bucket, 'replace.txt', Buffer.from('new'));
      assert.equal((await readAll(await b.store.getStream(b.bucket, 'replace.txt'))).toString(), 'new');
      assert.equal((await b.store.head(b.bucket, 'replace.txt')).size, 3);
    });

    test('a file given by path is stored with its bytes', async () => {
      const file = join(b.dir, 'from-file.bin');
      const body = randomBytes(4096);
      await writeFile(file, body);
      await b.store.put(b.bucket, 'from/file.bin', { file });
      assert.deepEqual(await readAll(await b.store.getStream(b.bucket, 'from/file.bin')), body);
    });

    test('a ranged get returns exactly the bytes of the inclusive range', async () => {
      const body = randomBytes(10_000);
      await b.store.put(b.bucket, 'ranged.bin', body);
      const part = await readAll(await b.store.getStream(b.bucket, 'ranged.bin', { range: { start: 1234, end: 5677 } }));
      assert.deepEqual(part, body.subarray(1234, 5678));
      const tail = await readAll(await b.store.getStream(b.bucket, 'ranged.bin', { range: { start: 9990, end: 9999 } }));
      assert.deepEqual(tail, body.subarray(9990));
    });

    test('a range starting past the end is refused as InvalidRange', async () => {
      await b.store.put(b.bucket, 'short.bin', Buffer.from('0123456789'));
      await assert.rejects(b.store.getStream(b.bucket, 'short.bin', { range: { start: 50, end: 60 } }), InvalidRangeError);
    });

    test('list returns the objects under a prefix, in key order, with sizes', async () => {
      for (const key of ['list/b/2.txt', 'list/a.txt', 'list/b/1.txt', 'listing-other.txt', 'other/list/x.txt']) {
        await b.store.put(b.bucket, key, Buffer.from(key));
      }
      const items = [];
      for await (const o of b.store.list(b.bucket, 'list/')) items.push({ key: o.key, size: o.size });
      assert.deepEqual(items, [
        { key: 'list/a.txt', size: 10 },
        { key: 'list/b/1.txt', size: 12 },
        { key: 'list/b/2.txt', size: 12 },
      ]);
      assert.deepEqual(await keysOf(b.store, b.bucket, 'list'), ['list/a.txt', 'list/b/1.txt', 'list/b/2.txt', 'listing-other.txt']);
    });

    test('a deleted object is gone from head, get and list, and deleting it again is not an error', async () => {
      await b.store.put(b.bucket, 'gone/soon.txt', Buffer.from('bye'));
      await b.store.delete(b.bucket, 'gone/soon.txt');
      await assert.rejects(b.store.head(b.bucket, 'gone/soon.txt'), NotFoundError);
      await assert.rejects(b.store.getStream(b.bucket, 'gone/soon.txt'), NotFoundError);
      assert.deepEqual(await keysOf(b.store, b.bucket, 'gone/'), []);
      await b.store.delete(b.bucket, 'gone/soon.txt');
    });

    test('a missing object is NotFound for head and get', async () => {
      await assert.rejects(b.store.head(b.bucket, 'never/was.txt'), (err) => err instanceof NotFoundError && err.key === 'never/was.txt');
      await assert.rejects(b.store.getStream(b.bucket, 'never/was.txt', { range: { start: 0, end: 9 } }), NotFoundError);
    });
  });
}
