import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { IntegrityError, InvalidKeyError, LocalStore } from '@drover/storage';
import { keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';

/** A body that yields `good` bytes and then fails, like a source cut off midway. */
function failingBody(good: number): Readable {
  return Readable.from((async function* () {
    yield Buffer.alloc(good, 7);
    throw new Error('source cut off');
  })());
}

describe('local store', () => {
  let b: Backend;
  let store: LocalStore;
  before(async () => {
    b = await startBackend('local');
    store = b.store as LocalStore;
  });
  after(async () => {
    await b?.close();
  });

  test('keys that could leave the bucket folder are refused', async () => {
    for (const key of ['../escape.txt', 'a/../../escape.txt', 'a/../b', '/etc/passwd', 'nul\0byte', 'a//b', './a', 'a/', '', 'win\\path']) {
      await assert.rejects(store.put(b.bucket, key, Buffer.from('x')), InvalidKeyError, `put ${JSON.stringify(key)}`);
      await assert.rejects(store.getStream(b.bucket, key), InvalidKeyError, `get ${JSON.stringify(key)}`);
      await assert.rejects(store.delete(b.bucket, key), InvalidKeyError, `delete ${JSON.stringify(key)}`);
    }
    for (const bucket of ['..', '.', 'a/b', '']) {
      await assert.rejects(store.put(bucket, 'k', Buffer.from('x')), InvalidKeyError, `bucket ${JSON.stringify(bucket)}`);
    }
    const written = (await readdir(b.dir, { recursive: true })).filter((name) => /escape|passwd|nul|win|b$/.test(name));
    assert.deepEqual(written, [], 'no refused key left a file anywhere');
    assert.deepEqual(await keysOf(store, b.bucket), []);
  });

  test('a write that fails midway leaves no file under the final name and no temp file', async () => {
    await assert.rejects(store.put(b.bucket, 'atomic/new.bin', failingBody(1024 * 1024)), /source cut off/);
    await assert.rejects(store.head(b.bucket, 'atomic/new.bin'), { name: 'NotFoundError' });
    assert.deepEqual(await readdir(join(store.root, b.bucket, 'atomic')), []);
  });

  test('a write that fails midway leaves the previous version intact', async () => {
    await store.put(b.bucket, 'atomic/old.txt', Buffer.from('version 1'));
    await assert.rejects(store.put(b.bucket, 'atomic/old.txt', failingBody(64 * 1024)), /source cut off/);
    assert.equal((await readAll(await store.getStream(b.bucket, 'atomic/old.txt'))).toString(), 'version 1');
    assert.deepEqual(await readdir(join(store.root, b.bucket, 'atomic')), ['old.txt']);
  });

  test('a body shorter than its declared size is refused and not stored', async () => {
    await assert.rejects(store.put(b.bucket, 'sized.bin', Buffer.alloc(10), { size: 11 }), IntegrityError);
    assert.deepEqual(await keysOf(store, b.bucket, 'sized'), []);
  });

  test('a temp file of a write in progress never shows in list', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const body = Readable.from((async function* () {
      yield Buffer.from('first half ');
      await gate;
      yield Buffer.from('second half');
    })());
    const writing = store.put(b.bucket, 'slow/file.txt', body);
    // Wait until the temp file exists on disk, then list while it is half written.
    const dir = join(store.root, b.bucket, 'slow');
    for (let i = 0; i < 500; i++) {
      const names = await readdir(dir).catch(() => [] as string[]);
      if (names.length > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal((await readdir(dir)).length, 1, 'the write has a temp file');
    assert.deepEqual(await keysOf(store, b.bucket, 'slow/'), []);
    await assert.rejects(store.head(b.bucket, 'slow/file.txt'), { name: 'NotFoundError' });
    release();
    await writing;
    assert.equal(await readFile(join(dir, 'file.txt'), 'utf8'), 'first half second half');
  });

  test('a symlink inside a bucket cannot be used to read or write outside it', async () => {
    const outside = join(b.dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret.txt'), 'secret');
    await mkdir(join(store.root, b.bucket), { recursive: true });
    await symlink(outside, join(store.root, b.bucket, 'linked'));
    await assert.rejects(store.getStream(b.bucket, 'linked/secret.txt'), InvalidKeyError);
    await assert.rejects(store.put(b.bucket, 'linked/new/planted.txt', Buffer.from('x')), InvalidKeyError);
    await assert.rejects(store.delete(b.bucket, 'linked/secret.txt'), InvalidKeyError);
    assert.deepEqual((await readdir(outside)).sort(), ['secret.txt']);
  });
});
