// Property-based fuzzing of job submission: whatever arrives at POST /jobs and POST /jobs/batch,
// the answer is 202 or a 4xx {error, message}, never a 5xx; a rejection queues nothing and an
// acceptance queues exactly the jobs sent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Job, JobDefinition } from '@drover/sdk';
import { parentSegmentPaths } from '@drover/protocol';
import { anyValue, assertApiError, isIdentifier, overLimit, send, traversal, unicode, type Answer } from '@drover/testing/fuzz';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

const NUM_RUNS = 150;

// ---- generators -------------------------------------------------------------------------------

const identifier = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/).filter((k) => k !== '__proto__');
const groupId = unicode(40).filter(isIdentifier);
/** A sync entry of a phase: before-sync downloads, during and after upload. */
const syncEntry = (direction: 'download' | 'upload') => fc.record(
  {
    bucket: fc.string({ minLength: 1, maxLength: 20 }),
    // A local_path with ".." segments is refused at submission (bad-input.test.ts); other traversal
    // (absolute paths, symlinks) is the worker's to refuse, since it knows its data root.
    prefix: fc.oneof(fc.string({ maxLength: 20 }), traversal),
    local_path: fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), traversal.filter((s) => s.length > 0)).filter((p) => parentSegmentPaths({ sync: { before: [{ local_path: p }] } }).length === 0),
    direction: fc.constant(direction),
    pattern: fc.constantFrom('*', 'checkpoint-*', '*.bin'),
  },
  { requiredKeys: ['bucket', 'prefix', 'local_path', 'direction'] },
);

/** Values every field accepts. */
const validField = {
  command: unicode(60).filter((s) => s.length > 0),
  arguments: fc.array(unicode(30), { maxLength: 5 }),
  environment: fc.dictionary(identifier, unicode(30), { maxKeys: 5 }),
  container_group_id: groupId,
  webhook: fc.constantFrom('https://example.com/hook', 'http://hooks.example.org:8080/x?y=1'),
  max_failures: fc.integer({ min: 1, max: 1000 }),
  heartbeat_interval: fc.integer({ min: 1, max: 86400 }),
  compression: fc.boolean(),
  sync: fc.record(
    { before: fc.array(syncEntry('download'), { maxLength: 2 }), during: fc.array(syncEntry('upload'), { maxLength: 2 }), after: fc.array(syncEntry('upload'), { maxLength: 2 }) },
    { requiredKeys: [] },
  ),
  input_bucket: fc.string({ maxLength: 20 }),
  input_prefix: fc.oneof(fc.string({ maxLength: 20 }), traversal),
  checkpoint_bucket: fc.string({ maxLength: 20 }),
  checkpoint_prefix: fc.oneof(fc.string({ maxLength: 20 }), traversal),
  output_bucket: fc.string({ maxLength: 20 }),
  output_prefix: fc.oneof(fc.string({ maxLength: 20 }), traversal),
};
type Field = keyof typeof validField;
const FIELDS = Object.keys(validField) as Field[];

const validDef: fc.Arbitrary<JobDefinition> = fc.record(validField, {
  requiredKeys: ['command', 'container_group_id'],
}) as fc.Arbitrary<JobDefinition>;

/** An object of the real field names, each absent, valid, or a random value of a random type; maybe an unknown key. */
const fieldy: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.record(
      Object.fromEntries(FIELDS.map((f) => [f, fc.oneof(validField[f] as fc.Arbitrary<unknown>, anyValue)])),
      { requiredKeys: [] },
    ),
    fc.option(fc.tuple(unicode(12), anyValue), { freq: 5 }),
  )
  .map(([def, extra]) => (extra ? { ...def, [extra[0]]: extra[1] } : def));

