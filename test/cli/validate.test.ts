// The CLI checks a job definition locally (TypeBox's compiler over the protocol's JobDefinition,
// packages/cli/src/commands/jobs/validate.ts) before it sends anything; the coordinator checks it
// again with Ajv. The two must agree: a local check that refuses what the coordinator takes would
// block valid jobs, one that lets through what the coordinator refuses would name no field.
// Property-based, against a real coordinator: every definition is both checked by the CLI and
// POSTed to /jobs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { DroverApiError } from '@drover/sdk';
import { checkJobDefinition } from '../../packages/cli/src/commands/jobs/validate.js';
import { anyValue, isIdentifier, unicode } from '@drover/testing/fuzz';
import { startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

/** Strings at and around a length limit, in characters of one or two UTF-16 units. */
const nearLimit = (max: number) => fc
  .tuple(fc.constantFrom('x', 'é', '😀', '\u0001'), fc.integer({ min: Math.max(0, max - 2), max: max + 2 }))
  .map(([c, n]) => c.repeat(n));
const envName = fc.oneof(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/), unicode(6), fc.constantFrom('1A', 'A-B', 'a\nb', ''))
  .filter((k) => k !== '__proto__');
const entry = (direction: string) => fc.record(
  { bucket: fc.string({ minLength: 1, maxLength: 8 }), prefix: fc.string({ maxLength: 8 }), local_path: fc.string({ minLength: 1, maxLength: 8 }), direction: fc.constant(direction), pattern: fc.constant('*.bin') },
  { requiredKeys: ['bucket', 'prefix', 'local_path', 'direction'] },
);
const badEntry = (direction: string) => fc.record(
  {
    bucket: fc.oneof(fc.string({ maxLength: 8 }), anyValue),
    prefix: fc.oneof(fc.string({ maxLength: 8 }), anyValue),
    local_path: fc.oneof(fc.string({ maxLength: 8 }), anyValue, fc.constantFrom('..', 'ck/../x', 'a\\..')),
    direction: fc.oneof(fc.constant(direction), fc.constantFrom('download', 'upload', 'sideways')),
    pattern: fc.oneof(fc.constant('*.bin'), anyValue),
    extra: anyValue,
  },
  { requiredKeys: ['direction'] },
);

/** A field's value: mostly valid, sometimes at the edge of its limits, sometimes anything at all. */
const value = (valid: fc.Arbitrary<unknown>, edge?: fc.Arbitrary<unknown>) => fc.oneof(
  { arbitrary: valid, weight: 12 },
  ...(edge ? [{ arbitrary: edge, weight: 2 }] : []),
  { arbitrary: anyValue, weight: 1 },
);
const field: Record<string, fc.Arbitrary<unknown>> = {
  command: value(fc.constant('python'), nearLimit(4096)),
  arguments: value(fc.array(unicode(10), { maxLength: 3 }), fc.array(anyValue, { maxLength: 2 })),
  environment: value(fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/), unicode(10), { maxKeys: 3 }), fc.dictionary(envName, fc.oneof(unicode(10), anyValue), { maxKeys: 3 })),
  container_group_id: value(unicode(20).filter(isIdentifier), fc.oneof(nearLimit(256), fc.constantFrom('g😀', '😀'.repeat(256), '😀'.repeat(257), ''))),
  webhook: value(fc.constantFrom('https://example.com/hook', 'http://h.example.org:8080/x?y=1'), fc.constantFrom('ftp://x', 'http://exa mple', 'https://', 5, null)),
  max_failures: value(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: -2, max: 1002 })),
  heartbeat_interval: value(fc.integer({ min: 1, max: 86400 }), fc.constantFrom(0, 86401, 1.5, '30')),
  compression: value(fc.boolean()),
  sync: value(
    fc.record({ before: fc.array(entry('download'), { maxLength: 1 }), during: fc.array(entry('upload'), { maxLength: 1 }) }, { requiredKeys: [] }),
    fc.record({ before: fc.array(badEntry('download'), { maxLength: 2 }), after: anyValue }, { requiredKeys: [] }),
  ),
  input_bucket: value(fc.string({ maxLength: 10 }), nearLimit(255)),
  checkpoint_prefix: value(fc.string({ maxLength: 10 }), nearLimit(1024)),
};

const definition = fc
  .tuple(
    fc.record(field, { requiredKeys: ['command', 'container_group_id'] }),
    fc.oneof({ arbitrary: fc.constant(null), weight: 7 }, { arbitrary: fc.tuple(fc.constantFrom('max_failure', 'Command', 'sync_before'), anyValue), weight: 1 }),
  )
  // What reaches both checks is JSON (a job file, or the body sent).
  .map(([def, extra]) => JSON.parse(JSON.stringify(extra ? { ...def, [extra[0]]: extra[1] } : def)) as Record<string, unknown>);

describe('the CLI\'s local job check', () => {
  let srv: TestServer;
  let user: TestUser;
  before(async () => {
    srv = await startTestServer('sqlite');
    user = await srv.user();
  });
  after(() => srv.close());

  test('refuses exactly the job definitions the coordinator refuses', async () => {
    let refused = 0;
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(definition, async (def) => {
        const local = checkJobDefinition(def);
        let status = 202;
        let message = '';
        try {
          await user.client.createJob(def as never);
        } catch (err) {
          if (!(err instanceof DroverApiError)) throw err;
          status = err.status;
          message = err.message;
        }
        fc.pre(status !== 413); // over the body limit: the coordinator never looked at the fields
        assert.ok(status === 202 || status === 400, `HTTP ${status}: ${message}`);
        if (status === 400) refused++;
        else accepted++;
        assert.equal(
          local === undefined, status === 202,
          `CLI: ${local ? `${local.field} ${local.message}` : 'accepted'}; coordinator: ${status} ${message}; ${JSON.stringify(def).slice(0, 300)}`,
        );
      }),
      { numRuns: 400 },
    );
    assert.ok(refused > 50 && accepted > 20, `both answers were exercised (${refused} refused, ${accepted} accepted)`);
  });
});
