// What the SDK does to a failure reason before sending it: the coordinator takes at most 2,000
// characters, no control characters but tab and newline, and no lone surrogates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FAILURE_REASON_MAX } from '@drover/protocol';
import { storableReason } from '@drover/sdk';

test('a plain reason, tabs and newlines included, is sent as it is', () => {
  assert.equal(storableReason('exited with code 1\n\tat main.py:3'), 'exited with code 1\n\tat main.py:3');
});

test('other control characters become spaces and lone surrogates go; pairs stay', () => {
  assert.equal(storableReason('a\u0000b\u001bc\rd'), 'a b c d');
  assert.equal(storableReason('x\ud800y\udc00z 😀'), 'xyz 😀');
});

test('a long reason is cut to the limit, never inside a surrogate pair, and says it was cut', () => {
  const long = storableReason('e'.repeat(5000));
  assert.equal(long.length, FAILURE_REASON_MAX);
  assert.ok(long.endsWith('…'));
  // A pair straddling the cut is dropped whole.
  const straddling = storableReason(`${'e'.repeat(FAILURE_REASON_MAX - 2)}😀${'e'.repeat(10)}`);
  assert.ok(straddling.length <= FAILURE_REASON_MAX);
  assert.equal(straddling, `${'e'.repeat(FAILURE_REASON_MAX - 2)}…`);
  assert.equal(storableReason('e'.repeat(FAILURE_REASON_MAX)), 'e'.repeat(FAILURE_REASON_MAX), 'exactly the limit is kept whole');
});
