// The single-file `drover-worker` (scripts/build-worker-binary.mjs) embeds the files that the
// transfer engine's worker threads load from disk: piscina's thread script (worker.js) and
// @drover/storage's tasks (pool-worker.js). This module runs before any other in the bundle: it
// unpacks them into a private folder and points the bundle's `import.meta.url` and `__dirname`
// (rewritten at build time to the globals below) there. If that fails (no writable temp folder),
// the globals point at a folder that does not exist, the engine finds no pool-worker.js and runs
// its transfers on the main thread (hasWorkers() is false), and one line on stderr says so.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { getAsset, isSea } from 'node:sea';

/** The embedded files, in the order they are written: pool-worker.js last, so its presence means all are there. */
export const BUNDLE_FILES = ['package.json', 'worker.js', 'pool-worker.js'] as const;

declare global {
  var __droverBundleDir: string;
  var __droverBundleUrl: string;
}

/** Where the files are: unpacked from the executable, or (a bundle run by node) beside the bundle. */
function bundleDir(): string {
  if (!isSea()) return path.dirname(path.resolve(process.argv[1] ?? '.'));
  const assets = BUNDLE_FILES.map((name) => [name, Buffer.from(getAsset(name))] as const);
  const hash = createHash('sha256');
  for (const [, data] of assets) hash.update(data);
  // One folder per user (0700; a folder another user made, or a symlink, is not used) and per build.
  const uid = process.getuid?.() ?? 0;
  const parent = path.join(tmpdir(), `drover-worker-${uid}`);
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const st = lstatSync(parent);
  if (!st.isDirectory() || st.uid !== uid) throw new Error(`${parent} is not a folder of this user`);
  if ((st.mode & 0o077) !== 0) chmodSync(parent, 0o700);
  const dir = path.join(parent, hash.digest('hex').slice(0, 16));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [name, data] of assets) {
    const file = path.join(dir, name);
    let same = false;
    try {
      same = readFileSync(file).equals(data);
    } catch {
      // not there yet
    }
    if (same) continue;
    // Write and rename: another worker on this machine may be reading or writing the same file.
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, file);
  }
  return dir;
}

function unpack(): string {
  try {
    return bundleDir();
  } catch (err) {
    process.stderr.write(
      `drover-worker: transfer threads unavailable (cannot unpack their files: ${err instanceof Error ? err.message : String(err)}); transfers run on the main thread\n`,
    );
    return path.join(tmpdir(), `drover-worker-unavailable-${randomBytes(8).toString('hex')}`);
  }
}

const dir = unpack();
globalThis.__droverBundleDir = dir;
// A module's own URL, as import.meta.url would be for a file in that folder.
globalThis.__droverBundleUrl = pathToFileURL(path.join(dir, 'index.js')).href;
