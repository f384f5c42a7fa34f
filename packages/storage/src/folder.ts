// Whole folders to and from a bucket prefix: what a worker's before- and after-sync do, and what
// rclone's `copy` does. Files go `fileConcurrency` at a time, each through uploadFile/downloadFile
// (so large ones are still multipart / ranged). A key is `prefix` + the file's path relative to the
// folder, written with `/`.
import { lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { GZIP_SUFFIX, gunzipInto, gzipKey, gzipToTemp, tempNextTo } from './gzip.js';
import { InvalidKeyError, type ObjectInfo, type ObjectStore } from './object-store.js';
import { downloadListedObject, uploadFile, withRetry, type TransferOptions, type TransferResult } from './transfer.js';

export interface FolderTransferOptions extends Omit<TransferOptions, 'onProgress'> {
  /** Files transferred at once (default 16). */
  fileConcurrency?: number;
  /** Only paths (relative, `/`-separated) for which this returns true are transferred. */
  filter?: (relativePath: string) => boolean;
  onFileStart?: (file: FolderFile) => void;
  onFileDone?: (file: FolderFile, result: TransferResult) => void;
  /** Bytes transferred so far across all files, and the total of the files selected. */
  onProgress?: (p: { bytes: number; total: number; files: number; totalFiles: number }) => void;
  /**
   * Kelpie's `compression`: upload each file gzipped under `<key>.gz`; download objects whose key
   * ends in `.gz` gunzipped, without the suffix (see gzip.ts).
   */
  gzip?: boolean;
}

export interface FolderFile {
  /** Path relative to the folder, with `/`. */
  relativePath: string;
  /** Absolute local path. */
  localPath: string;
  key: string;
}

export interface FolderResult {
  files: number;
  bytes: number;
}

/** `prefix` and a relative path joined into a key; a non-empty prefix without a trailing `/` gets one. */
export function keyFor(prefix: string, relativePath: string): string {
  if (prefix === '' || prefix.endsWith('/')) return prefix + relativePath;
  return `${prefix}/${relativePath}`;
}

/**
 * Every regular file below `dir`, as sorted `/`-separated relative paths. Symlinks are not followed
 * (a link could point anywhere on the node), and files whose name starts with `.drover-` or that
 * are transfer temp files (`.name.drover-dl-*`) are skipped. A missing folder has no files.
 */
export async function listLocalFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    for (const e of entries) {
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(path.join(abs, e.name), childRel);
      else if (e.isFile() && !isTempName(e.name)) out.push(childRel);
    }
  };
  await walk(dir, '');
  return out.sort();
}

export function isTempName(name: string): boolean {
  return name.startsWith('.drover-') || /^\..+\.drover-dl-[0-9a-f]+$/.test(name);
}

/** Runs tasks with at most `limit` in flight; every task runs, the first failure is thrown at the end. */
async function eachLimited<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  let firstError: unknown;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      signal?.throwIfAborted();
      const item = items[next++] as T;
      try {
        await task(item);
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failed) throw firstError;
}

function folderProgress(total: number, totalFiles: number, onProgress: FolderTransferOptions['onProgress']) {
  let bytes = 0;
  let files = 0;
  return {
    perFile(): (p: { bytes: number }) => void {
      let seen = 0;
      return (p) => {
        bytes += p.bytes - seen;
        seen = p.bytes;
        onProgress?.({ bytes, total, files, totalFiles });
      };
    },
    fileDone(): void {
      files++;
      onProgress?.({ bytes, total, files, totalFiles });
    },
  };
}

/** Uploads every (selected) file below `localDir` to bucket/prefix. */
export async function uploadFolder(store: ObjectStore, localDir: string, bucket: string, prefix: string, opts: FolderTransferOptions = {}): Promise<FolderResult> {
  const rels = (await listLocalFiles(localDir)).filter((r) => opts.filter?.(r) ?? true);
  const sizes = new Map<string, number>();
  for (const r of rels) sizes.set(r, (await lstat(path.join(localDir, r))).size);
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  const progress = folderProgress(total, rels.length, opts.onProgress);
  const { fileConcurrency, filter: _f, onFileStart, onFileDone, onProgress: _p, gzip, ...transferOpts } = opts;
  let bytes = 0;
  await eachLimited(rels, fileConcurrency ?? 16, async (rel) => {
    const key = keyFor(prefix, rel);
    const file: FolderFile = { relativePath: rel, localPath: path.join(localDir, rel), key: gzip ? gzipKey(key) : key };
    onFileStart?.(file);
    const result = gzip
      ? await uploadGzipped(store, file.localPath, bucket, file.key, { ...transferOpts, onProgress: progress.perFile() })
      : await uploadFile(store, file.localPath, bucket, file.key, { ...transferOpts, onProgress: progress.perFile() });
    bytes += result.size;
    progress.fileDone();
    onFileDone?.(file, result);
  }, opts.signal);
  return { files: rels.length, bytes };
}

