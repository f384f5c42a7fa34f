/**
 * @drover/storage — where Drover workers keep job data (the design's "Worker data sync").
 *
 * - ObjectStore: one interface (list, head, getStream with ranges, put, delete) with typed errors
 *   (NotFoundError, InvalidKeyError, InvalidRangeError, IntegrityError, RetryLimitError).
 * - S3Store: any S3-protocol service via AWS SDK v3 (AWS, R2, MinIO; `forcePathStyle` option).
 * - LocalStore: a directory per bucket; keys confined to it; atomic writes (temp file + rename).
 * - uploadFile / downloadFile: multipart uploads in 10 MiB parts, 8 in flight; parallel ranged
 *   downloads into a temp file renamed into place; retries with exponential backoff and jitter on
 *   throttling, 5xx, timeouts and resets; size and MD5/ETag verified; progress callbacks.
 */
export * from './object-store.js';
export { LocalStore } from './local-store.js';
export { S3Store, type S3StoreOptions } from './s3-store.js';
export * from './transfer.js';
export * from './folder.js';
export * from './open-store.js';
export * from './gzip.js';