/** Mutations each making a definition invalid (by schema), with the field they break. */
const breakDef = fc.constantFrom<[string, (d: JobDefinition) => Record<string, unknown>]>(
  ['command', (d) => ({ ...d, command: 5 })],
  ['command', ({ command: _c, ...d }) => d],
  ['command', (d) => ({ ...d, command: '' })],
  ['container_group_id', ({ container_group_id: _g, ...d }) => d],
  ['container_group_id', (d) => ({ ...d, container_group_id: 'a\nb' })],
  ['max_failures', (d) => ({ ...d, max_failures: '3' })],
  ['max_failures', (d) => ({ ...d, max_failures: 0 })],
  ['heartbeat_interval', (d) => ({ ...d, heartbeat_interval: 0 })],
  ['arguments', (d) => ({ ...d, arguments: 'x' })],
  ['environment', (d) => ({ ...d, environment: { ...d.environment, '1A': 'x' } })],
  ['environment', (d) => ({ ...d, environment: { OK: 1 } })],
  ['webhook', (d) => ({ ...d, webhook: 'ftp://example.com/' })],
  ['unknown', (d) => ({ ...d, unknown: true })],
);

// ---- the checks -------------------------------------------------------------------------------

const post = (srv: TestServer, u: TestUser, path: string, raw: string): Promise<Answer> =>
  send(srv.url, { method: 'POST', path, headers: { 'x-kelpie-key': u.token, 'content-type': 'application/json' }, body: raw });

/** Jobs in the database; only the fuzzing user submits on this server. */
async function jobCount(srv: TestServer): Promise<number> {
  const byStatus = await srv.server.store.countJobsByStatus();
  return Object.values(byStatus).reduce((a, b) => a + b, 0);
}

/**
 * Send `raw`; the answer must be 202 or a 4xx {error, message[, index]}; the job count must grow by
 * exactly the jobs accepted (1, or the batch's length) and not at all on a rejection.
 */
async function submit(srv: TestServer, u: TestUser, path: '/jobs' | '/jobs/batch', raw: string): Promise<Answer> {
  const before = await jobCount(srv);
  const a = await post(srv, u, path, raw);
  const shown = `${path} ${raw.slice(0, 200)} → ${a.status} ${a.text.slice(0, 300)}`;
  assert.ok(a.status === 202 || (a.status >= 400 && a.status < 500), `202 or 4xx: ${shown}`);
  const after = await jobCount(srv);
  if (a.status === 202) {
    const accepted = path === '/jobs' ? 1 : (a.json as unknown[]).length;
    if (path === '/jobs/batch') assert.equal(accepted, (JSON.parse(raw) as unknown[]).length, shown);
    assert.equal(after - before, accepted, `job count grows by the jobs accepted: ${shown}`);
  } else {
    assertApiError(a, shown);
    assert.equal(after, before, `a rejection queues nothing: ${shown}`);
  }
  return a;
}

/** What the job document must say for a definition that was accepted. */
function assertSameDefinition(job: Job, generated: JobDefinition) {
  const def = JSON.parse(serialize(generated)) as JobDefinition; // as sent (plain objects)
  assert.equal(job.status, 'pending');
  assert.equal(job.command, def.command);
  assert.equal(job.container_group_id, def.container_group_id);
  assert.deepEqual(job.arguments, def.arguments ?? []);
  assert.deepEqual(job.environment, def.environment ?? {});
  assert.equal(job.max_failures, def.max_failures ?? 3);
  assert.equal(job.heartbeat_interval, def.heartbeat_interval ?? 30);
  assert.equal(job.compression, def.compression ?? false);
  assert.equal(job.webhook, def.webhook ?? null);
  assert.deepEqual(job.sync, def.sync ?? null);
  for (const f of ['input_bucket', 'input_prefix', 'checkpoint_bucket', 'checkpoint_prefix', 'output_bucket', 'output_prefix'] as const) {
    assert.equal(job[f], def[f] ?? null, f);
  }
}

const serialize = (v: unknown) => JSON.stringify(v) ?? '';

