// An internal capability (not exported from the package): a store that can GET a whole object
// straight into a local file off the main thread. S3Store has it on its lean request path; the
// transfer engine uses it for single-request downloads and falls back to getStream otherwise.

export const GET_TO_FILE = Symbol('drover.getToFile');

export interface GetToFileOptions {
  /** Exact number of bytes expected: the object's size, or the range's length. */
  length: number;
  /** A range of the object, written at its offset into the existing `file`; else the whole object. */
  range?: { start: number; end: number };
  /** Only if the object still has this ETag (unquoted); else ChangedError. */
  ifMatch?: string;
  /** Whole objects: the expected MD5 (hex, the ETag); the bytes are hashed and must match. */
  md5?: string;
  /**
   * If the object carries Drover's CRC32 metadata (checksum.ts): a whole object's bytes are checked
   * against it instead of `md5`; a range's CRC32 is answered with it (GetToFileResult.rangeCrc32).
   */
  crc32?: boolean;
  /** fsync the file afterwards (the transfer engine's `durable` option); default true for a whole object, false for a range. */
  sync?: boolean;
  /**
   * Whole objects: once the bytes are complete, check out and are fsync'd (as
   * asked), rename `file` to this path. Done in the thread that wrote the file: one hand-off to
   * the main thread's file-system pool fewer per file.
   */
  renameTo?: string;
}

export interface GetToFileResult {
  /** What a whole object's bytes were checked against (nothing for a range, or nothing to check with). */
  verified: 'crc32' | 'md5' | undefined;
  /** A range of an object with CRC32 metadata, asked with `crc32`: the range's CRC32 and the object's. */
  rangeCrc32?: { bytes: number; object: number };
}

/**
 * Writes the object's bytes (or a range of them) to `file`, checks their count and (whole objects)
 * their CRC32 or MD5, fsyncs and renames the file as asked, and resolves with what the bytes were
 * checked against. Throws the store's usual errors (NotFoundError, ChangedError, InvalidRangeError,
 * retryable network errors...) and IntegrityError for a body of the wrong length or checksum.
 */
export type GetToFile = (bucket: string, key: string, file: string, opts: GetToFileOptions) => Promise<GetToFileResult>;

export interface WithGetToFile {
  readonly [GET_TO_FILE]?: GetToFile;
}
