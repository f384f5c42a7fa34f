// Property-based fuzzing of every route but submission (fuzz.test.ts has POST /jobs and
// /jobs/batch): bad ids, other users' ids and keys, junk query strings, bodies and headers, raw
// malformed HTTP. Whatever arrives, the answer is never a 5xx; an invalid request is a 4xx in the
// one error shape {error, message}; after any 4xx (and after any GET or HEAD) the database is
// exactly as it was; the server keeps answering /healthz.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { JOB_STATUSES, type ScalingRule } from '@drover/protocol';
import {
  anyValue,
  assertApiError,
  encodeSegment,
  headerText,
  huge,
  isIdentifier,
  loneSurrogates,
  overLimit,
  send,
  sendRaw,
  show,
  traversal,
  unicode,
  type Answer,
  type FuzzRequest,
} from '@drover/testing/fuzz';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

const NUM_RUNS = 120;

type Who = 'A' | 'B' | 'admin' | 'none' | 'bad';
const USERS: readonly Who[] = ['A', 'B', 'admin'];

interface World {
  srv: TestServer;
  a: TestUser;
  b: TestUser;
  adminId: string;
  /** job id → owner, for the jobs seeded for this test */
  owner: Map<string, Who>;
  /** the group of the seeded jobs, new for each test */
  group: string;
  /** names taken */
  usernames: Set<string>;
  /** scaling rules that exist: `${owner}\u0000${group}` → its limits */
  rules: Map<string, { min: number; max: number }>;
}

interface Case {
  req: FuzzRequest;
  /** false: the request must be refused (4xx); true: a 2xx is allowed */
  valid: () => boolean;
  /** a GET or HEAD: the database must not change whatever the answer */
  safe: boolean;
  /** bookkeeping after a 2xx (a created user, ...) */
  accepted?: (a: Answer) => void;
}

/** Jobs of every status for one user, held (when running) by machine m1. */
async function seedJobs(u: TestUser, group: string): Promise<string[]> {
  const c = u.client;
  const MACHINE = { machine_id: 'm1', container_group_id: group };
  const def = { command: 'sleep', container_group_id: group };
  // each job is claimed right after it is created, so the claim takes that one
  const done = await c.createJob(def);
  await c.claimWork(MACHINE);
  await c.completeJob(done.id, MACHINE);
  const failed = await c.createJob({ ...def, max_failures: 1 });
  await c.claimWork(MACHINE);
  await c.failJob(failed.id, MACHINE);
  const running = await c.createJob(def);
  await c.claimWork(MACHINE);
  await c.heartbeat(running.id, MACHINE, { fraction: 0.5, message: 'half' });
  const canceled = await c.createJob(def);
  await c.cancelJob(canceled.id);
  const pending = await c.createJob(def);
  const elsewhere = await c.createJob({ ...def, container_group_id: `${group}-other` });
  return [done.id, failed.id, running.id, canceled.id, pending.id, elsewhere.id];
}

let seeds = 0;
async function world(srv: TestServer, a: TestUser, b: TestUser, adminId: string): Promise<World> {
  const w: World = { srv, a, b, adminId, owner: new Map(), group: `g${++seeds}`, usernames: new Set([a.username, b.username, 'admin']), rules: new Map() };
  for (const [who, u] of [['A', a], ['B', b]] as const) {
    for (const id of await seedJobs(u, w.group)) w.owner.set(id, who);
    // a scaling rule each, for the same group name
    await u.client.createScalingRule({ container_group_id: `${w.group}-r1`, min_replicas: 1, max_replicas: 4 });
    w.rules.set(`${who}\u0000${w.group}-r1`, { min: 1, max: 4 });
  }
  return w;
}

// ---- generators -------------------------------------------------------------------------------

const identifier = unicode(30).filter(isIdentifier);
const badIdentifier = fc.oneof(
  fc.constant(''),
  loneSurrogates,
  fc.tuple(unicode(10), fc.integer({ min: 0, max: 0x1f }), unicode(10)).map(([x, c, y]) => x + String.fromCharCode(c) + y),
  fc.integer({ min: 257, max: 1500 }).map((n) => 'é'.repeat(n)),
);
/**
 * The same in a query string, without lone surrogates: their percent-encoding is not UTF-8, so the
 * query parser keeps the value as the literal text `%ED%A0%80` (a valid identifier), where the
 * router refuses such a path segment.
 */
const badQueryIdentifier = badIdentifier.filter((s) => !/[\ud800-\udfff]/.test(s));
/** A path segment sent almost raw: printable ASCII as is (`..`, `%2e`, `\`), the rest encoded. */
const rawSegment = (s: string) => [...s].map((ch) => (/^[\x21-\x7e]$/.test(ch) && ch !== '?' && ch !== '#' ? ch : encodeSegment(ch))).join('');

function keyArb(w: World): fc.Arbitrary<{ headers: Record<string, string>; who: Who }> {
  const as = (who: Who, headers: Record<string, string>) => ({ who, headers });
  const token = w.a.token;
  const flipped = fc
    .tuple(fc.nat(token.length - 1), fc.constantFrom(...'aZ09_-'))
    .map(([i, c]) => token.slice(0, i) + c + token.slice(i + 1))
    .filter((t) => t !== token);
  const bad = fc.oneof(
    unicode(60).map(headerText),
    fc.tuple(fc.stringMatching(/^[0-9a-f]{16}$/), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/)).map(([id, s]) => `drv_${id}_${s}`),
    flipped,
    // the id of B's token with A's secret
    fc.constant(`${w.b.token.slice(0, 21)}${token.slice(21)}`),
    fc.constantFrom('Bearer', 'null', 'undefined', token.toUpperCase(), `Bearer ${token}`, `${token}${token}`, w.srv.adminKey.slice(1)),
    fc.integer({ min: 1000, max: 20_000 }).map((n) => 'k'.repeat(n)),
  );
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(as('A', { 'x-kelpie-key': token })) },
    { weight: 1, arbitrary: fc.constantFrom('Bearer ', 'bearer   ', 'BEARER\t').map((p) => as('A', { authorization: p + token })) },
    { weight: 2, arbitrary: fc.constant(as('B', { 'x-kelpie-key': w.b.token })) },
    { weight: 1, arbitrary: fc.constant(as('admin', { 'x-kelpie-key': w.srv.adminKey })) },
    { weight: 1, arbitrary: fc.constant(as('none', {})) },
    { weight: 1, arbitrary: fc.constantFrom('', '   ').map((b) => as('none', { authorization: `Bearer${b}` })) },
    { weight: 2, arbitrary: bad.map((k) => as('bad', { 'x-kelpie-key': k })) },
    { weight: 1, arbitrary: bad.map((k) => as('bad', { authorization: `Bearer ${k}` })) },
  );
}

