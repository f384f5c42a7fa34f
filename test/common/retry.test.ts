import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, retry } from '@drover/common';

describe('the one retry policy', () => {
  it('a delay doubles per retry up to its cap, spread by its jitter', () => {
    const b = { baseMs: 100, maxMs: 1000 };
    assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffDelay({ ...b, jitter: 'none' }, n)), [100, 200, 400, 800, 1000]);
    assert.equal(backoffDelay({ ...b, jitter: 'full' }, 3, () => 0.5), 200);
    assert.equal(backoffDelay({ ...b, jitter: 'full' }, 3, () => 0), 0);
    assert.equal(backoffDelay({ ...b, jitter: 'proportional' }, 3, () => 0), 200);
    assert.equal(backoffDelay({ ...b, jitter: 'proportional' }, 5, () => 0.99), 1000, 'capped after the spread too');
    assert.equal(backoffDelay({ ...b, jitter: 'proportional', spread: 0.25 }, 3, () => 0), 300, 'a narrower spread: from 3/4 …');
    assert.equal(backoffDelay({ ...b, jitter: 'proportional', spread: 0.25 }, 3, () => 0.999), 500, '… to 5/4 of the delay');
  });

  it('retries until success, and says so before each wait', async () => {
    const seen: number[] = [];
    const got = await retry(async (n) => {
      if (n < 3) throw new Error(`try ${n}`);
      return n;
    }, { attempts: 5, backoff: { baseMs: 1, maxMs: 2 }, onRetry: (r) => seen.push(r.attempt) });
    assert.equal(got, 3);
    assert.deepEqual(seen, [1, 2]);
  });

  it('an error that is not retryable is thrown at once; running out throws what giveUp makes', async () => {
    let tries = 0;
    await assert.rejects(retry(async () => { tries++; throw new Error('fatal'); }, { attempts: 5, backoff: { baseMs: 1, maxMs: 1 }, retryable: () => false }), /fatal/);
    assert.equal(tries, 1);
    tries = 0;
    await assert.rejects(
      retry(async () => { tries++; throw new Error('flaky'); }, { attempts: 3, backoff: { baseMs: 1, maxMs: 1 }, giveUp: (e, n) => new Error(`gave up after ${n}: ${(e as Error).message}`) }),
      /gave up after 3: flaky/,
    );
    assert.equal(tries, 3);
  });

  it('a failure that says how long to wait (Retry-After) is waited for at least that long', async () => {
    const waits: number[] = [];
    await retry(async (n) => {
      if (n < 3) throw Object.assign(new Error('429'), { retryAfterMs: n === 1 ? 40 : undefined });
      return n;
    }, { attempts: 3, backoff: { baseMs: 1, maxMs: 1, jitter: 'none' }, delayFor: (e) => (e as { retryAfterMs?: number }).retryAfterMs, onRetry: (r) => waits.push(r.delayMs) });
    assert.deepEqual(waits, [40, 1], 'the asked-for wait first, the backoff where none was asked for');
  });

  it('an abort during the wait stops at once', async () => {
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(retry(async () => { throw new Error('down'); }, { attempts: 10, backoff: { baseMs: 10_000, maxMs: 10_000, jitter: 'none' }, signal: ac.signal }), { name: 'AbortError' });
    assert.ok(Date.now() - started < 5000);
  });
});
