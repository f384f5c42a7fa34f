// Whole folders to and from a prefix, on both backends: keys, filters, nested folders, and keys
// that would land outside the folder.
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { downloadPrefix, InvalidKeyError, keyFor, listLocalFiles, openStore, relativePathFor, S3Store, LocalStore, StoreSettingError, uploadFolder } from '@drover/storage';
import { BACKENDS, keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';

describe('folder transfers: keys', () => {
  it('joins prefixes with exactly one slash', () => {
    assert.equal(keyFor('', 'a/b.txt'), 'a/b.txt');
    assert.equal(keyFor('runs/1/', 'a.txt'), 'runs/1/a.txt');
    assert.equal(keyFor('runs/1', 'a.txt'), 'runs/1/a.txt');
  });
  it('maps keys back, skipping folder markers and refusing escapes', () => {
    assert.equal(relativePathFor('p/', 'p/x/y.bin'), 'x/y.bin');
    assert.equal(relativePathFor('p', 'p/x'), 'x');
    assert.equal(relativePathFor('p/', 'p/dir/'), undefined);
    for (const bad of ['p/../etc/passwd', 'p/a//b', 'p/./a']) assert.throws(() => relativePathFor('p/', bad), InvalidKeyError, bad);
  });
});

describe('openStore', () => {
  it('opens S3 (path-style when an endpoint is given) and local folders, and names bad settings', () => {
    assert.ok(openStore({ storage: 's3', endpoint: 'http://127.0.0.1:9000', accessKeyId: 'a', secretAccessKey: 'b' }) instanceof S3Store);
    assert.ok(openStore({ storage: 'file:///tmp/drover-store' }) instanceof LocalStore);
    assert.throws(() => openStore({ storage: 'ftp://x' }), StoreSettingError);
    assert.throws(() => openStore({ storage: 's3', endpoint: 'not a url' }), /not a URL/);
    assert.throws(() => openStore({ storage: 's3', accessKeyId: 'a' }), /both/);
  });
});

for (const kind of BACKENDS) {
  describe(`folder transfers (${kind})`, () => {
    let b: Backend;
    before(async () => {
      b = await startBackend(kind);
    });
    after(() => b.close());

    it('gzip (compression: true): uploads under <key>.gz, downloads .gz objects gunzipped without the suffix', async () => {
      const src = join(b.dir, 'gz-src');
      await mkdir(join(src, 'sub'), { recursive: true });
      await writeFile(join(src, 'a.json'), JSON.stringify({ a: 1 }));
      await writeFile(join(src, 'sub/big.bin'), Buffer.alloc(200_000, 9));
      const up = await uploadFolder(b.store, src, b.bucket, 'gz', { gzip: true });
      assert.equal(up.files, 2);
      assert.deepEqual(await keysOf(b.store, b.bucket, 'gz/'), ['gz/a.json.gz', 'gz/sub/big.bin.gz']);
      const packed = await readAll(await b.store.getStream(b.bucket, 'gz/sub/big.bin.gz'));
      assert.ok(packed.length < 2000, 'stored compressed');
      assert.deepEqual(gunzipSync(packed), Buffer.alloc(200_000, 9));
      await b.store.put(b.bucket, 'gz/plain.txt', Buffer.from('as is'));
      const dest = join(b.dir, 'gz-dest');
      const down = await downloadPrefix(b.store, b.bucket, 'gz/', dest, { gzip: true, filter: (rel) => !rel.endsWith('.bin') });
      assert.equal(down.files, 2, 'the filter judges the name without .gz');
      assert.deepEqual(await listLocalFiles(dest), ['a.json', 'plain.txt']);
      assert.equal(await readFile(join(dest, 'a.json'), 'utf8'), '{"a":1}');
      assert.equal(await readFile(join(dest, 'plain.txt'), 'utf8'), 'as is');
    });

    it('gzip: a .gz object that is not gzip fails its download and leaves no file behind', async () => {
      await b.store.put(b.bucket, 'badgz/broken.txt.gz', Buffer.from('this is not gzip'));
      await b.store.put(b.bucket, 'badgz/fine.txt.gz', gzipSync('fine'));
      const dest = join(b.dir, 'badgz-dest');
      await assert.rejects(downloadPrefix(b.store, b.bucket, 'badgz/', dest, { gzip: true, fileConcurrency: 1 }), /incorrect header check|gzip/i);
      assert.deepEqual((await readdir(dest)).filter((n) => n.startsWith('broken') || n.includes('drover-dl')), [], 'no partial or temp file');
    });

    it('uploads a tree under a prefix and downloads it back, byte for byte', async () => {
      const src = join(b.dir, 'src');
      await mkdir(join(src, 'sub/deeper'), { recursive: true });
      await writeFile(join(src, 'a.txt'), 'A');
      await writeFile(join(src, 'sub/b.bin'), Buffer.alloc(3000, 7));
      await writeFile(join(src, 'sub/deeper/c.txt'), 'C');
      await writeFile(join(src, '.drover-internal'), 'skipped');
      const seen: string[] = [];
      const up = await uploadFolder(b.store, src, b.bucket, 'tree', { onFileDone: (f) => seen.push(f.key) });
      assert.deepEqual(up, { files: 3, bytes: 3002 });
      assert.deepEqual(seen.sort(), ['tree/a.txt', 'tree/sub/b.bin', 'tree/sub/deeper/c.txt']);
      assert.deepEqual(await keysOf(b.store, b.bucket, 'tree/'), ['tree/a.txt', 'tree/sub/b.bin', 'tree/sub/deeper/c.txt']);

      const dst = join(b.dir, 'dst');
      let last = { bytes: 0, total: 0, files: 0, totalFiles: 0 };
      const down = await downloadPrefix(b.store, b.bucket, 'tree/', dst, { onProgress: (p) => (last = p) });
      assert.deepEqual(down, { files: 3, bytes: 3002 });
      assert.deepEqual(last, { bytes: 3002, total: 3002, files: 3, totalFiles: 3 });
      assert.deepEqual(await listLocalFiles(dst), ['a.txt', 'sub/b.bin', 'sub/deeper/c.txt']);
      assert.deepEqual(await readFile(join(dst, 'sub/b.bin')), Buffer.alloc(3000, 7));
    });

    it('transfers only what the filter selects', async () => {
      const src = join(b.dir, 'filtered');
      await mkdir(src, { recursive: true });
      for (const n of ['x.bin', 'y.txt', 'z.bin']) await writeFile(join(src, n), n);
      const up = await uploadFolder(b.store, src, b.bucket, 'f/', { filter: (r) => r.endsWith('.bin') });
      assert.equal(up.files, 2);
      assert.deepEqual(await keysOf(b.store, b.bucket, 'f/'), ['f/x.bin', 'f/z.bin']);
      const dst = join(b.dir, 'filtered-dst');
      await downloadPrefix(b.store, b.bucket, 'f/', dst, { filter: (r) => r.startsWith('z') });
      assert.deepEqual(await readdir(dst), ['z.bin']);
    });

    if (kind === 's3') {
      it('retries a listing answered 503 or cut off, as every other request', async () => {
        await b.store.put(b.bucket, 'retry-list/a.txt', Buffer.from('a'));
        const dst = join(b.dir, 'retry-list-dst');
        b.failNext(1);
        assert.deepEqual(await downloadPrefix(b.store, b.bucket, 'retry-list/', dst, { retry: { baseDelayMs: 1 } }), { files: 1, bytes: 1 });
        b.resetNext(1);
        assert.deepEqual(await downloadPrefix(b.store, b.bucket, 'retry-list/', dst, { retry: { baseDelayMs: 1 } }), { files: 1, bytes: 1 });
        assert.equal(await readFile(join(dst, 'a.txt'), 'utf8'), 'a');
      });

      it('refuses an object whose key would land outside the folder, writing nothing', async () => {
        await b.store.put(b.bucket, 'evil/../../escaped.txt', Buffer.from('x'));
        const dst = join(b.dir, 'evil-dst');
        await assert.rejects(downloadPrefix(b.store, b.bucket, 'evil/', dst), InvalidKeyError);
        await assert.rejects(readFile(join(b.dir, 'escaped.txt')), { code: 'ENOENT' });
      });
    }

    it('downloads an empty or missing prefix as an empty folder', async () => {
      const dst = join(b.dir, 'none');
      assert.deepEqual(await downloadPrefix(b.store, b.bucket, 'no-such-prefix/', dst), { files: 0, bytes: 0 });
      assert.deepEqual(await readdir(dst), []);
      assert.deepEqual(await listLocalFiles(join(b.dir, 'missing-folder')), []);
    });
  });
}