/** Uploads `localPath` gzipped to bucket/key (the caller gives the `.gz` key). */
export async function uploadGzipped(store: ObjectStore, localPath: string, bucket: string, key: string, opts: TransferOptions = {}): Promise<TransferResult> {
  const packed = await gzipToTemp(localPath, opts.signal);
  try {
    return await uploadFile(store, packed, bucket, key, { contentType: 'application/gzip', ...opts });
  } finally {
    await unlink(packed).catch(() => {});
  }
}

/**
 * The relative path an object key maps to below `prefix`, or undefined for keys that are folder
 * markers. Throws InvalidKeyError for keys that would land outside the folder (`..`, absolute).
 */
export function relativePathFor(prefix: string, key: string): string | undefined {
  let rel = key.slice(prefix.length);
  while (rel.startsWith('/')) rel = rel.slice(1);
  if (rel === '' || rel.endsWith('/')) return undefined;
  const parts = rel.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\0'))) {
    throw new InvalidKeyError(`object key ${JSON.stringify(key)} does not map to a file below the folder`);
  }
  return rel;
}

/** Downloads every (selected) object under bucket/prefix into `localDir`, creating folders as needed. */
export async function downloadPrefix(store: ObjectStore, bucket: string, prefix: string, localDir: string, opts: FolderTransferOptions = {}): Promise<FolderResult> {
  // The listing is retried like every other request (from its first page): a single 503 on it
  // used to fail a job's before-sync, and three of those a job (found by `npm run chaos`).
  const wanted = await withRetry(`list ${bucket}/${prefix}`, async () => {
    const found: { rel: string; key: string; size: number; object: ObjectInfo }[] = [];
    for await (const o of store.list(bucket, prefix)) {
      const key = relativePathFor(prefix, o.key);
      if (key === undefined) continue;
      // A gzipped object is the file without its suffix: that is the path the filter judges.
      const rel = opts.gzip && key.endsWith(GZIP_SUFFIX) ? key.slice(0, -GZIP_SUFFIX.length) : key;
      if (rel === '' || rel.endsWith('/') || !(opts.filter?.(rel) ?? true)) continue;
      found.push({ rel, key: o.key, size: o.size, object: o });
    }
    return found;
  }, opts.retry, opts.signal);
  const total = wanted.reduce((a, w) => a + w.size, 0);
  const progress = folderProgress(total, wanted.length, opts.onProgress);
  const { fileConcurrency, filter: _f, onFileStart, onFileDone, onProgress: _p, gzip, ...transfer } = opts;
  await mkdir(localDir, { recursive: true });
  // Each sub-folder is created once, not once per file in it.
  const folders = new Map<string, Promise<unknown>>([[localDir, Promise.resolve()]]);
  let bytes = 0;
  await eachLimited(wanted, fileConcurrency ?? 16, async (w) => {
    const file: FolderFile = { relativePath: w.rel, localPath: path.join(localDir, ...w.rel.split('/')), key: w.key };
    onFileStart?.(file);
    const folder = path.dirname(file.localPath);
    let made = folders.get(folder);
    if (!made) {
      made = mkdir(folder, { recursive: true });
      folders.set(folder, made);
    }
    await made;
    // The listing already gave size and ETag: no HEAD per file (a changed object is looked up again).
    let result: TransferResult;
    if (gzip && w.key.endsWith(GZIP_SUFFIX)) {
      const packed = tempNextTo(file.localPath);
      try {
        result = await downloadListedObject(store, bucket, w.object, packed, { ...transfer, onProgress: progress.perFile() });
        await gunzipInto(packed, file.localPath, opts.signal);
      } finally {
        await unlink(packed).catch(() => {});
      }
    } else {
      result = await downloadListedObject(store, bucket, w.object, file.localPath, { ...transfer, onProgress: progress.perFile() });
    }
    bytes += result.size;
    progress.fileDone();
    onFileDone?.(file, result);
  }, opts.signal);
  return { files: wanted.length, bytes };
}
