// Where client commands find the coordinator and storage: flags, then KELPIE_API_URL/KELPIE_API_KEY,
// then the profile file `drover up` writes, so commands after `drover up` need no flags.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CliError } from './output.js';

/** What `drover up` records for later commands. Secrets other than the API key are never written. */
export interface Profile {
  api_url: string;
  api_key: string;
  /** Storage of the local cluster, e.g. file:///abs/.drover/storage */
  storage?: string;
  /** Container group the local cluster's workers serve. */
  container_group_id?: string;
  /** Bucket the local cluster's jobs use by default. */
  bucket?: string;
  /** The local cluster's admin key (users, tokens): kept here, mode 0600, and reused by every start. */
  admin_key?: string;
}

export const DEFAULT_PROFILE = path.join('.drover', 'profile.json');

/**
 * --profile, then DROVER_PROFILE, then the nearest .drover/profile.json in this folder or one above
 * it (as git finds .git, so commands work from a project's sub-folders; the search stops at the home
 * folder), else ./.drover/profile.json.
 */
export function profilePath(flag?: string, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  if (flag ?? env.DROVER_PROFILE) return path.resolve(cwd, (flag ?? env.DROVER_PROFILE) as string);
  const home = env.HOME ? path.resolve(env.HOME) : undefined;
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, DEFAULT_PROFILE);
    if (existsSync(candidate)) return candidate;
    if (dir === home || path.dirname(dir) === dir) break;
  }
  return path.resolve(cwd, DEFAULT_PROFILE);
}

/** The profile, or undefined when the file does not exist. A file that exists but is broken is an error. */
export function readProfile(file: string): Profile | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read profile ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`profile ${file} is not valid JSON; delete it or run \`drover up\` again`);
  }
  const p = parsed as Partial<Profile>;
  if (typeof p !== 'object' || p === null || typeof p.api_url !== 'string' || typeof p.api_key !== 'string') {
    throw new CliError(`profile ${file} lacks api_url or api_key; delete it or run \`drover up\` again`);
  }
  return p as Profile;
}

/** Written atomically with mode 0600: it holds an API key. */
export function writeProfile(file: string, profile: Profile): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(profile, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

export interface ConnectionFlags {
  apiUrl?: string;
  apiKey?: string;
  profile?: string;
  /** Use the profile's admin key (`drover up`'s) instead of its user key. */
  admin?: boolean;
}

export interface Connection {
  url: string;
  key: string;
  profile?: Profile;
}

/** Flag, then environment, then profile; an error names all three when nothing gives a value. */
export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const file = profilePath(flags.profile, env);
  const profile = readProfile(file);
  if (flags.profile !== undefined && profile === undefined) throw new CliError(`profile ${file} does not exist`);
  const url = flags.apiUrl ?? (env.KELPIE_API_URL || undefined) ?? profile?.api_url;
  if (flags.admin && flags.apiKey !== undefined) throw new CliError('give --admin or --api-key, not both', 2);
  if (flags.admin && !profile?.admin_key) throw new CliError(`--admin: profile ${file} holds no admin key (\`drover up\` keeps one there); pass --api-key instead`);
  const key = flags.admin ? profile!.admin_key! : flags.apiKey ?? (env.KELPIE_API_KEY || undefined) ?? profile?.api_key;
  if (!url) throw new CliError(`no coordinator URL: pass --api-url, set KELPIE_API_URL, or run \`drover up\` (which writes ${DEFAULT_PROFILE})`);
  if (!key) throw new CliError(`no API key: pass --api-key, set KELPIE_API_KEY, or run \`drover up\` (which writes ${DEFAULT_PROFILE})`);
  let parsed: URL;
  try {
    // Kelpie's docs give the URL without a scheme: https is meant.
    parsed = new URL(url.includes('://') ? url : `https://${url}`);
  } catch {
    throw new CliError(`--api-url / KELPIE_API_URL must be a URL, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new CliError(`--api-url / KELPIE_API_URL must be http(s), got ${JSON.stringify(url)}`);
  return { url: parsed.toString().replace(/\/+$/, ''), key, profile };
}
