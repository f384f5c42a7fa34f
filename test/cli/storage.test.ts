// The storage commands, as a user runs them: the built `drover` binary (no shell) against a real
// loopback S3 server (settings from the environment) and against local storage (settings from
// --storage, and from the profile `drover up` writes). Everything is checked through the store
// itself, not through the CLI's own output only.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { DROVER_BIN } from '@drover/testing/server';
import { keysOf, readAll, startBackend, type Backend } from '@drover/testing/storage';
import { parseRemote } from '../../packages/cli/src/lib/remote-path.js';
import { ProgressBar, renderProgress } from '../../packages/cli/src/lib/progress-bar.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI with exactly `env` (plus PATH, a scratch HOME and NO_COLOR): nothing leaks in from the test's environment. */
function drover(args: string[], opts: { env?: Record<string, string>; cwd: string; home: string }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args],
      { cwd: opts.cwd, env: { PATH: process.env.PATH ?? '', HOME: opts.home, NO_COLOR: '1', ...opts.env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A failure is one line on stderr, naming the command, with no stack trace. */
function assertOneLineError(r: Run, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0] as string, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

async function filesBelow(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const e of await readdir(abs, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(join(abs, e.name), r);
      else out.set(r, await readFile(join(abs, e.name)));
    }
  };
  await walk(dir, '');
  return out;
}

async function objectBytes(b: Backend, key: string): Promise<Buffer> {
  return readAll((await b.store.getStream(b.bucket, key)) as AsyncIterable<Buffer>);
}

/** The three ways a user points the CLI at storage. */
const MODES = [
  { name: 'S3 (settings from the environment)', backend: 's3', settings: 'env' },
  { name: 'local storage (--storage file:///...)', backend: 'local', settings: 'flag' },
  { name: 'local storage (the profile `drover up` writes)', backend: 'local', settings: 'profile' },
] as const;

for (const mode of MODES) {
  describe(`drover upload/download/storage on ${mode.name}`, () => {
    let b: Backend;
    let work: string;
    let home: string;
    let src: string;
    let files: Map<string, Buffer>;
    let storageFolder: string;
    /** A remote path as a user of this mode writes it. */
    const remote = (key: string) => (mode.settings === 'profile' ? `${b.bucket}/${key}` : `s3://${b.bucket}/${key}`);
    const cli = (args: string[]) => {
      const env = mode.settings === 'env' ? b.env : {};
      const extra = mode.settings === 'flag' ? ['--storage', b.env.DROVER_STORAGE as string] : [];
      return drover([...args, ...extra], { env, cwd: work, home });
    };

    before(async () => {
      b = await startBackend(mode.backend);
      work = await mkdtemp(join(tmpdir(), 'drover-cli-storage-'));
      home = join(work, 'home');
      await mkdir(home);
      storageFolder = join(b.dir, 'store');
      if (mode.backend === 'local') await mkdir(join(storageFolder, b.bucket), { recursive: true });
      if (mode.settings === 'profile') {
        await mkdir(join(work, '.drover'));
        await writeFile(join(work, '.drover', 'profile.json'), JSON.stringify({ api_url: 'http://127.0.0.1:1', api_key: 'k', storage: b.env.DROVER_STORAGE }));
      }
      // A folder with nesting, an empty file, a binary file; on S3 one file above the 10 MiB part size (multipart).
      src = join(work, 'src');
      files = new Map([
        ['a.txt', Buffer.from('hello\n')],
        ['empty.dat', Buffer.alloc(0)],
        ['sub/b.bin', randomBytes(300_000)],
        ['sub/deep/c.txt', Buffer.from('c'.repeat(1500))],
      ]);
      if (mode.backend === 's3') files.set('big.bin', randomBytes(11 * 1024 * 1024 + 17));
      for (const [rel, data] of files) {
        await mkdir(join(src, rel, '..'), { recursive: true });
        await writeFile(join(src, rel), data);
      }
    });
    after(async () => {
      await b.close();
      await rm(work, { recursive: true, force: true });
    });

    it('an uploaded folder lands under the prefix and downloads back byte-identical', async () => {
      const up = await cli(['upload', 'src', remote('run-1/input')]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, new RegExp(`^uploaded ${files.size} files \\(.+\\) from src to .*run-1/input/ in [\\d.]+ s, [\\d.]+ MB/s\\n$`));
      assert.deepEqual(await keysOf(b.store, b.bucket, 'run-1/'), [...files.keys()].map((k) => `run-1/input/${k}`).sort());
      for (const [rel, data] of files) assert.ok((await objectBytes(b, `run-1/input/${rel}`)).equals(data), rel);

      const down = await cli(['download', remote('run-1/input'), 'out']);
      assert.equal(down.code, 0, down.stderr);
      assert.match(down.stdout, new RegExp(`^downloaded ${files.size} files `));
      const got = await filesBelow(join(work, 'out'));
      assert.deepEqual([...got.keys()].sort(), [...files.keys()].sort());
      for (const [rel, data] of files) assert.ok(got.get(rel)?.equals(data), rel);
    });

    it('one object downloads to a file path or into a folder', async () => {
      const r = await cli(['download', remote('run-1/input/sub/b.bin'), 'one.bin']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await readFile(join(work, 'one.bin'))).equals(files.get('sub/b.bin') as Buffer));
      await mkdir(join(work, 'into'));
      const r2 = await cli(['download', remote('run-1/input/sub/deep/c.txt'), 'into']);
      assert.equal(r2.code, 0, r2.stderr);
      assert.ok((await readFile(join(work, 'into', 'c.txt'))).equals(files.get('sub/deep/c.txt') as Buffer));
    });

    it('a file uploads to the key named, or into the folder a trailing slash names', async () => {
      const exact = await cli(['upload', 'src/a.txt', remote('run-10/renamed.txt')]);
      assert.equal(exact.code, 0, exact.stderr);
      const into = await cli(['upload', 'src/sub/deep/c.txt', remote('run-10/')]);
      assert.equal(into.code, 0, into.stderr);
      // An existing folder is a folder even without the slash, as with cp.
      const intoExisting = await cli(['upload', 'src/a.txt', remote('run-10')]);
      assert.equal(intoExisting.code, 0, intoExisting.stderr);
      assert.deepEqual(await keysOf(b.store, b.bucket, 'run-10/'), ['run-10/a.txt', 'run-10/c.txt', 'run-10/renamed.txt']);
      assert.ok((await objectBytes(b, 'run-10/renamed.txt')).equals(files.get('a.txt') as Buffer));
    });

    it('storage ls shows a tree with every size and per-folder totals; --json is the flat list', async () => {
      const r = await cli(['storage', 'ls', remote('run-1')]);
      assert.equal(r.code, 0, r.stderr);
      const total = [...files.values()].reduce((a, d) => a + d.length, 0);
      const lines = r.stdout.trimEnd().split('\n');
      assert.match(lines[0] as string, /run-1\/|jobs\/\s/);
      assert.match(r.stdout, /^\S*\s+[\d.]+ \S+\s+\d+ files$/m);
      assert.match(r.stdout, new RegExp(`input/\\s+\\S+ \\S+  ${files.size} files`));
      assert.match(r.stdout, /^ +├── b\.bin\s+293\.0 KiB$/m);
      assert.match(r.stdout, /c\.txt\s+1\.46 KiB$/m);
      assert.match(r.stdout, /a\.txt\s+6 B$/m);
      assert.match(r.stdout, /empty\.dat\s+0 B$/m);
      assert.match(r.stdout, /deep\/\s+1\.46 KiB {2}1 file$/m);
      // run-10 is a sibling of run-1, not inside it
      assert.doesNotMatch(r.stdout, /renamed/);

      const j = await cli(['storage', 'ls', remote('run-1/'), '--json']);
      assert.equal(j.code, 0, j.stderr);
      const parsed = JSON.parse(j.stdout) as { files: number; bytes: number; objects: { bucket: string; key: string; size: number; last_modified: string }[] };
      assert.equal(parsed.files, files.size);
      assert.equal(parsed.bytes, total);
      assert.deepEqual(
        parsed.objects.map((o) => [o.bucket, o.key, o.size]),
        [...files.entries()].map(([k, d]) => [b.bucket, `run-1/input/${k}`, d.length]).sort((x, y) => (x[1]! < y[1]! ? -1 : 1)),
      );
      assert.ok(parsed.objects.every((o) => !Number.isNaN(Date.parse(o.last_modified))));
    });

    it('upload and download --json print a parsable summary', async () => {
      const up = await cli(['upload', 'src/sub', remote('json-run/sub'), '--json']);
      assert.equal(up.code, 0, up.stderr);
      const u = JSON.parse(up.stdout) as { operation: string; files: number; bytes: number; seconds: number; mb_per_s: number; items: { key: string; size: number }[] };
      assert.equal(u.operation, 'upload');
      assert.equal(u.files, 2);
      assert.equal(u.bytes, 301_500);
      assert.deepEqual(u.items.map((i) => [i.key, i.size]), [['json-run/sub/b.bin', 300_000], ['json-run/sub/deep/c.txt', 1500]]);
      assert.ok(u.seconds >= 0 && u.mb_per_s >= 0);
      const down = await cli(['download', remote('json-run/sub/deep/c.txt'), 'c-copy.txt', '--json']);
      assert.equal(down.code, 0, down.stderr);
      const d = JSON.parse(down.stdout) as { operation: string; files: number; bytes: number };
      assert.deepEqual([d.operation, d.files, d.bytes], ['download', 1, 1500]);
    });

    it('storage rm removes exactly what was named, and refuses more without --recursive (and a bucket without --yes)', async () => {
      for (const p of ['rm-1/', 'rm-10/', 'rm-1x/']) assert.equal((await cli(['upload', 'src/sub', remote(p)])).code, 0);
      const before = await keysOf(b.store, b.bucket);

      // A prefix of several objects without --recursive: refused, nothing removed.
      assertOneLineError(await cli(['storage', 'rm', remote('rm-1')]), 2, /^drover storage rm: \S*rm-1 is more than one object \(2 objects, .* under \S*rm-1\/\); pass --recursive .*Nothing was removed\.$/);
      // A whole bucket with --recursive but without --yes: refused, nothing removed.
      assertOneLineError(await cli(['storage', 'rm', '--recursive', remote('')]), 2, /whole bucket .*--recursive --yes/);
      assertOneLineError(await cli(['storage', 'rm', remote('')]), 2, /whole bucket .*--recursive --yes/);
      assertOneLineError(await cli(['storage', 'rm', '--yes', remote('')]), 2, /whole bucket .*--recursive --yes/);
      const dry = await cli(['storage', 'rm', '-r', '--dry-run', remote('rm-1')]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would remove 2 objects/);
      assert.deepEqual(await keysOf(b.store, b.bucket), before);

      // One object: removed alone.
      const one = await cli(['storage', 'rm', remote('rm-1/deep/c.txt')]);
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stdout, /^removed \S*rm-1\/deep\/c\.txt {2}\(1\.46 KiB\)\nremoved 1 object, 1\.46 KiB\n$/);
      assert.deepEqual(await keysOf(b.store, b.bucket), before.filter((k) => k !== 'rm-1/deep/c.txt'));

      // --recursive on rm-1: everything under rm-1/, never rm-10/ or rm-1x/.
      const rec = await cli(['storage', 'rm', '--recursive', remote('rm-1'), '--json']);
      assert.equal(rec.code, 0, rec.stderr);
      const removed = JSON.parse(rec.stdout) as { files: number; removed: { key: string }[] };
      assert.deepEqual(removed.removed.map((o) => o.key), ['rm-1/b.bin']);
      assert.deepEqual(await keysOf(b.store, b.bucket), before.filter((k) => !k.startsWith('rm-1/')));
      assert.ok((await keysOf(b.store, b.bucket, 'rm-10/')).length === 2 && (await keysOf(b.store, b.bucket, 'rm-1x/')).length === 2);

      // Nothing left there: an error, not a silent success.
      assertOneLineError(await cli(['storage', 'rm', '-r', remote('rm-1')]), 1, /^drover storage rm: nothing to remove: no object \S*rm-1 /);
    });

    it('bad remote paths, a missing local file and a missing object are one line and a non-zero exit, changing nothing', async () => {
      const keys = await keysOf(b.store, b.bucket);
      assertOneLineError(await cli(['upload', 'src/a.txt', 'gs://jobs/x']), 2, /^drover upload: remote path must look like s3:\/\/bucket\/prefix(, bucket\/prefix or a path inside \S+)?, got "gs:\/\/jobs\/x"$/);
      assertOneLineError(await cli(['upload', 'src/a.txt', 's3:///x']), 2, /remote path must look like s3:\/\/bucket\/prefix, got "s3:\/\/\/x" \(no bucket\)/);
      assertOneLineError(await cli(['upload', 'src/a.txt', 's3://jobs/a/../b']), 2, /"\.\." segment/);
      assertOneLineError(await cli(['download', 's3://Bad Bucket/x', 'x']), 2, /bucket "Bad Bucket" .* is not a valid name/);
      if (mode.backend === 's3') {
        assertOneLineError(await cli(['storage', 'ls', 'jobs/x']), 2, /remote path must look like s3:\/\/bucket\/prefix, got "jobs\/x" \(bucket\/prefix without s3:\/\/ works only with local storage\)$/);
      } else {
        // With local storage a filesystem path must lie inside the storage folder.
        assertOneLineError(await cli(['storage', 'ls', work]), 2, /is not inside the local storage folder/);
        const inside = await cli(['storage', 'ls', join(storageFolder, b.bucket, 'run-1', 'input', 'sub'), '--json']);
        assert.equal(inside.code, 0, inside.stderr);
        assert.deepEqual((JSON.parse(inside.stdout) as { objects: { key: string }[] }).objects.map((o) => o.key), ['run-1/input/sub/b.bin', 'run-1/input/sub/deep/c.txt']);
      }
      assertOneLineError(await cli(['upload', 'no-such-file.txt', remote('x/')]), 1, /^drover upload: local path no-such-file\.txt does not exist$/);
      assertOneLineError(await cli(['download', remote('run-1/nope.txt'), 'nope.txt']), 1, /^drover download: no object \S*run-1\/nope\.txt and no objects under \S*run-1\/nope\.txt\/$/);
      assert.equal(existsSync(join(work, 'nope.txt')), false);
      assertOneLineError(await cli(['download', remote('nope/'), 'nope-dir']), 1, /no objects under/);
      assert.equal(existsSync(join(work, 'nope-dir')), false);
      assertOneLineError(await cli(['storage', 'rm', remote('run-1/nope.txt')]), 1, /nothing to remove/);
      const missingBucket = await cli(['storage', 'ls', mode.settings === 'profile' ? 'nope-bucket/x' : 's3://nope-bucket/x']);
      assertOneLineError(missingBucket, 1, /bucket "nope-bucket" does not exist/);
      assert.deepEqual(await keysOf(b.store, b.bucket), keys);
    });

    it('storage rm --recursive --yes empties the whole bucket, and says what it removed', async () => {
      const count = (await keysOf(b.store, b.bucket)).length;
      assert.ok(count > 5);
      const r = await cli(['storage', 'rm', '--recursive', '--yes', remote('')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('removed ') && l.includes('(')).length, count);
      assert.match(r.stdout, new RegExp(`^removed ${count} objects, .*$`, 'm'));
      assert.deepEqual(await keysOf(b.store, b.bucket), []);
      const ls = await cli(['storage', 'ls', remote('')]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /: no objects\n$/);
    });
  });
}