/** A job id in a path: a seeded job (with its owner), an unknown well-formed one, or junk. */
function idArb(w: World): fc.Arbitrary<{ seg: string; owner: Who | undefined }> {
  const ids = [...w.owner.keys()];
  const known = fc.constantFrom(...ids);
  const none = (seg: string) => ({ seg, owner: undefined });
  return fc.oneof(
    { weight: 6, arbitrary: known.map((id) => ({ seg: id, owner: w.owner.get(id) })) },
    { weight: 1, arbitrary: fc.uuid().map(none) },
    { weight: 1, arbitrary: known.map((id) => none(id.toUpperCase())) },
    { weight: 1, arbitrary: known.map((id) => none(`urn:uuid:${id}`)) },
    { weight: 2, arbitrary: unicode(40).map((s) => none(encodeSegment(s))) },
    { weight: 2, arbitrary: traversal.map((s) => none(rawSegment(s))) },
    { weight: 1, arbitrary: fc.integer({ min: 37, max: 20_000 }).map((n) => none('a'.repeat(n))) },
    {
      weight: 1,
      arbitrary: known.chain((id) =>
        fc.constantFrom('', '%', '%zz', '%00', '%ED%A0%80', "1'%20or%20'1'='1", `${id}%00`, `${id}%20`, `${id}/..`, `../${id}`, `${id.slice(0, -1)}`, `${id}0`).map(none),
      ),
    },
  );
}

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json;charset=UTF-8'];
const OTHER_TYPES = ['application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x', 'text/html', 'application/xml', 'image/png'];

interface Body {
  body?: string | Buffer;
  contentType?: string;
  /** whether the route may accept it: computed from what the server will parse */
  ok: boolean;
}

/**
 * Whether the server's safe parser refuses a parsed body: a `__proto__` key, or a `constructor` key
 * holding a `prototype` key, at any depth. A `"__proto__"` string as a value is harmless.
 */
function poisons(root: unknown): boolean {
  const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
  // a loop, not recursion: the bodies include JSON nested 100,000 deep
  const stack = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object') continue;
    if (own(v, '__proto__')) return true;
    const ctor = own(v, 'constructor') ? (v as Record<string, unknown>).constructor : undefined;
    if (ctor !== null && typeof ctor === 'object' && own(ctor, 'prototype')) return true;
    stack.push(...Object.values(v));
  }
  return false;
}

/**
 * Bodies around a valid one: valid, with a field broken, any JSON, not JSON, huge, deeply nested,
 * over the limit, with lone surrogates or invalid UTF-8, with other content types, absent.
 * `accepts` says whether the route accepts a parsed body (undefined: none was sent).
 */
function bodyArb(valid: fc.Arbitrary<Record<string, unknown>>, accepts: (v: unknown) => boolean): fc.Arbitrary<Body> {
  const json = (raw: string | Buffer | undefined, contentType = 'application/json'): Body => {
    if (raw === undefined) return { ok: accepts(undefined) };
    const text = raw.toString();
    if (text.trim() === '') return { body: raw, contentType, ok: accepts(undefined) };
    try {
      // the server's parser skips a byte order mark
      const parsed: unknown = JSON.parse(text.replace(/^\ufeff/, ''));
      return { body: raw, contentType, ok: !poisons(parsed) && accepts(parsed) };
    } catch {
      return { body: raw, contentType, ok: false };
    }
  };
  /** the valid body with one of its fields (or a new one) set to `value` */
  const withField = (value: fc.Arbitrary<unknown>) =>
    fc.tuple(valid, fc.option(fc.string({ maxLength: 12 }), { freq: 3 }), fc.nat(), value).map(([v, extra, i, x]) => {
      const keys = Object.keys(v);
      return { ...v, [extra ?? keys[i % Math.max(1, keys.length)] ?? 'machine_id']: x };
    });
  return fc.oneof(
    { weight: 5, arbitrary: fc.tuple(valid, fc.constantFrom(...JSON_TYPES)).map(([v, ct]) => json(JSON.stringify(v), ct)) },
    { weight: 4, arbitrary: withField(fc.oneof(anyValue, traversal, loneSurrogates)).map((v) => json(JSON.stringify(v))) },
    { weight: 2, arbitrary: anyValue.map((v) => json(JSON.stringify(v))) },
    { weight: 1, arbitrary: fc.json().map((raw) => json(raw)) },
    {
      weight: 2,
      arbitrary: fc
        .oneof(
          fc.constantFrom('{', '[', 'nul', '{"a":1,}', "{'a':1}", 'undefined', 'NaN', '\ufeff{}', '{"a":1}}', '{"machine_id":"m1"', '"\\ud800', '{"a":"\\x"}'),
          valid.map((v) => JSON.stringify(v).slice(0, -1)),
          unicode(30),
        )
        .map((raw) => json(raw)),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 500, max: 100_000 }), fc.boolean())
        .map(([n, arrays]) => json(arrays ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n))),
    },
    { weight: 1, arbitrary: withField(huge).map((v) => json(JSON.stringify(v))) },
    { weight: 1, arbitrary: withField(overLimit).map((v) => ({ body: JSON.stringify(v), contentType: 'application/json', ok: false })) },
    {
      weight: 1,
      // invalid UTF-8 inside a string: the server reads it as U+FFFD
      arbitrary: valid.map((v) => json(Buffer.concat([Buffer.from(JSON.stringify(v).slice(0, -1) + ',"x":"'), Buffer.from([0xff, 0xed, 0xa0, 0x80]), Buffer.from('"}')]))),
    },
    { weight: 1, arbitrary: fc.tuple(valid, fc.constantFrom(...OTHER_TYPES)).map(([v, ct]) => ({ body: JSON.stringify(v), contentType: ct, ok: false })) },
    // text/plain is parsed as a string
    { weight: 1, arbitrary: valid.map((v) => ({ body: JSON.stringify(v), contentType: 'text/plain', ok: accepts(JSON.stringify(v)) })) },
    { weight: 1, arbitrary: valid.map((v) => ({ body: JSON.stringify(v), ok: false })) },
    { weight: 1, arbitrary: fc.constantFrom(undefined, '', '  ').map((raw) => json(raw)) },
  );
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isMachineBody = (v: unknown): v is Record<string, unknown> => isObject(v) && isIdentifier(v.machine_id) && isIdentifier(v.container_group_id);
const isProgress = (v: unknown) =>
  isObject(v) &&
  Object.keys(v).every((k) => k === 'fraction' || k === 'message') &&
  typeof v.fraction === 'number' &&
  v.fraction >= 0 &&
  v.fraction <= 1 &&
  (v.message === undefined || (typeof v.message === 'string' && [...v.message].length <= 1024));
