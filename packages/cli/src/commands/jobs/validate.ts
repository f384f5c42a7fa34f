// Checks a value against the protocol's JSON schema (the one the coordinator validates with), so a
// bad job file is named with its field before anything is sent. Covers the keywords the job
// definition uses; the coordinator remains the authority.
type Schema = Record<string, unknown>;

export interface SchemaProblem {
  /** e.g. "sync.before[0].bucket"; "" for the whole value */
  field: string;
  message: string;
}

export interface CheckOptions {
  /** skip the top level's `required` (a job file may leave command or container_group_id to the flags) */
  partial?: boolean;
}

const codePoints = (s: string) => [...s].length;

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(want: string, v: unknown): boolean {
  const got = typeOf(v);
  return want === got || (want === 'number' && got === 'integer');
}

const join = (base: string, key: string | number) =>
  typeof key === 'number' ? `${base}[${key}]` : base === '' ? key : `${base}.${key}`;

/** The first problem found, or undefined when the value fits the schema. */
export function checkSchema(schema: object, value: unknown, opts: CheckOptions = {}): SchemaProblem | undefined {
  return check(schema as unknown as Schema, value, '', opts);
}

function check(s: Schema, v: unknown, at: string, opts: CheckOptions): SchemaProblem | undefined {
  const fail = (message: string): SchemaProblem => ({ field: at, message });
  if (Array.isArray(s.anyOf)) {
    const branches = s.anyOf as Schema[];
    if (branches.some((b) => check(b, v, at, opts) === undefined)) return undefined;
    const consts = branches.filter((b) => 'const' in b).map((b) => JSON.stringify(b.const));
    return fail(consts.length === branches.length ? `must be one of ${consts.join(', ')}` : 'does not match any allowed form');
  }
  if ('const' in s && v !== s.const) return fail(`must be ${JSON.stringify(s.const)}`);
  if (typeof s.type === 'string' && !typeMatches(s.type, v)) {
    return fail(`must be ${s.type === 'integer' ? 'a whole number' : s.type === 'array' ? 'a list' : `${/^[aeiou]/.test(s.type) ? 'an' : 'a'} ${s.type}`}, got ${describe(v)}`);
  }
  if (typeof v === 'string') {
    const n = codePoints(v);
    if (typeof s.minLength === 'number' && n < s.minLength) return fail(s.minLength === 1 ? 'must not be empty' : `must be at least ${s.minLength} characters`);
    if (typeof s.maxLength === 'number' && n > s.maxLength) return fail(`must be at most ${s.maxLength} characters`);
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(v)) {
      if (s.pattern === '^https?://') return fail('must be an http:// or https:// URL');
      return fail(/\\u0000/.test(s.pattern) ? 'must not contain control characters' : `must match ${s.pattern}`);
    }
    if (s.format === 'uri' && !URL.canParse(v)) return fail('must be a URL');
  }
  if (typeof v === 'number') {
    if (typeof s.minimum === 'number' && v < s.minimum) return fail(`must be >= ${s.minimum}`);
    if (typeof s.maximum === 'number' && v > s.maximum) return fail(`must be <= ${s.maximum}`);
  }
  if (Array.isArray(v)) {
    if (typeof s.minItems === 'number' && v.length < s.minItems) return fail(`must have at least ${s.minItems} items`);
    if (typeof s.maxItems === 'number' && v.length > s.maxItems) return fail(`must have at most ${s.maxItems} items`);
    if (s.items && typeof s.items === 'object') {
      for (let i = 0; i < v.length; i++) {
        const p = check(s.items as Schema, v[i], join(at, i), opts);
        if (p) return p;
      }
    }
  }
  if (typeOf(v) === 'object') return checkObject(s, v as Record<string, unknown>, at, opts);
  return undefined;
}

function checkObject(s: Schema, v: Record<string, unknown>, at: string, opts: CheckOptions): SchemaProblem | undefined {
  const fail = (field: string, message: string): SchemaProblem => ({ field, message });
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const patterns = Object.entries((s.patternProperties ?? {}) as Record<string, Schema>).map(
    ([re, sub]) => [new RegExp(re, 'u'), sub] as const,
  );
  const keys = Object.keys(v);
  if (typeof s.maxProperties === 'number' && keys.length > s.maxProperties) return fail(at, `must have at most ${s.maxProperties} entries`);
  const names = s.propertyNames as Schema | undefined;
  for (const key of keys) {
    if (names && typeof names.pattern === 'string' && !new RegExp(names.pattern, 'u').test(key)) {
      return fail(at, `has an invalid name ${JSON.stringify(key)} (must match ${names.pattern})`);
    }
    const sub = props[key] ?? patterns.find(([re]) => re.test(key))?.[1];
    if (!sub) {
      if (s.additionalProperties === false) return fail(join(at, key), 'is not a known field');
      continue;
    }
    const p = check(sub, v[key], join(at, key), opts);
    if (p) return p;
  }
  if (!(opts.partial && at === '')) {
    for (const req of (s.required ?? []) as string[]) if (!(req in v)) return fail(join(at, req), 'is required');
  }
  return undefined;
}

function describe(v: unknown): string {
  const t = typeOf(v);
  if (t === 'string') return `the string ${JSON.stringify(v)}`;
  if (t === 'integer' || t === 'number' || t === 'boolean' || t === 'null') return `${t === 'null' ? '' : `${t === 'integer' ? 'number' : t} `}${String(v)}`;
  return t === 'array' ? 'a list' : `an ${t}`;
}
