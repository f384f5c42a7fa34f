// Remote paths of the storage commands, parsed in one place: `s3://bucket/prefix` on any storage,
// and with local storage also `bucket/prefix` or a filesystem path inside the storage folder.
// A path names either one object or a "folder": every object whose key starts with `prefix/`.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError } from './output.js';

export interface RemotePath {
  /** '' only for a path naming a whole local storage folder (see `allowStoreRoot`). */
  bucket: string;
  /** '' for the whole bucket; a trailing `/` means "the folder", never one object. */
  key: string;
}

export interface RemoteContext {
  kind: 's3' | 'local';
  /** The local storage folder (absolute), when kind is local. */
  root?: string;
  /** Where relative filesystem paths start from; default process.cwd(). */
  cwd?: string;
}

/** Exit code of a remote path (or another argument) that cannot be used as given. */
export const USAGE_EXIT = 2;

const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SHAPE = 'remote path must look like s3://bucket/prefix';

function fail(message: string): never {
  throw new CliError(message, USAGE_EXIT);
}

function checkBucket(bucket: string, text: string): void {
  if (bucket === '') fail(`${SHAPE}, got ${JSON.stringify(text)} (no bucket)`);
  if (!BUCKET.test(bucket) || bucket.length > 255) {
    fail(`bucket ${JSON.stringify(bucket)} in ${JSON.stringify(text)} is not a valid name: use letters, digits, ".", "-" and "_", starting with a letter or digit`);
  }
}

function checkKey(key: string, text: string): void {
  if (key.includes('\0')) fail(`remote path ${JSON.stringify(text)} contains a NUL byte`);
  if (key === '') return;
  const segments = (key.endsWith('/') ? key.slice(0, -1) : key).split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    fail(`remote path ${JSON.stringify(text)} has an empty, "." or ".." segment in its key ${JSON.stringify(key)}`);
  }
}

/** `bucket` or `bucket/key...`, the part after `s3://`. */
function parseBucketAndKey(body: string, text: string): RemotePath {
  const slash = body.indexOf('/');
  const bucket = slash < 0 ? body : body.slice(0, slash);
  const key = slash < 0 ? '' : body.slice(slash + 1);
  checkBucket(bucket, text);
  checkKey(key, text);
  return { bucket, key };
}

function isFilesystemPath(text: string): boolean {
  return path.isAbsolute(text) || text.startsWith('.') || text.startsWith('~') || text.startsWith('file:');
}

/** A filesystem path inside the local storage folder: its first segment is the bucket. */
function parseLocalFile(text: string, root: string, cwd: string, allowStoreRoot: boolean): RemotePath {
  if (text.startsWith('~')) fail(`remote path ${JSON.stringify(text)}: "~" is not expanded here; give the full path`);
  let abs: string;
  if (text.startsWith('file:')) {
    try {
      abs = fileURLToPath(text);
    } catch (err) {
      fail(`remote path ${JSON.stringify(text)} is not a file URL: ${(err as Error).message}`);
    }
  } else {
    abs = path.resolve(cwd, text);
  }
  const rel = path.relative(root, abs);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    fail(`remote path ${JSON.stringify(text)} is not inside the local storage folder ${root}`);
  }
  if (rel === '') {
    if (allowStoreRoot) return { bucket: '', key: '' };
    fail(`remote path ${JSON.stringify(text)} is the storage folder itself; name a bucket inside it (${root}${path.sep}<bucket>)`);
  }
  const [bucket = '', ...rest] = rel.split(path.sep);
  const trailing = rest.length > 0 && /[/\\]$/.test(text) ? '/' : '';
  const key = rest.join('/') + trailing;
  checkBucket(bucket, text);
  checkKey(key, text);
  return { bucket, key };
}

/**
 * Parses a remote path. With S3 storage only `s3://bucket/prefix`; with local storage also
 * `bucket/prefix` and filesystem paths (absolute, `./`, `../`, `file://`) inside the storage folder.
 * Bad input is a CliError (exit 2) naming what is wrong.
 */
export function parseRemote(text: string, ctx: RemoteContext, opts: { allowStoreRoot?: boolean } = {}): RemotePath {
  if (text === '') fail(`${SHAPE}, got an empty string`);
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text);
  if (scheme && scheme[1]?.toLowerCase() === 's3') return parseBucketAndKey(text.slice(scheme[0].length), text);
  if (ctx.kind === 'local' && ctx.root !== undefined) {
    if (isFilesystemPath(text)) return parseLocalFile(text, ctx.root, ctx.cwd ?? process.cwd(), opts.allowStoreRoot ?? false);
    if (!scheme) return parseBucketAndKey(text, text);
    fail(`${SHAPE}, bucket/prefix or a path inside ${ctx.root}, got ${JSON.stringify(text)}`);
  }
  if (!scheme && !text.includes('://')) fail(`${SHAPE}, got ${JSON.stringify(text)} (bucket/prefix without s3:// works only with local storage)`);
  fail(`${SHAPE}, got ${JSON.stringify(text)}`);
}

/** The key prefix of the folder a path names: '' for the whole bucket, else the key ending in `/`. */
export function folderPrefix(key: string): string {
  return key === '' || key.endsWith('/') ? key : `${key}/`;
}

/** Whether an object key is selected by a path's key: the object named, or anything in its folder. */
export function selects(key: string, objectKey: string): boolean {
  if (key === '' || key.endsWith('/')) return objectKey.startsWith(key);
  return objectKey === key || objectKey.startsWith(`${key}/`);
}

/** How a remote path is shown: `s3://bucket/key` on S3, `bucket/key` on local storage. */
export function formatRemote(kind: 's3' | 'local', bucket: string, key = ''): string {
  if (bucket === '') return '(all buckets)';
  return kind === 's3' ? `s3://${bucket}/${key}` : `${bucket}/${key}`;
}