const isHeartbeatBody = (v: unknown) => isMachineBody(v) && (v.progress === undefined || isProgress(v.progress));

/** Mostly the holder of the seeded running jobs. */
const machineBody = (w: World) =>
  fc.record({
    machine_id: fc.oneof(fc.constant('m1'), identifier),
    container_group_id: fc.oneof(fc.constant(w.group), identifier),
  });
const heartbeatBody = (w: World) => fc.record(
  {
    machine_id: fc.oneof(fc.constant('m1'), identifier),
    container_group_id: fc.oneof(fc.constant(w.group), identifier),
    progress: fc.record({ fraction: fc.double({ min: 0, max: 1, noNaN: true }), message: unicode(40) }, { requiredKeys: ['fraction'] }),
  },
  { requiredKeys: ['machine_id', 'container_group_id'] },
);

interface QueryPart {
  key: string;
  value: string | undefined;
  ok: boolean;
}

/**
 * A query string of the given parameters, each absent, valid or junk, maybe with an unknown key
 * or a repeated one (an array, which no parameter accepts).
 */
function queryArb(spec: Record<string, { valid: fc.Arbitrary<string>; junk: fc.Arbitrary<string>; required?: boolean }>) {
  const parts = Object.entries(spec).map(([key, s]) =>
    fc
      .option(
        fc.oneof(
          { weight: 4, arbitrary: s.valid.map((v): QueryPart => ({ key, value: encodeSegment(v), ok: true })) },
          { weight: 1, arbitrary: s.junk.map((v): QueryPart => ({ key, value: encodeSegment(v), ok: false })) },
        ),
        { freq: s.required ? 12 : 3 },
      )
      .map((p): QueryPart => p ?? { key, value: undefined, ok: !s.required }),
  );
  const unknownKey = fc.constantFrom('state', 'timeout', 'PAGE', 'page_size ', '__proto__', 'constructor', 'toString', 'a[b]', '', '%ED%A0%80');
  return fc
    .tuple(fc.tuple(...parts), fc.option(unknownKey, { freq: 6 }), fc.option(fc.nat(), { freq: 8 }))
    .map(([ps, extra, repeat]) => {
      const present = ps.filter((p) => p.value !== undefined);
      const sent = [...present];
      if (extra !== null) sent.push({ key: extra, value: '1', ok: false });
      const repeated = repeat !== null && present.length > 0 ? present[repeat % present.length]! : undefined;
      if (repeated) sent.push(repeated);
      return {
        qs: sent.length ? `?${sent.map((p) => `${rawSegment(p.key)}=${p.value}`).join('&')}` : '',
        ok: ps.every((p) => p.ok) && extra === null && !repeated,
      };
    });
}

const junkInt = (max: number) =>
  fc.oneof(
    fc.integer({ max: 0 }).map(String),
    fc.integer({ min: max + 1 }).map(String),
    fc.double({ noNaN: true }).filter((d) => !Number.isInteger(d)).map(String),
    fc.constantFrom('', 'ten', 'NaN', 'Infinity', '-Infinity', '1e400', '[]', '{}', 'null', 'true', '1,2', '١'),
  );
const junkText = unicode(12).filter((s) => s.trim() !== '' && Number.isNaN(Number(s)));

/** Junk query parameters for routes that take none: ignored. */
const ignoredQuery = fc.option(fc.array(fc.tuple(unicode(8), unicode(8)), { maxLength: 3 }), { freq: 3 }).map((kv) =>
  kv?.length ? `?${kv.map(([k, v]) => `${encodeSegment(k)}=${encodeSegment(v)}`).join('&')}` : '',
);

const headers = (auth: Record<string, string>, b?: Body): Record<string, string> => ({
  ...auth,
  ...(b?.contentType !== undefined ? { 'content-type': b.contentType } : {}),
});

// ---- the routes -------------------------------------------------------------------------------

function usersMe(w: World): fc.Arbitrary<Case> {
  return fc.tuple(keyArb(w), ignoredQuery, fc.constantFrom('GET', 'HEAD')).map(([k, qs, method]) => ({
    req: { method, path: `/users/me${qs}`, headers: k.headers },
    valid: () => USERS.includes(k.who),
    safe: true,
  }));
}

function createUser(w: World): fc.Arbitrary<Case> {
  const name = fc.oneof(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,20}$/), fc.constantFrom(w.a.username, 'admin', '.x', '-x', 'a b', 'x'.repeat(129)), unicode(20));
  const accepts = (v: unknown) =>
    isObject(v) &&
    Object.keys(v).join() === 'username' &&
    typeof v.username === 'string' &&
    v.username.length <= 128 &&
    /^[A-Za-z0-9][A-Za-z0-9._@-]*$/u.test(v.username) &&
    !w.usernames.has(v.username);
  return fc.tuple(keyArb(w), bodyArb(fc.record({ username: name }), accepts)).map(([k, b]) => ({
    req: { method: 'POST', path: '/users', headers: headers(k.headers, b), ...(b.body !== undefined ? { body: b.body } : {}) },
    valid: () => k.who === 'admin' && b.ok,
    safe: false,
    accepted: (a) => void w.usernames.add((a.json as { username: string }).username),
  }));
}

function createToken(w: World): fc.Arbitrary<Case> {
  const userId = fc.oneof(
    fc.constantFrom(w.a.id, w.b.id, w.adminId).map((id) => ({ seg: id, exists: true })),
    idArb(w).map(({ seg }) => ({ seg, exists: false })),
  );
  const accepts = (v: unknown) =>
    isObject(v) && (v.org_name === undefined || typeof v.org_name === 'string') && (v.project_name === undefined || typeof v.project_name === 'string');
  const body = fc.record({ org_name: unicode(20), project_name: unicode(20) }, { requiredKeys: [] });
  return fc.tuple(keyArb(w), userId, bodyArb(body, accepts)).map(([k, id, b]) => ({
    req: { method: 'POST', path: `/users/${id.seg}/token`, headers: headers(k.headers, b), ...(b.body !== undefined ? { body: b.body } : {}) },
    valid: () => k.who === 'admin' && id.exists && b.ok,
    safe: false,
  }));
}

