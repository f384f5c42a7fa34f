// CRC32 arithmetic (packages/storage/src/checksum.ts): the CRC32 of pieces combined in order is the
// CRC32 of their concatenation, whatever the cut; and a file read back in a worker thread hashes as
// its bytes do.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { crc32Combine, crc32OfPieces, hex8 } from '../../packages/storage/src/checksum.js';
import { digestOfFile } from '../../packages/storage/src/worker-pool.js';

test('crc32OfPieces of any cut of the bytes is the CRC32 of the whole', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 8 }), (arrays) => {
      const pieces = arrays.map((a) => Buffer.from(a));
      const whole = crc32(Buffer.concat(pieces));
      assert.equal(crc32OfPieces(pieces.map((p) => ({ crc32: crc32(p), length: p.length }))), whole);
    }),
    { numRuns: 300 },
  );
});

test('crc32Combine over a long run of zeros matches zlib, and an empty second piece changes nothing', () => {
  const a = randomBytes(1000);
  const zeros = Buffer.alloc(3 * 1024 * 1024 + 7); // odd length, many length bits
  assert.equal(crc32Combine(crc32(a), crc32(zeros), zeros.length), crc32(Buffer.concat([a, zeros])));
  assert.equal(crc32Combine(crc32(a), 0, 0), crc32(a));
});

test('digestOfFile answers the MD5 and the CRC32 of a file, as hex', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-checksum-'));
  try {
    const body = randomBytes(2 * 1024 * 1024 + 5);
    const file = join(dir, 'f.bin');
    await writeFile(file, body);
    assert.equal(await digestOfFile(file, 'md5'), createHash('md5').update(body).digest('hex'));
    assert.equal(await digestOfFile(file, 'crc32'), hex8(crc32(body)));
    await writeFile(file, Buffer.alloc(0));
    assert.equal(await digestOfFile(file, 'crc32'), '00000000');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
