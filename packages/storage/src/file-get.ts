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
   * Whole objects: if the object carries Drover's CRC32 metadata (checksum.ts), check the bytes
   * against it instead of `md5`.
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

/**
 * Writes the object's bytes (or a range of them) to `file`, checks their count and (whole objects)
 * their CRC32 or MD5, fsyncs and renames the file as asked, and resolves with what the bytes were
 * checked against. Throws the store's usual errors (NotFoundError, ChangedError, InvalidRangeError,
 * retryable network errors...) and IntegrityError for a body of the wrong length or checksum.
 */
export type GetToFile = (bucket: string, key: string, file: string, opts: GetToFileOptions) => Promise<'crc32' | 'md5' | undefined>;

export interface WithGetToFile {
  readonly [GET_TO_FILE]?: GetToFile;
}
