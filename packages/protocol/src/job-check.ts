// Checks a job definition against the protocol's JobDefinition schema (the one the coordinator
// validates with) using TypeBox's own compiler: the CLI names a bad job file's field before anything
// is sent (the coordinator remains the authority), and the worker's SQS source checks each message
// body with it. TypeBox's errors are put in words ("field max_failures must be a whole number, got
// the string "3""). A subpath export (`@drover/protocol/job-check`), so that the SDK, which loads
// the protocol's schemas, does not load TypeBox's compiler.
//
// TypeBox reads three keywords differently from Ajv, the coordinator's validator, and the CLI must
// not refuse what the coordinator takes nor let through what it refuses:
// - string lengths: TypeBox counts UTF-16 units, JSON Schema (and Ajv) code points, so a length
//   error is checked again in code points (the protocol's minLengths are all 1, which reads the
//   same either way);
// - `pattern`: TypeBox compiles it without the `u` flag, where a valid surrogate pair (an emoji)
//   fails a class that excludes lone surrogates; a pattern error is checked again with `u`;
// - `propertyNames` (environment variable names): TypeBox does not check it; checkNames does.
import { JobDefinition, PARENT_SEGMENT_MESSAGE, parentSegmentPaths } from './schemas.js';
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';

export interface SchemaProblem {
  /** e.g. "sync.before[0].bucket"; "" for the whole value */
  field: string;
  message: string;
}

export interface CheckOptions {
  /** skip the top level's `required` (a job file may leave command or container_group_id to the flags) */
  partial?: boolean;
}

// Ajv (ajv-formats) checks `format: uri` on the coordinator; TypeBox needs the check registered.
if (!FormatRegistry.Has('uri')) FormatRegistry.Set('uri', (v) => URL.canParse(v));

let compiled: TypeCheck<typeof JobDefinition> | undefined;

/** The first problem of a job definition, or undefined when it fits the schema. */
export function checkJobDefinition(value: unknown, opts: CheckOptions = {}): SchemaProblem | undefined {
  compiled ??= TypeCompiler.Compile(JobDefinition);
  if (!compiled.Check(value)) {
    for (const error of compiled.Errors(value)) {
      if (opts.partial && isMissingTopLevel(error, value)) continue;
      const message = describeError(error);
      if (message !== undefined) return { field: fieldOf(error.path, value), message };
    }
  }
  return checkNames(value) ?? checkPaths(value);
}

/** A local_path with ".." segments, refused as the coordinator refuses it. */
function checkPaths(value: unknown): SchemaProblem | undefined {
  const climbing = parentSegmentPaths(value as Parameters<typeof parentSegmentPaths>[0])[0];
  return climbing === undefined ? undefined : { field: fieldOf(`/${climbing}`, value), message: PARENT_SEGMENT_MESSAGE };
}

/** A required top-level field that is absent (TypeBox reports it twice: required, then its type). */
function isMissingTopLevel(e: ValueError, value: unknown): boolean {
  const key = /^\/([^/]+)$/.exec(e.path)?.[1];
  return key !== undefined && e.value === undefined && (JobDefinition.required as readonly string[]).includes(key) && !(key in (value as object));
}

const codePoints = (s: string): number => [...s].length;

/** The CLI's wording of a TypeBox error; undefined for one Ajv would not report (see the top). */
function describeError(e: ValueError): string | undefined {
  const s = e.schema as Record<string, unknown> & TSchema;
  switch (e.type) {
    case ValueErrorType.Array:
      return `must be a list, got ${describe(e.value)}`;
    case ValueErrorType.Boolean:
      return `must be a boolean, got ${describe(e.value)}`;
    case ValueErrorType.Integer:
      return `must be a whole number, got ${describe(e.value)}`;
    case ValueErrorType.Number:
      return `must be a number, got ${describe(e.value)}`;
    case ValueErrorType.String:
      return `must be a string, got ${describe(e.value)}`;
    case ValueErrorType.Object:
      return `must be an object, got ${describe(e.value)}`;
    case ValueErrorType.Literal:
      return `must be ${JSON.stringify(s.const)}`;
    case ValueErrorType.Union: {
      const branches = (s.anyOf ?? []) as Record<string, unknown>[];
      const consts = branches.filter((b) => 'const' in b).map((b) => JSON.stringify(b.const));
      return consts.length === branches.length ? `must be one of ${consts.join(', ')}` : 'does not match any allowed form';
    }
    case ValueErrorType.StringMinLength:
      if (codePoints(e.value as string) >= (s.minLength as number)) return undefined;
      return s.minLength === 1 ? 'must not be empty' : `must be at least ${String(s.minLength)} characters`;
    case ValueErrorType.StringMaxLength:
      if (codePoints(e.value as string) <= (s.maxLength as number)) return undefined;
      return `must be at most ${String(s.maxLength)} characters`;
    case ValueErrorType.StringPattern: {
      const pattern = s.pattern as string;
      if (new RegExp(pattern, 'u').test(e.value as string)) return undefined;
      if (pattern === '^https?://') return 'must be an http:// or https:// URL';
      return /\\u0000/.test(pattern) ? 'must not contain control characters' : `must match ${pattern}`;
    }
    case ValueErrorType.StringFormat:
      return s.format === 'uri' ? 'must be a URL' : `must be a ${String(s.format)}`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be >= ${String(s.minimum)}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be <= ${String(s.maximum)}`;
    case ValueErrorType.ArrayMinItems:
      return `must have at least ${String(s.minItems)} items`;
    case ValueErrorType.ArrayMaxItems:
      return `must have at most ${String(s.maxItems)} items`;
    case ValueErrorType.ObjectMaxProperties:
      return `must have at most ${String(s.maxProperties)} entries`;
    case ValueErrorType.ObjectAdditionalProperties:
      return 'is not a known field';
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    default:
      return e.message;
  }
}

/** Environment names against the schema's propertyNames (which TypeBox does not check). */
function checkNames(value: unknown): SchemaProblem | undefined {
  const env = (value as { environment?: unknown } | null)?.environment;
  const pattern = (JobDefinition.properties.environment as { propertyNames?: { pattern?: string } }).propertyNames?.pattern;
  if (pattern === undefined || typeof env !== 'object' || env === null || Array.isArray(env)) return undefined;
  const re = new RegExp(pattern, 'u');
  const bad = Object.keys(env).find((name) => !re.test(name));
  return bad === undefined ? undefined : { field: 'environment', message: `has an invalid name ${JSON.stringify(bad)} (must match ${pattern})` };
}

/** A JSON pointer ("/sync/during/0/bucket") as the CLI names fields ("sync.during[0].bucket"). */
function fieldOf(pointer: string, root: unknown): string {
  let field = '';
  let at: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(at)) {
      field += `[${key}]`;
      at = at[Number(key)];
    } else {
      field += field === '' ? key : `.${key}`;
      at = typeof at === 'object' && at !== null ? (at as Record<string, unknown>)[key] : undefined;
    }
  }
  return field;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return v === undefined ? 'nothing' : `an ${typeof v}`;
}
