// Which job local_paths the worker accepts: only folders it may purge afterwards.
import { PathNotAllowedError, resolveLocalPath } from '@drover/worker';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

describe('job local_path resolution', () => {
  let base: string;
  let dataRoot: string;
  let legacy: string;
  let outside: string;

  before(() => {
    base = realpathSync(mkdtempSync(path.join(tmpdir(), 'drover-paths-')));
    dataRoot = path.join(base, 'data');
    legacy = path.join(base, 'legacy-input');
    outside = path.join(base, 'elsewhere');
    for (const d of [dataRoot, legacy, outside]) mkdirSync(d);
    mkdirSync(path.join(dataRoot, 'inside'));
    symlinkSync(outside, path.join(dataRoot, 'escape'));
    symlinkSync(path.join(dataRoot, 'inside'), path.join(dataRoot, 'alias'));
    symlinkSync('/etc', path.join(legacy, 'etc-link'));
    symlinkSync(path.join(base, 'missing'), path.join(dataRoot, 'dangling'));
    symlinkSync(dataRoot, path.join(dataRoot, 'self'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  const roots = () => ({ dataRoot, legacyDirs: [legacy, undefined] });

  async function refused(localPath: string, reason: RegExp) {
    await assert.rejects(resolveLocalPath(localPath, roots()), (err: unknown) => {
      assert.ok(err instanceof PathNotAllowedError, `expected PathNotAllowedError, got ${String(err)}`);
      assert.equal(err.path, localPath);
      assert.equal(err.root, dataRoot);
      assert.ok(err.message.includes(JSON.stringify(localPath)), err.message);
      assert.ok(err.message.includes(dataRoot), err.message);
      assert.match(err.message, reason);
      return true;
    });
  }

  it('a relative path is taken relative to the data root, existing or not', async () => {
    assert.equal(await resolveLocalPath('inside', roots()), path.join(dataRoot, 'inside'));
    assert.equal(await resolveLocalPath('new/deeper/dir', roots()), path.join(dataRoot, 'new/deeper/dir'));
    assert.equal(await resolveLocalPath('./a/../b', roots()), path.join(dataRoot, 'b'));
  });

  it('an absolute path inside the data root is accepted', async () => {
    assert.equal(await resolveLocalPath(path.join(dataRoot, 'inside', 'x'), roots()), path.join(dataRoot, 'inside', 'x'));
  });

  it('a legacy folder and paths inside it are accepted', async () => {
    assert.equal(await resolveLocalPath(legacy, roots()), legacy);
    assert.equal(await resolveLocalPath(path.join(legacy, 'sub'), roots()), path.join(legacy, 'sub'));
  });

  it('a symlink that stays inside the data root resolves to its target', async () => {
    assert.equal(await resolveLocalPath('alias/x', roots()), path.join(dataRoot, 'inside', 'x'));
  });

  it('the filesystem root is refused', async () => {
    await refused('/', /filesystem root/);
  });

  it('/etc is refused', async () => {
    await refused('/etc', /outside the allowed folders/);
    await refused('/etc/passwd', /outside the allowed folders/);
  });

  it('a .. escape is refused', async () => {
    await refused('../elsewhere', /outside the allowed folders/);
    await refused('inside/../../elsewhere', /outside the allowed folders/);
    await refused(path.join(dataRoot, '..', 'elsewhere'), /outside the allowed folders/);
    await refused(`${legacy}/../elsewhere`, /outside the allowed folders/);
  });

  it('a path with a NUL byte is refused', async () => {
    await refused('inside\0/x', /NUL byte/);
  });

  it('an empty path is refused', async () => {
    await refused('', /empty/);
  });

  it('the data root itself is refused, since it would be purged', async () => {
    await refused(dataRoot, /data root itself/);
    await refused('.', /data root itself/);
    await refused('inside/..', /data root itself/);
  });

  it('a symlink to the data root itself is refused', async () => {
    await refused('self', /symlink.*data root itself/);
  });

  it('a symlink that leads outside the data root is refused', async () => {
    await refused('escape', /symlink to .*elsewhere/);
    await refused('escape/new/dir', /symlink to .*elsewhere/);
  });

  it('a symlink inside a legacy folder that leads outside is refused', async () => {
    await refused(path.join(legacy, 'etc-link'), /symlink/);
  });

  it('a dangling symlink is refused, since creating the folder would follow it', async () => {
    await refused('dangling', /symlink that cannot be resolved/);
    await refused('dangling/x', /symlink that cannot be resolved/);
  });

  it('a legacy folder set to / does not open the whole filesystem', async () => {
    await assert.rejects(resolveLocalPath('/etc', { dataRoot, legacyDirs: ['/'] }), PathNotAllowedError);
  });

  it('the data root is refused even when a legacy folder names it', async () => {
    await assert.rejects(resolveLocalPath(dataRoot, { dataRoot, legacyDirs: [dataRoot] }), /data root itself/);
  });
});
