// Which object store the storage commands talk to: flags, then the environment (STORE_ENV: the
// AWS_* and CLOUDFLARE_* names of the seeds), then the `storage` of the profile `drover up` wrote.
// Secrets come only from the environment (or the AWS SDK's own chain): a flag would show in `ps`
// and in shell history.
import { type Command, Option } from 'commander';
import {
  InvalidKeyError, LocalStore, NotFoundError, RetryLimitError, S3Store, StoreSettingError,
  describeStore, openStore, storeSettingsFromEnv, type ObjectStore, type StoreSettings,
} from '@drover/storage';
import { CliError, describeError } from '../../lib/output.js';
import { profilePath, readProfile } from '../../lib/profile.js';
import { USAGE_EXIT, type RemoteContext } from '../../lib/remote-path.js';

export interface StorageFlags {
  storage?: string;
  s3Endpoint?: string;
  s3Region?: string;
  profile?: string;
  json?: boolean;
}

/** Adds --storage, --s3-endpoint, --s3-region, --profile and --json to a command. */
export function withStorageOptions(cmd: Command, jsonHelp: string): Command {
  return cmd
    .addOption(new Option('--storage <s3|file:///dir>', "object storage: S3-compatible, or a local folder with a folder per bucket (env DROVER_STORAGE; default: the profile's, else s3)"))
    .addOption(new Option('--s3-endpoint <url>', 'S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com (env AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, CLOUDFLARE_ENDPOINT_URL, CLOUDFLARE_URL)'))
    .addOption(new Option('--s3-region <region>', 'S3 region (env AWS_REGION, AWS_DEFAULT_REGION, CLOUDFLARE_REGION; default auto)'))
    .addOption(new Option('--profile <file>', 'profile written by `drover up`, for its storage (env DROVER_PROFILE; default ./.drover/profile.json)'))
    .addOption(new Option('--json', jsonHelp))
    .addHelpText(
      'after',
      '\nS3 credentials are read only from the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or CLOUDFLARE_ID and\n' +
        "CLOUDFLARE_KEY), else from the AWS SDK's own chain (~/.aws, AWS_PROFILE): never from flags, which other users see in `ps`.\n",
    );
}

export interface Storage {
  store: ObjectStore;
  kind: 's3' | 'local';
  /** The storage folder, for local storage. */
  root?: string;
  /** e.g. "s3 http://127.0.0.1:9000 region auto" or "file:///abs/.drover/storage", without secrets. */
  description: string;
  remoteContext: RemoteContext;
  close(): void;
}

/** Opens the store the flags, environment and profile name; bad settings are a CliError (exit 2). */
export function openStorage(flags: StorageFlags, env: NodeJS.ProcessEnv = process.env): Storage {
  const fromEnv = storeSettingsFromEnv(env);
  let storage = flags.storage ?? fromEnv.storage;
  let source = flags.storage !== undefined ? '--storage' : fromEnv.storage !== undefined ? 'DROVER_STORAGE' : 'the default';
  if (storage === undefined || flags.profile !== undefined) {
    const file = profilePath(flags.profile, env);
    const profile = readProfile(file);
    if (flags.profile !== undefined && profile === undefined) throw new CliError(`profile ${file} does not exist`, USAGE_EXIT);
    if (storage === undefined && profile?.storage) {
      storage = profile.storage;
      source = `profile ${file}`;
    }
  }
  const settings: StoreSettings = {
    storage: storage ?? 's3',
    endpoint: flags.s3Endpoint ?? fromEnv.endpoint,
    region: flags.s3Region ?? fromEnv.region,
    accessKeyId: fromEnv.accessKeyId,
    secretAccessKey: fromEnv.secretAccessKey,
  };
  // The AWS SDK warns on every run under Node < 22 (8 lines on stderr, about its future releases):
  // noise between a user and the one line they need. Their own setting wins.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  let store: ObjectStore;
  try {
    store = openStore(settings);
  } catch (err) {
    if (err instanceof StoreSettingError) throw new CliError(`${err.message} (storage from ${source})`, USAGE_EXIT);
    throw err;
  }
  const local = store instanceof LocalStore;
  const root = store instanceof LocalStore ? store.root : undefined;
  return {
    store,
    kind: local ? 'local' : 's3',
    root,
    description: describeStore(settings),
    remoteContext: { kind: local ? 'local' : 's3', root },
    close: () => {
      if (store instanceof S3Store) store.client.destroy();
    },
  };
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET']);

function networkCode(err: unknown, depth = 0): string | undefined {
  if (typeof err !== 'object' || err === null || depth > 4) return undefined;
  const e = err as { code?: unknown; name?: unknown; cause?: unknown };
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
  if (e.name === 'TimeoutError') return 'timeout';
  return networkCode(e.cause, depth + 1);
}

/**
 * One line for a storage failure, in the user's terms: a missing bucket names the bucket, missing
 * credentials say where they are read from, a network failure names the store it could not reach.
 */
export function storageFailure(err: unknown, storage: Storage | undefined, bucket?: string): unknown {
  if (err instanceof CliError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } } | null;
  const name = e?.name;
  if (name === 'NoSuchBucket') return new CliError(`bucket ${JSON.stringify(bucket ?? '?')} does not exist on ${storage?.description ?? 'the storage'}`);
  if (name === 'CredentialsProviderError' || (typeof e?.message === 'string' && /could not load credentials/i.test(e.message))) {
    return new CliError('no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or CLOUDFLARE_ID and CLOUDFLARE_KEY), or use local storage with --storage file:///dir');
  }
  if (err instanceof NotFoundError || err instanceof InvalidKeyError) return new CliError(err.message);
  const code = networkCode(err);
  if (code !== undefined && storage) {
    const why = err instanceof RetryLimitError ? describeError(err) : `${describeError(err)} (${code})`;
    return new CliError(`cannot reach storage ${storage.description}: ${why}`);
  }
  const status = e?.$metadata?.httpStatusCode;
  if (status !== undefined) return new CliError(`${describeError(err)} (HTTP ${status}${name && name !== 'Error' ? ` ${name}` : ''})`);
  return err;
}
