// BodyCheck (packages/storage/src/checksum.ts), the one check of a body against what it must be:
// its size, and its CRC32 (preferred: the object's drover-crc32 metadata) or else its MD5 (a plain
// ETag). Whatever the pieces a body arrives in, a body that is right passes and one that is longer,
// shorter or damaged is an IntegrityError (which the transfer engine retries).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { IntegrityError } from '../../packages/storage/src/object-store.js';
import { BodyCheck, checkPiecesCrc32, type BodyExpectation } from '../../packages/storage/src/checksum.js';

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/** Feeds `body` to a BodyCheck cut at `cuts`; answers what it verified, or the error it threw. */
function run(expect: BodyExpectation, body: Buffer, cuts: number[]): { verified?: string; crc32: number; error?: unknown } {
  const check = new BodyCheck(expect);
  try {
    let at = 0;
    for (const cut of [...cuts.map((c) => c % (body.length + 1)).sort((a, b) => a - b), body.length]) {
      check.update(body.subarray(at, Math.max(at, cut)));
      at = Math.max(at, cut);
    }
    return { verified: check.end(), crc32: check.crc32 };
  } catch (error) {
    return { error, crc32: check.crc32 };
  }
}

const bodies = fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 5000 }).map((a) => Buffer.from(a)), fc.array(fc.nat(), { maxLength: 5 }));

test('a body of the right size and checksum passes, checked by CRC32 when it is known, else by MD5', () => {
  fc.assert(fc.property(bodies, ([body, cuts]) => {
    assert.equal(run({ size: body.length, crc32: crc32(body), md5: '0'.repeat(32) }, body, cuts).verified, 'crc32', 'CRC32 wins over a wrong MD5');
    assert.equal(run({ size: body.length, md5: md5(body) }, body, cuts).verified, 'md5');
    assert.equal(run({ size: body.length }, body, cuts).verified, undefined, 'nothing to check but the size');
    const range = run({ size: body.length, computeCrc32: true }, body, cuts);
    assert.equal(range.verified, undefined);
    assert.equal(range.crc32, crc32(body), 'a range\'s CRC32 is computed for the caller');
  }), { numRuns: 200 });
});

test('a body that is longer, shorter or damaged is an IntegrityError naming what it is', () => {
  fc.assert(fc.property(bodies, fc.nat(), ([body, cuts], at) => {
    const damaged = Buffer.from(body);
    damaged[at % body.length] = damaged[at % body.length]! ^ 0xff;
    const cases: [BodyExpectation, Buffer, RegExp][] = [
      [{ size: body.length, crc32: crc32(body), label: 'b/k' }, damaged, /^b\/k: CRC32 [0-9a-f]{8} of the bytes received, the object's drover-crc32 is [0-9a-f]{8}$/],
      [{ size: body.length, md5: md5(body) }, damaged, /^MD5 [0-9a-f]{32} of the bytes received, the object's ETag is [0-9a-f]{32}$/],
      [{ size: body.length - 1, crc32: crc32(body) }, body, /more than the \d+ bytes expected/],
      [{ size: body.length + 1, md5: md5(body) }, body, /got \d+ of \d+ bytes/],
    ];
    for (const [expect, got, message] of cases) {
      const { error } = run(expect, got, cuts);
      assert.ok(error instanceof IntegrityError, `${String(error)}`);
      assert.match(error.message, message);
    }
  }), { numRuns: 200 });
  assert.throws(() => new BodyCheck({ size: 10 }).declared(11), (e) => e instanceof IntegrityError && /sends 11 bytes, expected 10/.test(e.message));
});

test('the CRC32 of ranges received apart is checked, combined, against the object\'s', () => {
  const body = randomBytes(10_000);
  const pieces = [body.subarray(0, 4096), body.subarray(4096, 8192), body.subarray(8192)].map((p) => ({ crc32: crc32(p), length: p.length }));
  checkPiecesCrc32(pieces, crc32(body), 'b/k');
  const swapped = [pieces[1]!, pieces[0]!, pieces[2]!];
  assert.throws(() => checkPiecesCrc32(swapped, crc32(body), 'b/k'), (e) => e instanceof IntegrityError && /^b\/k: CRC32 [0-9a-f]{8} of the 3 ranges received/.test(e.message));
});