function claimWork(w: World): fc.Arbitrary<Case> {
  const query = queryArb({
    machine_id: { valid: fc.oneof(fc.constantFrom('m1', 'm2'), identifier), junk: badQueryIdentifier, required: true },
    container_group_id: { valid: fc.oneof(fc.constantFrom(w.group, `${w.group}-other`), identifier), junk: badQueryIdentifier, required: true },
    // only short waits: a valid long-poll on an empty group lasts as long as asked
    wait: {
      valid: fc.constantFrom('0', '0.0', '0.05', '-0', '1e-400'),
      junk: fc.oneof(
        fc.double({ max: -Number.MIN_VALUE, noNaN: true }).map(String),
        fc.double({ min: 60.000001, noNaN: true }).map(String),
        fc.constantFrom('', 'NaN', 'soon', '60.5', '1e400', '-1', '[]'),
        junkText,
      ),
    },
  });
  return fc.tuple(keyArb(w), query, fc.constantFrom('GET', 'GET', 'GET', 'HEAD')).map(([k, q, method]) => ({
    req: { method, path: `/work${q.qs}`, headers: k.headers },
    valid: () => USERS.includes(k.who) && q.ok,
    // HEAD answers without a body: it must not claim a job the caller never sees
    safe: method === 'HEAD',
  }));
}

function transitions(w: World): fc.Arbitrary<Case> {
  return fc
    .tuple(keyArb(w), idArb(w), fc.constantFrom('heartbeat', 'completed', 'failed', 'release'), ignoredQuery)
    .chain(([k, id, action, qs]) =>
      (action === 'heartbeat' ? bodyArb(heartbeatBody(w), isHeartbeatBody) : bodyArb(machineBody(w), isMachineBody)).map(
        (b): Case => ({
          req: { method: 'POST', path: `/jobs/${id.seg}/${action}${qs}`, headers: headers(k.headers, b), ...(b.body !== undefined ? { body: b.body } : {}) },
          valid: () => USERS.includes(k.who) && id.owner === k.who && b.ok,
          safe: false,
        }),
      ),
    );
}

function listJobs(w: World): fc.Arbitrary<Case> {
  const query = queryArb({
    status: { valid: fc.constantFrom(...JOB_STATUSES), junk: fc.oneof(fc.constantFrom('done', 'PENDING', ' pending', '', 'pending\u0000'), junkText.filter((s) => !(JOB_STATUSES as readonly string[]).includes(s))) },
    container_group_id: { valid: fc.oneof(fc.constantFrom(w.group, `${w.group}-other`), identifier), junk: badQueryIdentifier },
    page_size: { valid: fc.integer({ min: 1, max: 1000 }).map(String), junk: junkInt(1000) },
    page: { valid: fc.integer({ min: 1, max: 1_000_000 }).map(String), junk: junkInt(1_000_000) },
    asc: { valid: fc.constantFrom('true', 'false'), junk: fc.constantFrom('maybe', '1', '0', 'yes', 'TRUE', '') },
  });
  return fc.tuple(keyArb(w), query, fc.constantFrom('GET', 'HEAD')).map(([k, q, method]) => ({
    req: { method, path: `/jobs${q.qs}`, headers: k.headers },
    valid: () => USERS.includes(k.who) && q.ok,
    safe: true,
  }));
}

function readJob(w: World): fc.Arbitrary<Case> {
  return fc
    .tuple(keyArb(w), idArb(w), fc.constantFrom('', '/events'), ignoredQuery, fc.constantFrom('GET', 'HEAD'))
    .map(([k, id, sub, qs, method]) => ({
      req: { method, path: `/jobs/${id.seg}${sub}${qs}`, headers: k.headers },
      valid: () => USERS.includes(k.who) && id.owner === k.who,
      safe: true,
    }));
}

/** DELETE takes no body, but clients send one: any JSON or text is ignored, broken JSON is refused. */
const anyBody = bodyArb(fc.dictionary(unicode(6), unicode(6), { maxKeys: 2 }), () => true);

function cancelJob(w: World): fc.Arbitrary<Case> {
  return fc.tuple(keyArb(w), idArb(w), fc.option(anyBody, { freq: 3 })).map(([k, id, b]) => ({
    req: { method: 'DELETE', path: `/jobs/${id.seg}`, headers: headers(k.headers, b ?? undefined), ...(b?.body !== undefined ? { body: b.body } : {}) },
    valid: () => USERS.includes(k.who) && id.owner === k.who && (b?.ok ?? true),
    safe: false,
  }));
}

function purgeGroup(w: World): fc.Arbitrary<Case> {
  const group = fc.oneof(
    // mostly groups with no jobs, so that the seeded ones last the whole test
    { weight: 4, arbitrary: identifier.filter((g) => !g.startsWith(w.group)).map((g) => ({ seg: encodeSegment(g), ok: true as boolean | undefined })) },
    { weight: 1, arbitrary: fc.constantFrom(w.group, `${w.group}-other`).map((g) => ({ seg: g, ok: true as boolean | undefined })) },
    { weight: 2, arbitrary: badIdentifier.map((g) => ({ seg: encodeSegment(g), ok: false as boolean | undefined })) },
    // what the router makes of raw `..`, `%2F` and `\` is its business: only no 5xx and no harm
    { weight: 2, arbitrary: traversal.map((t) => ({ seg: rawSegment(t), ok: undefined })) },
    { weight: 1, arbitrary: fc.integer({ min: 2049, max: 20_000 }).map((n) => ({ seg: 'g'.repeat(n), ok: false as boolean | undefined })) },
  );
  return fc.tuple(keyArb(w), group, fc.option(anyBody, { freq: 3 })).map(([k, g, b]) => ({
    req: {
      method: 'DELETE',
      path: `/jobs/container-groups/${g.seg}`,
      headers: headers(k.headers, b ?? undefined),
      ...(b?.body !== undefined ? { body: b.body } : {}),
    },
    valid: () => USERS.includes(k.who) && g.ok !== false && (b?.ok ?? true),
    safe: false,
  }));
}

