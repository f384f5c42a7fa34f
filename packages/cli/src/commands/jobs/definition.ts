// A job definition from a JSON/YAML file and flags (flags win), checked against the protocol's
// schema, and its {i} copies for `--count`.
import { LEGACY_FIELDS, SYNC_PHASE_DIRECTION, type JobDefinition as JobDefinitionT, type SyncEntry } from '@drover/protocol';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { CliError } from '../../lib/output.js';
import { USAGE } from './common.js';
import { checkJobDefinition } from './validate.js';

export const PHASES = ['before', 'during', 'after'] as const;
export type Phase = (typeof PHASES)[number];

/** What the submit flags carry (commander's camelCase names). */
export interface DefinitionFlags {
  command?: string;
  arg?: string[];
  env?: string[];
  group?: string;
  heartbeatInterval?: number;
  maxFailures?: number;
  webhook?: string;
  compression?: boolean;
  /** false with --no-sync */
  sync?: boolean;
  syncBefore?: string[];
  syncDuring?: string[];
  syncAfter?: string[];
  inputBucket?: string;
  inputPrefix?: string;
  checkpointBucket?: string;
  checkpointPrefix?: string;
  outputBucket?: string;
  outputPrefix?: string;
}

type Draft = Partial<JobDefinitionT> & Record<string, unknown>;

/** Reads a job file: one definition (an object) or several (a list). JSON for *.json, YAML otherwise. */
export function readJobFile(file: string): Draft[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(code === 'ENOENT' ? `job file ${file} does not exist` : `cannot read job file ${file}: ${(err as Error).message}`, USAGE);
  }
  let parsed: unknown;
  if (/\.json$/i.test(file)) {
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new CliError(`${file}: not valid JSON: ${(err as Error).message}`);
    }
  } else {
    try {
      parsed = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
    } catch (err) {
      const first = ((err as Error).message.split('\n')[0] ?? '').trim().replace(/:$/, '');
      throw new CliError(`${file}: not valid YAML: ${first}`);
    }
  }
  const docs = Array.isArray(parsed) ? parsed : [parsed];
  if (docs.length === 0) throw new CliError(`${file}: the list of jobs is empty`);
  docs.forEach((doc, i) => {
    const where = Array.isArray(parsed) ? `${file}: job ${i}` : file;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new CliError(`${where}: a job definition must be a mapping of fields (command, container_group_id, ...)`);
    }
    const problem = checkJobDefinition(doc, { partial: true });
    if (problem) throw new CliError(`${where}: ${problem.field === '' ? 'the job' : `field ${problem.field}`} ${problem.message}${hint(problem.field, doc)}`);
  });
  return docs as Draft[];
}

function hint(field: string, doc: unknown): string {
  if (!field.startsWith('environment.')) return '';
  const env = (doc as { environment?: Record<string, unknown> }).environment;
  const v = env?.[field.slice('environment.'.length)];
  return typeof v === 'number' || typeof v === 'boolean' ? ' (quote it: environment values are strings)' : '';
}

const SYNC_KEYS = ['bucket', 'prefix', 'local_path', 'pattern', 'direction'] as const;

/** "bucket=B,prefix=P,local_path=L[,pattern=G]" → a sync entry (a glob's "{a,b}" keeps its comma). */
export function parseSyncFlag(phase: Phase, spec: string): SyncEntry {
  const flag = `--sync-${phase}`;
  // split before every ",name=": a comma not followed by a name and "=" stays in its value
  const parts = spec.split(/,(?=[A-Za-z_]+=)/);
  const entry: Record<string, string> = {};
  for (const part of parts) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (eq < 0 || !(SYNC_KEYS as readonly string[]).includes(key)) {
      throw new CliError(`${flag} ${JSON.stringify(spec)}: expected bucket=B,prefix=P,local_path=DIR[,pattern=GLOB]; ${JSON.stringify(key)} is not one of ${SYNC_KEYS.join(', ')}`, USAGE);
    }
    if (key in entry) throw new CliError(`${flag} ${JSON.stringify(spec)}: ${key} is given twice`, USAGE);
    entry[key] = part.slice(eq + 1);
  }
  for (const key of ['bucket', 'local_path'] as const) {
    if (!entry[key]) throw new CliError(`${flag} ${JSON.stringify(spec)}: ${key}= is required`, USAGE);
  }
  const direction = entry.direction ?? SYNC_PHASE_DIRECTION[phase];
  if (direction !== SYNC_PHASE_DIRECTION[phase]) {
    throw new CliError(`${flag}: direction must be ${SYNC_PHASE_DIRECTION[phase]} for ${phase}-sync entries`, USAGE);
  }
  return {
    bucket: entry.bucket!,
    prefix: entry.prefix ?? '',
    local_path: entry.local_path!,
    direction,
    ...(entry.pattern !== undefined ? { pattern: entry.pattern } : {}),
  };
}

