// One place that turns a worker's storage setting into an ObjectStore: `s3` (any S3-protocol
// service; credentials from the options or the AWS SDK's own chain) or `file:///abs/dir`, where
// each bucket is a folder of that directory.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalStore } from './local-store.js';
import type { ObjectStore } from './object-store.js';
import { S3Store } from './s3-store.js';

export interface StoreSettings {
  /** `s3` (default) or a `file:///absolute/dir` URL. */
  storage?: string;
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Bucket in the path; defaults to true when an endpoint is given (R2, MinIO), false for AWS. */
  forcePathStyle?: boolean;
}

export class StoreSettingError extends Error {
  override name = 'StoreSettingError';
}

/** Describes the store for logs, without secrets. */
export function describeStore(s: StoreSettings): string {
  const kind = s.storage ?? 's3';
  if (kind !== 's3') return kind;
  return `s3 ${s.endpoint ?? '(AWS default endpoint)'} region ${s.region ?? 'auto'}`;
}

export function openStore(s: StoreSettings): ObjectStore {
  const kind = (s.storage ?? 's3').trim();
  if (kind === 's3') {
    if ((s.accessKeyId === undefined) !== (s.secretAccessKey === undefined)) {
      throw new StoreSettingError('set both the access key id and the secret access key, or neither (to use the AWS SDK\'s credential chain)');
    }
    if (s.endpoint !== undefined) {
      let u: URL;
      try {
        u = new URL(s.endpoint);
      } catch {
        throw new StoreSettingError(`the S3 endpoint ${JSON.stringify(s.endpoint)} is not a URL (expected e.g. https://<account>.r2.cloudflarestorage.com)`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new StoreSettingError(`the S3 endpoint must be http(s), got ${u.protocol}`);
    }
    return new S3Store({
      endpoint: s.endpoint,
      region: s.region,
      credentials: s.accessKeyId !== undefined && s.secretAccessKey !== undefined ? { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey } : undefined,
      forcePathStyle: s.forcePathStyle ?? s.endpoint !== undefined,
    });
  }
  if (kind.startsWith('file:')) {
    let dir: string;
    try {
      dir = fileURLToPath(kind);
    } catch (err) {
      throw new StoreSettingError(`storage ${JSON.stringify(kind)} is not a file URL: ${(err as Error).message}`);
    }
    if (!path.isAbsolute(dir)) throw new StoreSettingError(`storage ${JSON.stringify(kind)} must name an absolute folder (file:///abs/dir)`);
    return new LocalStore(dir);
  }
  throw new StoreSettingError(`storage must be "s3" or a file:///absolute/dir URL, got ${JSON.stringify(kind)}`);
}
