// Kelpie's `compression: true` (a job definition field): every file is uploaded gzipped, under its
// key with `.gz` appended, and an object whose key ends in `.gz` is gunzipped on download and
// written without the suffix. The compressed or decompressed bytes go through a temporary file
// next to their source or destination (so a checkpoint of several GiB never has to fit in memory
// or in /tmp), whose name the folder scans skip.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { constants, createGunzip, createGzip } from 'node:zlib';

export const GZIP_SUFFIX = '.gz';

/** The key a file's gzipped upload is stored under. */
export function gzipKey(key: string): string {
  return key + GZIP_SUFFIX;
}

/** A temp file's path next to `file`, named as the folder scans skip (`.name.drover-dl-<hex>`). */
export function tempNextTo(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.drover-dl-${randomBytes(6).toString('hex')}`);
}

/**
 * Writes `src` gzipped to a new temp file next to it and returns the temp file's path (the
 * caller removes it). zlib's default level (6): Kelpie uses 9, which costs several times the CPU
 * for a few per cent of size; any gzip reader reads both.
 */
export async function gzipToTemp(src: string, signal?: AbortSignal): Promise<string> {
  const dest = tempNextTo(src);
  try {
    await pipeline(createReadStream(src), createGzip({ level: constants.Z_DEFAULT_COMPRESSION }), createWriteStream(dest), { signal });
    return dest;
  } catch (err) {
    await unlink(dest).catch(() => {});
    throw err;
  }
}

/** Gunzips `src` into `dest`, atomically (temp file, then rename); a corrupt stream leaves `dest` as it was. */
export async function gunzipInto(src: string, dest: string, signal?: AbortSignal): Promise<void> {
  const tmp = tempNextTo(dest);
  try {
    await pipeline(createReadStream(src), createGunzip(), createWriteStream(tmp), { signal });
    await rename(tmp, dest);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