for (const kind of STORES) {
  describe(`fuzzing job submission (${kind})`, () => {
    let srv: TestServer;
    let u: TestUser;
    before(async () => {
      srv = await startTestServer(kind);
      u = await srv.user();
    });
    after(async () => {
      await srv?.close();
    });

    test('any body sent to POST /jobs is answered 202 or 4xx {error, message}, and only a 202 queues (one job)', async () => {
      const body = fc.oneof(
        { arbitrary: fc.anything().map(serialize), weight: 2 },
        { arbitrary: fc.json(), weight: 2 },
        { arbitrary: fieldy.map(serialize), weight: 6 },
        { arbitrary: validDef.map(serialize), weight: 2 },
        { arbitrary: fc.string({ maxLength: 40 }), weight: 1 },
        { arbitrary: fc.tuple(validDef, overLimit).map(([d, s]) => serialize({ ...d, command: s })), weight: 1 },
      );
      await fc.assert(
        fc.asyncProperty(body, async (raw) => {
          await submit(srv, u, '/jobs', raw);
        }),
        { numRuns: NUM_RUNS },
      );
    });

    test('any body sent to POST /jobs/batch is answered 202 or 4xx {error, message}, and a 202 queues exactly the batch', async () => {
      const item = fc.oneof({ arbitrary: validDef as fc.Arbitrary<unknown>, weight: 3 }, { arbitrary: fieldy, weight: 2 }, { arbitrary: anyValue, weight: 1 });
      const body = fc.oneof(
        { arbitrary: fc.array(item, { maxLength: 8 }).map(serialize), weight: 6 },
        { arbitrary: fc.array(validDef, { minLength: 1, maxLength: 8 }).map(serialize), weight: 2 },
        { arbitrary: fc.anything().map(serialize), weight: 1 },
        { arbitrary: fc.json(), weight: 1 },
      );
      await fc.assert(
        fc.asyncProperty(body, async (raw) => {
          await submit(srv, u, '/jobs/batch', raw);
        }),
        { numRuns: NUM_RUNS },
      );
    });

    test('valid definitions are always accepted, and the job documents repeat them with the defaults filled in', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(validDef, { minLength: 1, maxLength: 5 }), fc.boolean(), async (defs, oneByOne) => {
          if (oneByOne) {
            for (const def of defs) {
              const a = await submit(srv, u, '/jobs', serialize(def));
              assert.equal(a.status, 202, a.text.slice(0, 300));
              assertSameDefinition(a.json as Job, def);
            }
          } else {
            const a = await submit(srv, u, '/jobs/batch', serialize(defs));
            assert.equal(a.status, 202, a.text.slice(0, 300));
            (a.json as Job[]).forEach((job, i) => assertSameDefinition(job, defs[i]!));
          }
        }),
        { numRuns: NUM_RUNS },
      );
    });

    test('a batch with invalid definitions among valid ones is 400 with the index of the first invalid one, naming its field', async () => {
      const batch = fc
        .array(fc.tuple(validDef, fc.option(breakDef, { freq: 3 })), { minLength: 1, maxLength: 8 })
        .filter((items) => items.some(([, broken]) => broken !== null));
      await fc.assert(
        fc.asyncProperty(batch, async (items) => {
          const defs = items.map(([d, broken]) => (broken ? broken[1](d) : d));
          const first = items.findIndex(([, broken]) => broken !== null);
          const a = await submit(srv, u, '/jobs/batch', serialize(defs));
          assert.equal(a.status, 400, a.text.slice(0, 300));
          const body = a.json as { index?: number; message: string };
          assert.equal(body.index, first, body.message);
          assert.ok(body.message.startsWith(`body/${first}`), body.message);
          const field = items[first]![1]![0];
          if (field !== 'unknown') assert.ok(body.message.includes(field), `${body.message} names ${field}`);
        }),
        { numRuns: NUM_RUNS },
      );
    });
  });
}