/** "KEY=VALUE" (the value may contain "="). */
export function parseEnvFlag(spec: string): [string, string] {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new CliError(`--env ${JSON.stringify(spec)}: expected KEY=VALUE`, USAGE);
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

const LEGACY_FLAGS: Record<(typeof LEGACY_FIELDS)[number], keyof DefinitionFlags> = {
  input_bucket: 'inputBucket',
  input_prefix: 'inputPrefix',
  checkpoint_bucket: 'checkpointBucket',
  checkpoint_prefix: 'checkpointPrefix',
  output_bucket: 'outputBucket',
  output_prefix: 'outputPrefix',
};

/**
 * The file's definition with the flags on top: scalar flags replace the file's value, `--arg`
 * replaces the file's arguments, `--env` adds to (or replaces single keys of) its environment, a
 * `--sync-<phase>` flag replaces that phase's list, `--no-sync` sends `sync: {}`.
 */
export function applyFlags(base: Draft, f: DefinitionFlags, defaultGroup: string | undefined): Draft {
  const def: Draft = structuredClone(base);
  if (f.command !== undefined) def.command = f.command;
  if (f.arg !== undefined) def.arguments = f.arg;
  if (f.env !== undefined) def.environment = { ...(def.environment ?? {}), ...Object.fromEntries(f.env.map(parseEnvFlag)) };
  if (f.group !== undefined) def.container_group_id = f.group;
  else if (def.container_group_id === undefined && defaultGroup !== undefined) def.container_group_id = defaultGroup;
  if (f.heartbeatInterval !== undefined) def.heartbeat_interval = f.heartbeatInterval;
  if (f.maxFailures !== undefined) def.max_failures = f.maxFailures;
  if (f.webhook !== undefined) def.webhook = f.webhook;
  if (f.compression !== undefined) def.compression = f.compression;
  for (const field of LEGACY_FIELDS) {
    const v = f[LEGACY_FLAGS[field]];
    if (typeof v === 'string') def[field] = v;
  }
  const lists: Record<Phase, string[] | undefined> = { before: f.syncBefore, during: f.syncDuring, after: f.syncAfter };
  if (f.sync === false) {
    if (PHASES.some((p) => lists[p] !== undefined)) throw new CliError('--no-sync cannot be combined with --sync-before/--sync-during/--sync-after', USAGE);
    def.sync = {};
  } else {
    for (const phase of PHASES) {
      const specs = lists[phase];
      if (specs !== undefined) def.sync = { ...(def.sync ?? {}), [phase]: specs.map((s) => parseSyncFlag(phase, s)) };
    }
  }
  return def;
}

/** The definition once command and container group are known; `where` names the job file, if any. */
export function requireEssentials(def: Draft, where: string | undefined): JobDefinitionT {
  const at = where ? `${where}: ` : '';
  if (def.command === undefined) throw new CliError(`${at}no command: pass --command or give one in the job file`, USAGE);
  if (def.container_group_id === undefined) {
    throw new CliError(`${at}no container group: pass --group, set container_group_id in the job file, or run \`drover up\` (its profile names one)`, USAGE);
  }
  return def as JobDefinitionT;
}

/** Checks the final definitions (after flags and {i}) as the coordinator will; the error names the field. */
export function checkDefinitions(defs: readonly JobDefinitionT[], numbered: boolean, first = 0): void {
  defs.forEach((def, i) => {
    const problem = checkJobDefinition(def);
    if (problem) {
      const job = numbered ? `job ${first + i}: ` : '';
      throw new CliError(`${job}${problem.field === '' ? 'the job' : `field ${problem.field}`} ${problem.message}`);
    }
  });
}

/**
 * Copy `i` of a definition: "{i}" becomes i in the arguments, the environment values, every string
 * of the sync entries (bucket, prefix, local_path, pattern) and the legacy *_bucket/*_prefix
 * fields. The command, container group, webhook and environment names are left as they are.
 */
export function instantiate(def: JobDefinitionT, i: number): JobDefinitionT {
  const sub = (s: string) => s.replaceAll('{i}', String(i));
  const out: JobDefinitionT = structuredClone(def);
  if (out.arguments) out.arguments = out.arguments.map(sub);
  if (out.environment) out.environment = Object.fromEntries(Object.entries(out.environment).map(([k, v]) => [k, sub(v)]));
  if (out.sync) {
    for (const phase of PHASES) {
      const list = out.sync[phase];
      if (list) {
        out.sync[phase] = list.map((e) => ({
          ...e,
          bucket: sub(e.bucket),
          prefix: sub(e.prefix),
          local_path: sub(e.local_path),
          ...(e.pattern !== undefined ? { pattern: sub(e.pattern) } : {}),
        }));
      }
    }
  }
  for (const field of LEGACY_FIELDS) {
    const v = out[field];
    if (typeof v === 'string') out[field] = sub(v);
  }
  return out;
}
