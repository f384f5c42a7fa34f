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

/**
 * The environment variables each storage setting is read from, in order: the AWS SDK's names, then
 * the Cloudflare names of the seeds' demo apps. The worker's settings table, the CLI's storage
 * commands and the app-side Checkpointer all read storage through these.
 */
export const STORE_ENV = {
  storage: ['DROVER_STORAGE'],
  endpoint: ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'CLOUDFLARE_ENDPOINT_URL', 'CLOUDFLARE_URL'],
  region: ['AWS_REGION', 'AWS_DEFAULT_REGION', 'CLOUDFLARE_REGION'],
  accessKeyId: ['AWS_ACCESS_KEY_ID', 'CLOUDFLARE_ID'],
  secretAccessKey: ['AWS_SECRET_ACCESS_KEY', 'CLOUDFLARE_KEY'],
} as const satisfies Record<string, readonly string[]>;

/** Storage settings from the environment (first non-empty variable of each STORE_ENV list). */
export function storeSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): StoreSettings {
  const first = (names: readonly string[]) => {
    for (const n of names) {
      const v = env[n]?.trim();
      if (v) return v;
    }
    return undefined;
  };
  return {
    storage: first(STORE_ENV.storage),
    endpoint: first(STORE_ENV.endpoint),
    region: first(STORE_ENV.region),
    accessKeyId: first(STORE_ENV.accessKeyId),
    secretAccessKey: first(STORE_ENV.secretAccessKey),
  };
}
