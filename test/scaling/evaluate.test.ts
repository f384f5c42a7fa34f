// The scaling rule as a pure function: Kelpie's formula and actions, and Drover's additions.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { plan, desiredReplicas, windowExpiry, type GroupState } from '@drover/server';

const T = 1_700_000_000_000;
const rule = (extra: Partial<Parameters<typeof plan>[0]> = {}) => ({
  min_replicas: 0,
  max_replicas: 4,
  idle_threshold_seconds: 300,
  jobs_per_replica: 1,
  cooldown_seconds: 0,
  last_change: null,
  start_attempts: 0,
  last_start: null,
  ...extra,
});
const counts = (pending: number, running = 0, recentlyEnded = 0, oldestRecentEnd?: number) => ({ pending, running, recentlyEnded, oldestRecentEnd });
const group = (status: GroupState['status'], replicas: number): GroupState => ({ status, replicas });

describe('the scaling rule', () => {
  test('desired = clamp(pending + running + recently ended, min, max)', () => {
    assert.equal(desiredReplicas(rule(), counts(10)).desired, 4);
    assert.equal(desiredReplicas(rule(), counts(1, 1, 1)).desired, 3);
    assert.equal(desiredReplicas(rule({ min_replicas: 2 }), counts(0)).desired, 2);
    assert.equal(desiredReplicas(rule(), counts(0)).desired, 0);
  });

  test('jobs_per_replica divides the jobs among replicas, rounding up', () => {
    assert.equal(desiredReplicas(rule({ jobs_per_replica: 3, max_replicas: 100 }), counts(10)).desired, 4);
    assert.equal(desiredReplicas(rule({ jobs_per_replica: 3 }), counts(1)).desired, 1);
  });

  test('a stopped group with work is given its replicas and started', () => {
    const p = plan(rule(), counts(10), group('stopped', 0), T);
    assert.equal(p.action, 'start');
    assert.deepEqual(p.steps, [{ kind: 'resize', replicas: 4 }, { kind: 'start' }]);
    assert.deepEqual([p.from, p.to, p.desired], [0, 4, 4]);
    assert.match(p.reason, /10 jobs \(10 pending, 0 running, 0 ended in the last 300 s\) need 10 \(max_replicas 4\): set 4 replicas and start the group/);
  });

  test('a stopped group already set to the replicas wanted is only started', () => {
    assert.deepEqual(plan(rule(), counts(4), group('stopped', 4), T).steps, [{ kind: 'start' }]);
  });

  test('no work: a running group is stopped, a stopped one left alone', () => {
    const p = plan(rule(), counts(0), group('running', 3), T);
    assert.equal(p.action, 'stop');
    assert.deepEqual(p.steps, [{ kind: 'stop' }]);
    assert.deepEqual([p.from, p.to], [3, 0]);
    assert.equal(plan(rule(), counts(0), group('stopped', 3), T).action, 'none');
  });

  test('with min_replicas above 0 the group is never stopped', () => {
    const p = plan(rule({ min_replicas: 1 }), counts(0), group('running', 3), T);
    assert.equal(p.action, 'resize');
    assert.deepEqual(p.steps, [{ kind: 'resize', replicas: 1 }]);
  });

  test('a running group is resized to the count wanted, and left alone at it', () => {
    assert.deepEqual(plan(rule(), counts(2, 1), group('running', 1), T).steps, [{ kind: 'resize', replicas: 3 }]);
    assert.deepEqual(plan(rule(), counts(0, 1, 1), group('running', 4), T).steps, [{ kind: 'resize', replicas: 2 }]);
    const same = plan(rule(), counts(2), group('running', 2), T);
    assert.equal(same.action, 'none');
    assert.match(same.reason, /the group runs 2 already/);
  });

  test('a group deploying at the size wanted is neither started nor resized again', () => {
    const p = plan(rule(), counts(4), group('deploying', 4), T);
    assert.equal(p.action, 'none');
    assert.deepEqual(p.steps, []);
    assert.match(p.reason, /deploying with 4 replicas: waiting/);
    assert.deepEqual(plan(rule(), counts(4), group('pending', 4), T).steps, []);
    // but a deploying group asked for another size is resized (not started)
    assert.deepEqual(plan(rule(), counts(2), group('deploying', 4), T).steps, [{ kind: 'resize', replicas: 2 }]);
  });

  test('a scale-down waits for the cooldown after the last change; a scale-up never does', () => {
    const r = rule({ cooldown_seconds: 60, last_change: T - 30_000 });
    const down = plan(r, counts(1), group('running', 4), T);
    assert.equal(down.action, 'none');
    assert.equal(down.recheckAt, T + 30_000);
    assert.match(down.reason, /waits for the cooldown/);
    assert.equal(plan(r, counts(0), group('running', 4), T).action, 'none', 'a stop is a scale-down too');
    assert.equal(plan(r, counts(1), group('running', 4), T + 30_000).action, 'resize');
    assert.deepEqual(plan(r, counts(4, 2), group('running', 2), T).steps, [{ kind: 'resize', replicas: 4 }]);
  });

  test('starts that do not bring the group up are retried with backoff, not every evaluation', () => {
    const backoff = { baseMs: 60_000, maxMs: 600_000, jitter: 'none' as const };
    const r = rule({ start_attempts: 2, last_start: T });
    const waiting = plan(r, counts(1), group('failed', 1), T + 60_000, backoff);
    assert.equal(waiting.action, 'none');
    assert.equal(waiting.recheckAt, T + 120_000, 'the second retry waits 2 × 60 s');
    assert.match(waiting.reason, /after 2 starts that did not bring it up/);
    assert.equal(plan(r, counts(1), group('failed', 1), T + 120_000, backoff).action, 'start');
  });

  test('the count next drops when the oldest ended job leaves the idle window', () => {
    assert.equal(windowExpiry(rule({ idle_threshold_seconds: 10 }), counts(0, 0, 2, T)), T + 10_000);
    assert.equal(windowExpiry(rule(), counts(3)), undefined);
  });
});