/** (admin) DELETE /jobs: every other caller is refused; the admin too when the body is broken JSON. */
function clearJobs(w: World): fc.Arbitrary<Case> {
  const brokenJson = anyBody.filter((b) => !b.ok);
  return fc
    .oneof(
      fc.tuple(keyArb(w).filter((k) => k.who !== 'admin'), fc.option(anyBody, { freq: 3 })),
      fc.tuple(fc.constant({ who: 'admin' as Who, headers: { 'x-kelpie-key': w.srv.adminKey } }), brokenJson),
    )
    .map(([k, b]) => ({
      req: { method: 'DELETE', path: '/jobs', headers: headers(k.headers, b ?? undefined), ...(b?.body !== undefined ? { body: b.body } : {}) },
      valid: () => false,
      safe: false,
    }));
}

// ---- scaling rules (the autoscaler is off in this server: rules are data only) ----

const SALAD_NAME = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
const RULE_INTS: Record<string, [number, number]> = {
  min_replicas: [0, 500],
  max_replicas: [0, 500],
  idle_threshold_seconds: [0, 3600],
  jobs_per_replica: [1, 1000],
  cooldown_seconds: [0, 3600],
};
const SALAD_FIELDS = ['org_name', 'project_name', 'container_group_name'];
const RULE_FIELDS = new Set([...Object.keys(RULE_INTS), ...SALAD_FIELDS, 'provider', 'enabled']);

/**
 * Whether a rule body may be accepted by a coordinator that drives no provider but `none`:
 * false only where the server must refuse it.
 */
function ruleSettingsOk(v: Record<string, unknown>, current: { min: number; max: number }): boolean {
  for (const [k, [lo, hi]] of Object.entries(RULE_INTS)) {
    const x = v[k];
    if (x !== undefined && !(typeof x === 'number' && Number.isInteger(x) && x >= lo && x <= hi)) return false;
  }
  if (v.provider !== undefined && v.provider !== 'none') return false;
  for (const f of SALAD_FIELDS) if (v[f] !== undefined) return false;
  if (v.enabled !== undefined && typeof v.enabled !== 'boolean') return false;
  return ((v.min_replicas as number | undefined) ?? current.min) <= ((v.max_replicas as number | undefined) ?? current.max);
}

const ruleSettings = fc.record(
  {
    min_replicas: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: -3, max: 600 })),
    max_replicas: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: -3, max: 600 })),
    idle_threshold_seconds: fc.integer({ min: -10, max: 4000 }),
    jobs_per_replica: fc.integer({ min: -1, max: 1200 }),
    cooldown_seconds: fc.integer({ min: -1, max: 4000 }),
    provider: fc.constantFrom('none', 'none', 'saladcloud', 'local', 'aws', ''),
    org_name: fc.oneof(fc.stringMatching(SALAD_NAME), unicode(10)),
    enabled: fc.oneof(fc.boolean(), fc.constantFrom('true', 1, null)),
  },
  { requiredKeys: [] },
);

/**
 * A group in a path: one with rules (maybe the caller's), an unknown one, or junk. `unsure`: sent
 * raw (`..`, `%2F`, a space), what the router makes of it is its business: only no 5xx and no harm.
 */
function ruleGroupArb(w: World): fc.Arbitrary<{ seg: string; group: string | undefined; unsure?: true }> {
  const named = (g: string) => ({ seg: encodeSegment(g), group: g as string | undefined });
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(`${w.group}-r1`, `${w.group}-r2`, `${w.group}-r3`).map(named) },
    { weight: 2, arbitrary: identifier.map(named) },
    { weight: 2, arbitrary: badIdentifier.map((g) => ({ seg: encodeSegment(g), group: undefined })) },
    { weight: 1, arbitrary: traversal.map((t) => ({ seg: rawSegment(t), group: undefined, unsure: true as const })) },
    { weight: 1, arbitrary: fc.integer({ min: 2049, max: 20_000 }).map((n) => ({ seg: 'g'.repeat(n), group: undefined })) },
  );
}

function createRule(w: World): fc.Arbitrary<Case> {
  const group = fc.oneof(fc.constantFrom(`${w.group}-r1`, `${w.group}-r2`, `${w.group}-r3`), identifier, badIdentifier);
  const valid = fc.tuple(group, ruleSettings).map(([g, r]) => ({ container_group_id: g, ...r }));
  const accepts = (v: unknown) =>
    isObject(v) &&
    Object.keys(v).every((k) => k === 'container_group_id' || RULE_FIELDS.has(k)) &&
    isIdentifier(v.container_group_id) &&
    ruleSettingsOk(v, { min: 0, max: 100 });
  return fc.tuple(keyArb(w), bodyArb(valid, accepts)).map(([k, b]) => ({
    req: { method: 'POST', path: '/scaling-rules', headers: headers(k.headers, b), ...(b.body !== undefined ? { body: b.body } : {}) },
    valid: () => USERS.includes(k.who) && b.ok,
    safe: false,
    accepted: (a) => {
      const r = a.json as ScalingRule;
      w.rules.set(`${k.who}\u0000${r.container_group_id}`, { min: r.min_replicas, max: r.max_replicas });
    },
  }));
}

function patchRule(w: World): fc.Arbitrary<Case> {
  return fc.tuple(keyArb(w), ruleGroupArb(w)).chain(([k, g]) => {
    const current = g.group === undefined ? undefined : w.rules.get(`${k.who}\u0000${g.group}`);
    const valid = fc.tuple(ruleSettings, fc.option(fc.constantFrom(g.group ?? 'x', 'elsewhere'), { freq: 4 })).map(([r, id]) => ({ ...r, ...(id !== null ? { container_group_id: id } : {}) }));
    const accepts = (v: unknown) =>
      current !== undefined &&
      isObject(v) &&
      Object.keys(v).every((key) => key === 'container_group_id' || RULE_FIELDS.has(key)) &&
      (v.container_group_id === undefined || v.container_group_id === g.group) &&
      ruleSettingsOk(v, current);
    return bodyArb(valid, accepts).map(
      (b): Case => ({
        req: { method: 'PATCH', path: `/scaling-rules/${g.seg}`, headers: headers(k.headers, b), ...(b.body !== undefined ? { body: b.body } : {}) },
        valid: () => USERS.includes(k.who) && (b.ok || g.unsure === true),
        safe: false,
        accepted: (a) => {
          const r = a.json as ScalingRule;
          w.rules.set(`${k.who}\u0000${r.container_group_id}`, { min: r.min_replicas, max: r.max_replicas });
        },
      }),
    );
  });
}