describe('drover storage settings', () => {
  let a: Backend;
  let other: Backend;
  let work: string;
  before(async () => {
    a = await startBackend('local');
    other = await startBackend('local');
    work = await mkdtemp(join(tmpdir(), 'drover-cli-settings-'));
    await a.store.put(a.bucket, 'in-a.txt', Buffer.from('a'));
    await other.store.put(other.bucket, 'in-other.txt', Buffer.from('o'));
    await mkdir(join(work, '.drover'));
    await writeFile(join(work, '.drover', 'profile.json'), JSON.stringify({ api_url: 'http://127.0.0.1:1', api_key: 'k', storage: other.env.DROVER_STORAGE }));
  });
  after(async () => {
    await a.close();
    await other.close();
    await rm(work, { recursive: true, force: true });
  });
  const keysListed = async (r: Run) => {
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { objects: { key: string }[] }).objects.map((o) => o.key);
  };

  it('--storage beats DROVER_STORAGE, which beats the profile', async () => {
    const base = { cwd: work, home: work };
    assert.deepEqual(await keysListed(await drover(['storage', 'ls', 'jobs', '--json'], base)), ['in-other.txt']);
    assert.deepEqual(await keysListed(await drover(['storage', 'ls', 'jobs', '--json'], { ...base, env: a.env })), ['in-a.txt']);
    assert.deepEqual(await keysListed(await drover(['storage', 'ls', 'jobs', '--json', '--storage', other.env.DROVER_STORAGE as string], { ...base, env: a.env })), ['in-other.txt']);
    // --profile names another profile file; a missing one is an error, not a silent fallback.
    assertOneLineError(await drover(['storage', 'ls', 'jobs', '--profile', 'missing.json'], base), 2, /profile .*missing\.json does not exist/);
  });

  it('bad storage settings are one line naming where they came from; secrets are not flags', async () => {
    assertOneLineError(await drover(['storage', 'ls', 's3://jobs', '--storage', 'ftp://x'], { cwd: work, home: work }), 2, /storage must be "s3" or a file:\/\/\/absolute\/dir URL, got "ftp:\/\/x" \(storage from --storage\)/);
    assertOneLineError(
      await drover(['storage', 'ls', 's3://jobs'], { cwd: work, home: work, env: { DROVER_STORAGE: 's3', AWS_ENDPOINT_URL: 'not a url', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' } }),
      2, /S3 endpoint "not a url" is not a URL/,
    );
    const secret = await drover(['upload', 'x', 's3://jobs/x', '--s3-secret-access-key', 'shh'], { cwd: work, home: work });
    assert.notEqual(secret.code, 0);
    assert.match(secret.stderr, /unknown option '--s3-secret-access-key'/);
  });

  it('an unreachable S3 endpoint is one line naming the endpoint', async () => {
    const r = await drover(['storage', 'ls', 's3://jobs/x'], {
      cwd: work, home: work,
      env: { DROVER_STORAGE: 's3', AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' },
    });
    assertOneLineError(r, 1, /^drover storage ls: cannot reach storage s3 http:\/\/127\.0\.0\.1:1 region us-east-1: .*ECONNREFUSED/);
  });

  it('ls without a path on local storage shows every bucket of the storage folder', async () => {
    const r = await drover(['storage', 'ls'], { cwd: work, home: work, env: a.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^└── jobs\/\s+1 B {2}1 file$/m);
    assert.match(r.stdout, /^ {4}└── in-a\.txt\s+1 B$/m);
    assertOneLineError(await drover(['storage', 'ls'], { cwd: work, home: work, env: { DROVER_STORAGE: 's3', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' } }), 2, /name what to list/);
  });
});

describe('remote paths and the progress bar', () => {
  it('remote paths parse into bucket and key, with local filesystem paths confined to the storage folder', () => {
    const s3 = { kind: 's3' as const };
    const local = { kind: 'local' as const, root: '/data/store', cwd: '/data' };
    assert.deepEqual(parseRemote('s3://jobs', s3), { bucket: 'jobs', key: '' });
    assert.deepEqual(parseRemote('s3://jobs/run-1/in/', s3), { bucket: 'jobs', key: 'run-1/in/' });
    assert.deepEqual(parseRemote('jobs/run-1', local), { bucket: 'jobs', key: 'run-1' });
    assert.deepEqual(parseRemote('./store/jobs/run-1/', local), { bucket: 'jobs', key: 'run-1/' });
    assert.deepEqual(parseRemote(pathToFileURL('/data/store/jobs/a').href, local), { bucket: 'jobs', key: 'a' });
    assert.throws(() => parseRemote('/data/other/jobs', local), /not inside the local storage folder \/data\/store/);
    assert.throws(() => parseRemote('/data/store', local), /is the storage folder itself/);
    assert.deepEqual(parseRemote('/data/store', local, { allowStoreRoot: true }), { bucket: '', key: '' });
    assert.throws(() => parseRemote('jobs/a', s3), /only with local storage/);
    assert.throws(() => parseRemote('s3://jobs//a', s3), /empty, "\." or "\.\." segment/);
  });

  it('the bar shows percent, bytes, MB/s, ETA and files on a terminal, and nothing elsewhere', () => {
    const line = renderProgress('upload x', { bytes: 5_000_000, total: 10_000_000, files: 3, totalFiles: 10 }, 2_500_000, 120);
    assert.match(line, /^upload x \[#+-+\] {2}50% {2}4\.77 MiB\/9\.54 MiB {2}2\.50 MB\/s {2}ETA 2s {2}files 3\/10$/);
    assert.ok(renderProgress('upload x', { bytes: 1, total: 2 }, undefined, 30).length < 30);

    let t = 0;
    const written: string[] = [];
    const tty = { isTTY: true, columns: 100, write: (s: string) => written.push(s) > 0 };
    const bar = new ProgressBar({ label: 'down', stream: tty, now: () => t, intervalMs: 100 });
    bar.update({ bytes: 0, total: 2_000_000 });
    t = 50;
    bar.update({ bytes: 100, total: 2_000_000 }); // within the interval: not drawn
    t = 1000;
    bar.update({ bytes: 1_000_000, total: 2_000_000 });
    bar.finish();
    assert.equal(written.length, 3);
    assert.ok((written[1] as string).startsWith('\r') && (written[1] as string).endsWith('\u001b[K'));
    assert.match((written[1] as string).slice(1, -3), /^down \[#+-+\] {2}50% {2}976\.6 KiB\/1\.91 MiB {2}1\.00 MB\/s {2}ETA 1s$/);
    assert.equal(written[2], '\r\u001b[K');

    const piped: string[] = [];
    const quiet = new ProgressBar({ label: 'x', stream: { isTTY: false, write: (s: string) => piped.push(s) > 0 } });
    quiet.update({ bytes: 1, total: 2 });
    quiet.finish();
    assert.deepEqual(piped, []);
  });
});
