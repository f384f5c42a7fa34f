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
  /** Whole objects: the expected MD5 (hex); the bytes are hashed, and fsync'd only when they match. */
  md5?: string;
  /** fsync the file afterwards (the transfer engine's `durable` option); default true for a whole object, false for a range. */
  sync?: boolean;
}

/**
 * Writes the object's bytes (or a range of them) to `file`, checks their count, fsyncs the file
 * as asked and resolves with the bytes' MD5 (hex) when `md5` was given. Throws the store's usual
 * errors (NotFoundError, ChangedError, InvalidRangeError, retryable network errors...) and
 * IntegrityError for a body of the wrong length.
 */
export type GetToFile = (bucket: string, key: string, file: string, opts: GetToFileOptions) => Promise<string | undefined>;

export interface WithGetToFile {
  readonly [GET_TO_FILE]?: GetToFile;
}
