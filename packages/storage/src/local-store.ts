// LocalStore: the ObjectStore on a local directory. Each bucket is a folder under `root`, each key
// a file path inside it. Keys are confined to their bucket (no `..`, absolute paths, NUL bytes or
// empty segments), and every write goes to a temp file in the target's own directory that is
// renamed into place only once it is complete, so a reader never sees a partial object.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, realpath, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  IntegrityError, InvalidKeyError, InvalidRangeError, NotFoundError,
  type GetOptions, type ObjectInfo, type ObjectStore, type PutBody, type PutOptions,
} from './object-store.js';

const TEMP_MARK = '.drover-tmp-';

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === code;
}

/** realpath of `p`, or of its nearest existing ancestor. */
async function nearestReal(p: string): Promise<string> {
  for (let cur = p; ; cur = dirname(cur)) {
    try {
      return await realpath(cur);
    } catch (err) {
      if (!(isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) || dirname(cur) === cur) throw err;
    }
  }
}

export class LocalStore implements ObjectStore {
  readonly root: string;
  readonly multipart = undefined;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private bucketDir(bucket: string): string {
    if (!bucket || bucket === '.' || bucket === '..' || /[/\\\0]/.test(bucket)) {
      throw new InvalidKeyError(`invalid bucket name: ${JSON.stringify(bucket)}`);
    }
    return join(this.root, bucket);
  }

  /** The file path for bucket/key, refusing any key that could leave the bucket's folder. */
  pathOf(bucket: string, key: string): string {
    const dir = this.bucketDir(bucket);
    if (!key) throw new InvalidKeyError('empty key');
    if (key.includes('\0')) throw new InvalidKeyError(`key contains a NUL byte: ${JSON.stringify(key)}`);
    if (key.startsWith('/') || key.includes('\\')) throw new InvalidKeyError(`key must be a relative path with / separators: ${JSON.stringify(key)}`);
    for (const segment of key.split('/')) {
      if (segment === '' || segment === '.' || segment === '..') {
        throw new InvalidKeyError(`key has an empty, "." or ".." segment: ${JSON.stringify(key)}`);
      }
      if (segment.startsWith(TEMP_MARK)) throw new InvalidKeyError(`key uses the reserved ${TEMP_MARK} prefix: ${JSON.stringify(key)}`);
    }
    const path = resolve(dir, key);
    if (!path.startsWith(dir + sep)) throw new InvalidKeyError(`key escapes its bucket: ${JSON.stringify(key)}`);
    return path;
  }

  /**
   * Refuses a key that reaches outside its bucket through a symlink inside it: the nearest
   * existing ancestor of the target must resolve to a place under the bucket folder's real path.
   */
  private async confined(bucket: string, key: string): Promise<string> {
    const path = this.pathOf(bucket, key);
    const top = await nearestReal(this.bucketDir(bucket));
    const real = await nearestReal(path);
    if (real !== top && !real.startsWith(top + sep)) {
      throw new InvalidKeyError(`key leads outside its bucket through a symlink: ${JSON.stringify(key)}`);
    }
    return path;
  }

  async *list(bucket: string, prefix = ''): AsyncIterable<ObjectInfo> {
    const dir = this.bucketDir(bucket);
    const found: ObjectInfo[] = [];
    const walk = async (abs: string, rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(abs, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.name.startsWith(TEMP_MARK)) continue;
        const key = rel + entry.name;
        if (entry.isDirectory()) {
          // Only descend where keys below could still match the prefix.
          const sub = key + '/';
          if (sub.startsWith(prefix) || prefix.startsWith(sub)) await walk(join(abs, entry.name), sub);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          try {
            const st = await stat(join(abs, entry.name));
            found.push({ key, size: st.size, lastModified: st.mtime });
          } catch (err) {
            if (!isErrno(err, 'ENOENT')) throw err; // deleted while listing
          }
        }
      }
    };
    await walk(dir, '');
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* found;
  }

  async head(bucket: string, key: string): Promise<ObjectInfo> {
    const path = await this.confined(bucket, key);
    try {
      const st = await stat(path);
      if (!st.isFile()) throw new NotFoundError(bucket, key);
      return { key, size: st.size, lastModified: st.mtime };
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) throw new NotFoundError(bucket, key, { cause: err });
      throw err;
    }
  }

  async getStream(bucket: string, key: string, opts: GetOptions = {}): Promise<Readable> {
    const info = await this.head(bucket, key);
    const path = this.pathOf(bucket, key);
    const { range } = opts;
    if (!range) return createReadStream(path);
    if (range.start < 0 || range.end < range.start || range.start >= info.size) {
      throw new InvalidRangeError(`range ${range.start}-${range.end} is not satisfiable for ${bucket}/${key} (${info.size} bytes)`);
    }
    return createReadStream(path, { start: range.start, end: Math.min(range.end, info.size - 1) });
  }

  async put(bucket: string, key: string, body: PutBody, opts: PutOptions = {}): Promise<{ etag?: string }> {
    const path = await this.confined(bucket, key);
    const dir = dirname(path);
    await mkdir(dir, { recursive: true });
    const temp = join(dir, `${TEMP_MARK}${randomBytes(6).toString('hex')}`);
    const hash = createHash('md5');
    let bytes = 0;
    const source: Readable =
      body instanceof Readable ? body
      : Buffer.isBuffer(body) || body instanceof Uint8Array ? Readable.from([body])
      : createReadStream(body.file);
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, counter, createWriteStream(temp, { flags: 'wx' }));
      if (opts.size !== undefined && bytes !== opts.size) {
        throw new IntegrityError(`wrote ${bytes} bytes to ${bucket}/${key}, expected ${opts.size}`);
      }
      const digest = hash.digest();
      if (opts.md5 !== undefined && digest.toString('base64') !== opts.md5) {
        throw new IntegrityError(`MD5 of ${bucket}/${key} does not match the expected one`);
      }
      const fh = await open(temp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(temp, path);
      return { etag: digest.toString('hex') };
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    const path = await this.confined(bucket, key);
    try {
      await unlink(path);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
      throw err;
    }
    // Drop folders the delete left empty, up to (not including) the bucket folder.
    const top = this.bucketDir(bucket);
    for (let d = dirname(path); d.startsWith(top + sep); d = dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        break;
      }
    }
  }
}