function readRules(w: World): fc.Arbitrary<Case> {
  const query = queryArb({
    limit: { valid: fc.integer({ min: 1, max: 1000 }).map(String), junk: junkInt(1000) },
    before: { valid: fc.integer({ min: 1, max: 1_000_000 }).map(String), junk: fc.oneof(fc.integer({ max: 0 }).map(String), fc.constantFrom('', 'x', '1.5', 'NaN')) },
  });
  return fc
    .tuple(keyArb(w), ruleGroupArb(w), fc.constantFrom('list', 'one', 'decisions'), query, fc.constantFrom('GET', 'HEAD'))
    .map(([k, g, what, q, method]) => {
      const exists = g.group !== undefined && w.rules.has(`${k.who}\u0000${g.group}`);
      const path = what === 'list' ? '/scaling-rules' : what === 'one' ? `/scaling-rules/${g.seg}` : `/scaling-rules/${g.seg}/decisions${q.qs}`;
      return {
        req: { method, path, headers: k.headers },
        valid: () => USERS.includes(k.who) && (what === 'list' || exists || g.unsure === true) && (what !== 'decisions' || q.ok),
        safe: true,
      };
    });
}

function deleteRule(w: World): fc.Arbitrary<Case> {
  return fc.tuple(keyArb(w), ruleGroupArb(w), fc.option(anyBody, { freq: 3 })).map(([k, g, b]) => ({
    req: { method: 'DELETE', path: `/scaling-rules/${g.seg}`, headers: headers(k.headers, b ?? undefined), ...(b?.body !== undefined ? { body: b.body } : {}) },
    valid: () => USERS.includes(k.who) && (g.group !== undefined || g.unsure === true) && (b?.ok ?? true),
    safe: false,
    accepted: () => void (g.group !== undefined && w.rules.delete(`${k.who}\u0000${g.group}`)),
  }));
}

function system(w: World): fc.Arbitrary<Case> {
  return fc
    .tuple(keyArb(w), fc.constantFrom('/healthz', '/metrics', '/openapi.json'), ignoredQuery, fc.constantFrom('GET', 'HEAD'))
    .map(([k, path, qs, method]) => ({ req: { method, path: path + qs, headers: k.headers }, valid: () => true, safe: true }));
}

/** Methods and paths no route has, and traversal towards those that exist. */
function unrouted(w: World): fc.Arbitrary<Case> {
  const path = fc.oneof(
    fc.tuple(fc.constantFrom('/', '/job', '/jobs/x/y/z/', '/users', '/work/', '/admin/', '/jobs/batch/', '/../', '/%2e%2e/'), traversal).map(([p, t]) => p + rawSegment(t)),
    unicode(30).map((s) => `/${encodeSegment(s)}`),
    fc.constantFrom('/jobs/../jobs', '/users/me/../../jobs', '/./healthz', '//jobs', '/jobs/container-groups', '/users/me/', '/%2e%2e/jobs'),
  );
  return fc
    .tuple(keyArb(w), fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND'), path)
    .map(([k, method, p]) => ({ req: { method, path: p, headers: k.headers }, valid: () => true, safe: method === 'GET' || method === 'HEAD' }));
}

// Job logs and the dashboard's reads (Drover).

// eslint-disable-next-line no-control-regex -- the pattern of LogLineIn.text, which is about control characters
const LOG_TEXT = /^[^\u0000-\u0008\u000a-\u001f\ud800-\udfff]*$/u;
const isLogLine = (v: unknown) =>
  isObject(v) &&
  Object.keys(v).every((k) => ['seq', 'at', 'stream', 'text'].includes(k)) &&
  Number.isInteger(v.seq) &&
  (v.seq as number) >= 0 &&
  typeof v.at === 'string' &&
  /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(v.at) &&
  (v.stream === 'stdout' || v.stream === 'stderr') &&
  typeof v.text === 'string' &&
  [...v.text].length <= 8192 &&
  LOG_TEXT.test(v.text);
const isLogBatch = (v: unknown) =>
  isMachineBody(v) &&
  Object.keys(v).every((k) => ['machine_id', 'container_group_id', 'attempt', 'lines', 'dropped'].includes(k)) &&
  Number.isInteger(v.attempt) &&
  (v.attempt as number) >= 1 &&
  Array.isArray(v.lines) &&
  v.lines.length <= 2000 &&
  v.lines.every(isLogLine) &&
  (v.dropped === undefined || (Number.isInteger(v.dropped) && (v.dropped as number) >= 0));

const logLine = fc.record({
  seq: fc.oneof({ weight: 5, arbitrary: fc.nat(50) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: -1 }) }),
  at: fc.oneof(
    { weight: 5, arbitrary: fc.integer({ min: 0, max: 4_102_444_800_000 }).map((t) => new Date(t).toISOString()) },
    { weight: 1, arbitrary: fc.constantFrom('yesterday', '2026-13-01T00:00:00Z', '') },
  ),
  stream: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('stdout', 'stderr') }, { weight: 1, arbitrary: fc.constantFrom('STDOUT', 'log', '') }),
  text: fc.oneof({ weight: 5, arbitrary: unicode(40) }, { weight: 1, arbitrary: fc.constantFrom('a\nb', 'tab\tok', 'nul\u0000', 'x'.repeat(8193)) }),
});
const logBatch = (w: World) =>
  fc.record(
    {
      machine_id: fc.oneof(fc.constant('m1'), identifier),
      container_group_id: fc.oneof(fc.constant(w.group), identifier),
      attempt: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: -1, max: 5 }) }),
      lines: fc.array(logLine, { maxLength: 4 }),
      dropped: fc.integer({ min: -1, max: 10 }),
    },
    { requiredKeys: ['machine_id', 'container_group_id', 'attempt', 'lines'] },
  );

function shipLogs(w: World): fc.Arbitrary<Case> {
  return fc.tuple(keyArb(w), idArb(w), ignoredQuery).chain(([k, id, qs]) =>
    bodyArb(logBatch(w), isLogBatch).map(
      (b): Case => ({
        req: { method: 'POST', path: `/jobs/${id.seg}/logs${qs}`, headers: headers(k.headers, b), ...(b.body !== undefined ? { body: b.body } : {}) },
        valid: () => USERS.includes(k.who) && id.owner === k.who && b.ok,
        safe: false,
      }),
    ),
  );
}

