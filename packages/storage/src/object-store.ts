// The one object-store interface Drover's workers sync job data through, and its typed errors.
// Two backends implement it: S3Store (any S3-protocol service: AWS, R2, MinIO) and LocalStore
// (a directory per bucket). The transfer engine (transfer.ts) adds multipart, parallel ranges,
// retries and verification on top.
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** The object's ETag without quotes, when the backend has one. */
  etag?: string;
  lastModified: Date;
}

/** An inclusive byte range, as in HTTP `Range: bytes=start-end` and fs.createReadStream. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface GetOptions {
  range?: ByteRange;
  /** Only if the object still has this ETag (unquoted); else ChangedError. Ignored by backends without ETags. */
  ifMatch?: string;
}

/** A body to store: bytes in memory, a stream, or a local file named by path. */
export type PutBody = Buffer | Uint8Array | Readable | { file: string };

export interface PutOptions {
  /** Expected length in bytes; the write fails (and leaves nothing behind) if the body differs. */
  size?: number;
  /** Base64 MD5 of the body; the backend verifies it when it can (S3 Content-MD5). */
  md5?: string;
  contentType?: string;
  /** User metadata (S3 `x-amz-meta-*`); names lower-case. Stores without it (LocalStore) ignore it. */
  metadata?: Record<string, string>;
}

export interface CompletedPart {
  partNumber: number;
  etag: string;
}

/** S3-style multipart uploads; backends without them (LocalStore) leave `multipart` undefined. */
export interface MultipartApi {
  /** Starts an upload; `metadata` as in PutOptions. */
  create(bucket: string, key: string, opts?: { contentType?: string; metadata?: Record<string, string> }): Promise<string>;
  /** Uploads one part (numbered from 1) and returns its ETag. */
  uploadPart(bucket: string, key: string, uploadId: string, partNumber: number, body: Buffer, md5?: string): Promise<string>;
  complete(bucket: string, key: string, uploadId: string, parts: CompletedPart[]): Promise<{ etag?: string }>;
  abort(bucket: string, key: string, uploadId: string): Promise<void>;
}

export interface ObjectStore {
  /** Every object whose key starts with `prefix`, in key order. */
  list(bucket: string, prefix?: string): AsyncIterable<ObjectInfo>;
  /** Throws NotFoundError when the object does not exist. */
  head(bucket: string, key: string): Promise<ObjectInfo>;
  /** The object's bytes (or the given range of them). Throws NotFoundError / InvalidRangeError. */
  getStream(bucket: string, key: string, opts?: GetOptions): Promise<Readable>;
  /** Stores the whole body under `key`, replacing any previous object. Returns the new ETag if known. */
  put(bucket: string, key: string, body: PutBody, opts?: PutOptions): Promise<{ etag?: string }>;
  /** Removes the object; removing a missing object is not an error (as in S3). */
  delete(bucket: string, key: string): Promise<void>;
  readonly multipart?: MultipartApi;
}

export type StorageErrorCode = 'NotFound' | 'InvalidKey' | 'InvalidRange' | 'Integrity' | 'Changed' | 'RetryLimit';

export class StorageError extends Error {
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StorageError';
  }
}

export class NotFoundError extends StorageError {
  constructor(
    readonly bucket: string,
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super('NotFound', `object not found: ${bucket}/${key}`, options);
    this.name = 'NotFoundError';
  }
}

/** A bucket name or key that the backend refuses (escapes its root, NUL bytes, empty segments...). */
export class InvalidKeyError extends StorageError {
  constructor(message: string) {
    super('InvalidKey', message);
    this.name = 'InvalidKeyError';
  }
}

export class InvalidRangeError extends StorageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('InvalidRange', message, options);
    this.name = 'InvalidRangeError';
  }
}

/** The object was replaced while it was being read (its ETag no longer matches). */
export class ChangedError extends StorageError {
  constructor(
    readonly bucket: string,
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super('Changed', `object changed while being read: ${bucket}/${key}`, options);
    this.name = 'ChangedError';
  }
}

/** Size or checksum of transferred data did not match what was expected. Retryable. */
export class IntegrityError extends StorageError {
  constructor(message: string) {
    super('Integrity', message);
    this.name = 'IntegrityError';
  }
}

/** A transfer step kept failing with retryable errors until the attempt limit; `cause` is the last error. */
export class RetryLimitError extends StorageError {
  constructor(
    readonly operation: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    super('RetryLimit', `${operation} failed after ${attempts} attempts: ${errorMessage(cause)}`, { cause });
    this.name = 'RetryLimitError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}

const RETRYABLE_CODES = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_SOCKET']);
const RETRYABLE_NAMES = new Set([
  'TimeoutError', 'RequestTimeout', 'RequestTimeTooSkewed', 'SlowDown', 'Throttling', 'ThrottlingException',
  'TooManyRequestsException', 'RequestLimitExceeded', 'InternalError', 'ServiceUnavailable',
]);

/** Throttling, 5xx, timeouts, connection resets and integrity failures are worth another try. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof IntegrityError) return true;
  if (err instanceof StorageError) return false;
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status === 429 || status >= 500)) return true;
  if (e.$retryable) return true;
  if (e.code && RETRYABLE_CODES.has(e.code)) return true;
  if (e.name && RETRYABLE_NAMES.has(e.name)) return true;
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err && isRetryable(cause);
}