function readLogs(w: World): fc.Arbitrary<Case> {
  const query = queryArb({
    attempt: { valid: fc.integer({ min: 1, max: 5 }).map(String), junk: junkInt(1_000_000_000).filter((v) => Number(v) < 1 || !Number.isInteger(Number(v)) || Number.isNaN(Number(v))) },
    after: { valid: fc.integer({ min: -1, max: 100 }).map(String), junk: fc.oneof(fc.integer({ max: -2 }).map(String), fc.constantFrom('', 'x', '1.5', 'NaN')) },
    limit: { valid: fc.integer({ min: 1, max: 5000 }).map(String), junk: junkInt(5000) },
    tail: { valid: fc.integer({ min: 1, max: 5000 }).map(String), junk: junkInt(5000) },
    // a follow that waits is the long-poll's test; here it may only wait a moment
    wait: { valid: fc.constantFrom('0', '0.01'), junk: fc.constantFrom('-1', '31', 'x', '') },
  });
  return fc.tuple(keyArb(w), idArb(w), query, fc.constantFrom('GET', 'HEAD')).map(([k, id, q, method]) => ({
    req: { method, path: `/jobs/${id.seg}/logs${q.qs}`, headers: k.headers },
    valid: () => USERS.includes(k.who) && id.owner === k.who && q.ok,
    safe: true,
  }));
}

function dashboardReads(w: World): fc.Arbitrary<Case> {
  const history = queryArb({
    hours: { valid: fc.double({ min: 0.1, max: 2160, noNaN: true }).map(String), junk: fc.constantFrom('0', '-1', '2161', 'x', '', 'Infinity') },
    buckets: { valid: fc.integer({ min: 2, max: 500 }).map(String), junk: fc.oneof(junkInt(500), fc.constant('1')) },
    container_group_id: { valid: fc.oneof(fc.constant(w.group), identifier), junk: badQueryIdentifier },
  });
  const handovers = queryArb({
    limit: { valid: fc.integer({ min: 1, max: 1000 }).map(String), junk: junkInt(1000) },
    container_group_id: { valid: fc.oneof(fc.constant(w.group), identifier), junk: badQueryIdentifier },
    job_id: { valid: fc.uuid().map(String), junk: fc.constantFrom('x', '', '123') },
  });
  const group = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(w.group, `${w.group}-other`).map((g) => ({ seg: g, ok: true as boolean | undefined })) },
    { weight: 2, arbitrary: identifier.map((g) => ({ seg: encodeSegment(g), ok: true as boolean | undefined })) },
    { weight: 2, arbitrary: badIdentifier.map((g) => ({ seg: encodeSegment(g), ok: false as boolean | undefined })) },
    { weight: 1, arbitrary: traversal.map((t) => ({ seg: rawSegment(t), ok: undefined })) },
  );
  return fc
    .tuple(keyArb(w), fc.constantFrom('groups', 'group', 'history', 'handovers'), group, history, handovers, ignoredQuery, fc.constantFrom('GET', 'HEAD'))
    .map(([k, what, g, h, ho, qs, method]) => {
      const [path, ok] =
        what === 'groups' ? ['/container-groups' + qs, true]
          : what === 'group' ? [`/container-groups/${g.seg}`, g.ok !== false]
            : what === 'history' ? [`/stats/jobs${h.qs}`, h.ok]
              : [`/stats/handovers${ho.qs}`, ho.ok];
      return { req: { method, path, headers: k.headers }, valid: () => USERS.includes(k.who) && ok, safe: true };
    });
}

// ---- the property -----------------------------------------------------------------------------

const isHead = (r: FuzzRequest) => r.method === 'HEAD';

async function check(w: World, c: Case, db: { snapshot: string }): Promise<void> {
  const before = db.snapshot;
  let a: Answer;
  try {
    a = await send(w.srv.url, c.req);
  } finally {
    // kept current even when a check fails, so that the runs of the shrinking compare with the right state
    db.snapshot = await w.srv.snapshot();
  }
  const shown = show(c.req, a);
  assert.ok((a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500), `2xx or 4xx: ${shown}`);
  if (!c.valid()) assert.ok(a.status >= 400, `an invalid request is refused: ${shown}`);
  if (a.status >= 400 && !isHead(c.req)) assertApiError(a, shown);
  if (a.status >= 400 || c.safe) assert.ok(db.snapshot === before, `the database is unchanged: ${shown}`);
  if (a.status < 300) c.accepted?.(a);
  const health = await send(w.srv.url, { method: 'GET', path: '/healthz' });
  assert.equal(health.status, 200, `alive after: ${shown}`);
}

const ROUTES: [string, (w: World) => fc.Arbitrary<Case>][] = [
  ['GET /users/me', usersMe],
  ['POST /users', createUser],
  ['POST /users/:id/token', createToken],
  ['GET /work (and HEAD)', claimWork],
  ['POST /jobs/:id/{heartbeat,completed,failed,release}', transitions],
  ['GET /jobs', listJobs],
  ['GET /jobs/:id and /jobs/:id/events', readJob],
  ['DELETE /jobs/:id', cancelJob],
  ['DELETE /jobs/container-groups/:id', purgeGroup],
  ['DELETE /jobs', clearJobs],
  ['POST /scaling-rules', createRule],
  ['PATCH /scaling-rules/:container_group_id', patchRule],
  ['GET /scaling-rules, /scaling-rules/:id, /scaling-rules/:id/decisions', readRules],
  ['DELETE /scaling-rules/:container_group_id', deleteRule],
  ['POST /jobs/:id/logs', shipLogs],
  ['GET /jobs/:id/logs', readLogs],
  ['GET /container-groups[/:id], /stats/jobs, /stats/handovers', dashboardReads],
  ['/healthz, /metrics, /openapi.json', system],
  ['no such route', unrouted],
];

for (const kind of STORES) {
  describe(`fuzzing every route (${kind})`, () => {
    let srv: TestServer;
    let a: TestUser;
    let b: TestUser;
    let adminId: string;
    before(async () => {
      // Autoscaling off: scaling rules are data here, and no evaluation changes the database between two snapshots.
      srv = await startTestServer(kind, { autoscaling: { enabled: false } });
      a = await srv.user();
      b = await srv.user();
      adminId = (await srv.admin.me()).id;
    });
    after(async () => {
      await srv?.close();
    });

    /** Fresh jobs of every status for A and B, then the property over `route`'s requests. */
    async function fuzz(route: (w: World) => fc.Arbitrary<Case>, numRuns = NUM_RUNS) {
      const w = await world(srv, a, b, adminId);
      const db = { snapshot: await srv.snapshot() };
      await fc.assert(
        fc.asyncProperty(route(w), (c) => check(w, c, db)),
        { numRuns, includeErrorInReport: true },
      );
    }

    for (const [name, route] of ROUTES) {
      test(`${name}: never a 5xx; invalid requests are 4xx {error, message}; a 4xx changes nothing`, () => fuzz(route));
    }

    test("other users' job ids, with otherwise valid requests, are 404 on every :id route and change nothing", async () => {
      const w = await world(srv, a, b, adminId);
      const theirs = [...w.owner].filter(([, o]) => o === 'B').map(([id]) => id);
      const route = fc.tuple(
        fc.constantFrom(...theirs),
        fc.constantFrom('GET ', 'GET /events', 'DELETE ', 'POST /heartbeat', 'POST /completed', 'POST /failed', 'POST /release'),
        fc.constantFrom<[string, string][]>([['x-kelpie-key', a.token]], [['authorization', `Bearer ${a.token}`]], [['x-kelpie-key', srv.adminKey]]),
        fc.oneof(heartbeatBody(w), machineBody(w)),
      );
      const db = { snapshot: await srv.snapshot() };
      await fc.assert(
        fc.asyncProperty(route, async ([id, what, auth, body]) => {
          const [method, sub] = what.split(' ') as [string, string];
          const req: FuzzRequest = {
            method,
            path: `/jobs/${id}${sub}`,
            headers: { ...Object.fromEntries(auth), ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
            ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
          };
          const answer = await send(srv.url, req);
          assert.equal(answer.status, 404, show(req, answer));
          assertApiError(answer, show(req, answer));
          assert.ok((await srv.snapshot()) === db.snapshot, `unchanged: ${show(req, answer)}`);
        }),
        { numRuns: 60, includeErrorInReport: true },
      );
    });

    // ---- what the fuzzing found, kept as examples ----

    test('found: HEAD /work claimed a job and answered without it (the job sat leased to no one); now 405 (GET only), nothing claimed', async () => {
      const w = await world(srv, a, b, adminId);
      const fresh = await a.client.createJob({ command: 'x', container_group_id: `${w.group}-head` });
      const before = await srv.snapshot();
      const req = { method: 'HEAD', path: `/work?machine_id=m9&container_group_id=${w.group}-head`, headers: { 'x-kelpie-key': a.token } };
      const answer = await send(srv.url, req);
      assert.equal(answer.status, 405, show(req, answer));
      assert.equal(answer.headers?.allow, 'GET', show(req, answer));
      assert.ok((await srv.snapshot()) === before, 'nothing changed');
      assert.equal((await a.client.getJob(fresh.id)).status, 'pending');
      await a.client.cancelJob(fresh.id);
    });

    test("found: requests Node's HTTP parser refuses were answered {error, message, statusCode} (Fastify's shape); now {error, message}", async () => {
      const cases: [string, number][] = [
        [`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Kelpie-Key: ${'k'.repeat(17_000)}\r\n\r\n`, 431],
        [`POST /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: abc\r\n\r\n{}`, 400],
        [`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n`, 400],
        [`G@T /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 400],
      ];
      for (const [bytes, status] of cases) {
        const answer = await sendRaw(srv.url, bytes);
        const shown = `${JSON.stringify(bytes.slice(0, 80))} → ${answer ? `${answer.status} ${answer.text}` : 'no answer'}`;
        assert.equal(answer?.status, status, shown);
        assertApiError(answer, shown);
      }
      // an answer to HEAD carries no body, or the client reads it as the next answer and fails
      const head = { method: 'HEAD', path: '/healthz', headers: { 'x-kelpie-key': 'k'.repeat(17_000) } };
      assert.equal((await send(srv.url, head)).status, 431);
    });

    test('malformed HTTP (bad request line, headers, lengths, chunking) is answered 4xx {error, message}, and the server lives on', async () => {
      // [text, surely malformed]: for the others the parser may be lenient, and a 200 is fine
      const line = fc.constantFrom<[string, boolean]>(
        ['GET /healthz HTTP/1.1', false],
        ['G@T /healthz HTTP/1.1', true],
        ['GET /he althz HTTP/1.1', true],
        ['GET /healthz HTTX/1.1', true],
        ['GET /\x01 HTTP/1.1', true],
        ['/healthz', true],
        ['GET /healthz HTTP/9.9', false],
        ['GET\t/healthz HTTP/1.1', false],
        ['GET http://[::1 HTTP/1.1', false],
      );
      const header = fc.oneof(
        fc.constantFrom<[string, boolean]>(
          ['Accept: */*', false],
          ['Content-Length: abc', true],
          ['Content-Length: -1', true],
          ['Content-Length: 1 2', true],
          ['Content-Length: 5\r\nContent-Length: 6', true],
          ['Content-Length: 3\r\nTransfer-Encoding: chunked', true],
          ['Transfer-Encoding: chunked\r\n\r\nzz\r\nxx', true],
          ['No colon here', true],
          ['Bad Name: x', true],
          ['X-Key: a\x00b', true],
          ['Transfer-Encoding: gzip, chunked\r\nTransfer-Encoding: identity', false],
          ['X-Key: a\x7fb', false],
          ['X-Key:\r\n continued', false],
        ),
        fc.integer({ min: 17_000, max: 40_000 }).map((n): [string, boolean] => [`X-Kelpie-Key: ${'k'.repeat(n)}`, true]),
      );
      await fc.assert(
        fc.asyncProperty(line, header, async ([l, badLine], [h, badHeader]) => {
          const bytes = `${l}\r\nHost: x\r\nConnection: close\r\n${h}\r\n\r\n`;
          const answer = await sendRaw(srv.url, bytes);
          const shown = `${JSON.stringify(bytes.slice(0, 200))} → ${answer ? `${answer.status} ${answer.text.slice(0, 200)}` : 'no answer'}`;
          assert.ok(answer, `an answer: ${shown}`);
          assert.ok(answer.status === 200 || (answer.status >= 400 && answer.status < 500), `200 or 4xx: ${shown}`);
          if (badLine || badHeader) assert.ok(answer.status >= 400, `refused: ${shown}`);
          if (answer.status >= 400) assertApiError(answer, shown);
          assert.equal((await send(srv.url, { method: 'GET', path: '/healthz' })).status, 200, `alive after: ${shown}`);
        }),
        { numRuns: 60, includeErrorInReport: true },
      );
    });
  });
}
