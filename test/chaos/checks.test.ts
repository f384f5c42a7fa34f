// The chaos checks on hand-made histories: each catches the defect it is there for.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobEvent } from '@drover/protocol';
import {
  checkEvents, checkOutput, checkWrites, parseAppLine, redoBound, redoneWork, tenures,
  type AppLine, type JobRecord,
} from '../../chaos/checks.js';

const T0 = Date.parse('2026-11-21T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const ev = (type: JobEvent['type'], s: number, machine: string | null, attempt: number): JobEvent => ({ type, at: at(s), machine_id: machine, attempt }) as JobEvent;

function job(events: JobEvent[], extra: Partial<JobRecord> = {}): JobRecord {
  return { id: 'j1', prefix: 'runs/job-1/', status: 'completed', events, expectedSum: '15', output: '{"sum": "15"}', outputIntact: true, ...extra };
}

/** a holds the job 0–10 s (killed), b from 10 s until it completes at 20 s. */
const handover = [
  ev('created', 0, null, 0),
  ev('claimed', 0, 'a', 1),
  ev('lease_expired', 10, 'a', 1),
  ev('claimed', 10, 'b', 2),
  ev('completed', 20, 'b', 2),
];

describe('chaos checks', () => {
  test('tenures: each claim holds until the next claim or the end', () => {
    assert.deepEqual(tenures(handover).map((t) => [t.machine, (t.from - T0) / 1000, (t.to - T0) / 1000]), [['a', 0, 10], ['b', 10, 20]]);
  });

  test('events: a clean handover passes; a second claim before the first attempt ended, a skipped attempt or two completions fail', () => {
    assert.deepEqual(checkEvents(job(handover)), []);
    const overlapping = handover.filter((e) => e.type !== 'lease_expired');
    assert.deepEqual(checkEvents(job(overlapping)).map((p) => p.check), ['one holder']);
    const twice = [...handover, ev('completed', 21, 'b', 2)];
    assert.deepEqual(checkEvents(job(twice)).map((p) => p.check), ['exactly-once completion']);
    const byStale = [...handover.slice(0, -1), ev('completed', 20, 'a', 1)];
    assert.deepEqual(checkEvents(job(byStale)).map((p) => p.check), ['exactly-once completion']);
    const skipped = handover.map((e) => (e.type === 'claimed' && e.machine_id === 'b' ? { ...e, attempt: 3 } : e));
    assert.ok(checkEvents(job(skipped)).some((p) => p.check === 'attempts'));
  });

  test('output: missing, damaged, wrong or unfinished results fail', () => {
    assert.deepEqual(checkOutput(job(handover)), []);
    assert.equal(checkOutput(job(handover, { output: undefined }))[0]?.check, 'output present');
    assert.equal(checkOutput(job(handover, { outputIntact: false }))[0]?.check, 'output intact');
    assert.equal(checkOutput(job(handover, { output: '{"sum": "16"}' }))[0]?.check, 'exact sum');
    assert.equal(checkOutput(job(handover, { status: 'failed' }))[0]?.check, 'completed');
  });

  test('writes: only the holder of the moment writes under the job\'s prefix', () => {
    const w = (s: number, machine: string, key = 'runs/job-1/state/state.json') => ({ at: T0 + s * 1000, machine, key });
    assert.deepEqual(checkWrites(job(handover), [w(5, 'a'), w(15, 'b'), w(12, 'a', 'runs/job-2/x')]), []);
    const stale = checkWrites(job(handover), [w(12, 'a')]);
    assert.equal(stale.length, 1);
    assert.match(stale[0]!.detail, /a wrote .* while b held the job/);
  });

  test('app lines are parsed from what series-sum prints', () => {
    assert.deepEqual(parseAppLine('j1', `${at(3)} machine a: saved step 3 of 10, partial sum 6`), { jobId: 'j1', at: T0 + 3000, machine: 'a', kind: 'saved', step: 3 });
    assert.deepEqual(parseAppLine('j1', `${at(11)} machine b: resumed 1..10 at step 3 of 10, partial sum 6`), { jobId: 'j1', at: T0 + 11000, machine: 'b', kind: 'started', step: 3 });
    assert.equal(parseAppLine('j1', `${at(0)} machine a: started 1..10 (10 steps) at step 0`)?.step, 0);
    assert.equal(parseAppLine('j1', 'something else'), undefined);
  });

  test('redone work: steps past the checkpoint the next holder resumed from, up to the interruption', () => {
    const lines: AppLine[] = [
      { jobId: 'j1', machine: 'a', kind: 'started', step: 0, at: T0 },
      ...[1, 2, 3, 4, 5, 6, 7].map((s): AppLine => ({ jobId: 'j1', machine: 'a', kind: 'saved', step: s, at: T0 + s * 1000 })),
      { jobId: 'j1', machine: 'b', kind: 'started', step: 5, at: T0 + 11_000 },
    ];
    const [r] = redoneWork(job(handover), lines, [{ machine: 'a', kind: 'kill', at: T0 + 7500 }], 1000, 1);
    // a saved step 7 at 7 s and was killed at 7.5 s; b resumed from step 5 (saved at 5 s).
    assert.equal(r?.steps, 2);
    assert.equal(r?.seconds, 2.5);
    assert.equal(r?.kind, 'kill');
    assert.equal(redoBound(r!, 2, [], 4000), 2);
    assert.equal(redoBound(r!, 2, [{ down: T0 + 6000, up: T0 + 9000 }], 4000), 9, 'an outage in between adds itself and one lease');
    assert.equal(redoBound(r!, 2, [{ down: T0 + 30_000, up: T0 + 33_000 }], 4000), 2, 'a later outage adds nothing');
  });

  test('redone work: the checkpoint resumed from is the latest save of that step, whatever order the logs were read in', () => {
    // a holds 0–10 s and saved step 5 locally at 5 s (its upload never landed); b resumed from step 3,
    // saved step 5 at 12 s and was killed at 12.5 s; c resumed from b's step 5. The logs come per
    // worker: b's (retired) before a's (still alive), so a's older save of step 5 is read last.
    const events = [
      ev('created', 0, null, 0), ev('claimed', 0, 'a', 1), ev('lease_expired', 10, 'a', 1),
      ev('claimed', 10, 'b', 2), ev('lease_expired', 20, 'b', 2), ev('claimed', 20, 'c', 3), ev('completed', 30, 'c', 3),
    ];
    const line = (machine: string, kind: AppLine['kind'], step: number, s: number): AppLine => ({ jobId: 'j1', machine, kind, step, at: T0 + s * 1000 });
    const lines = [
      line('b', 'started', 3, 10.5), line('b', 'saved', 4, 11), line('b', 'saved', 5, 12),
      line('a', 'started', 0, 0), ...[1, 2, 3, 4, 5].map((s) => line('a', 'saved', s, s)),
      line('c', 'started', 5, 21),
    ];
    const redos = redoneWork(job(events), lines, [{ machine: 'b', kind: 'kill', at: T0 + 12_500 }], 1000, 1);
    const bc = redos.find((r) => r.from === 'b' && r.to === 'c');
    assert.equal(bc?.steps, 0);
    assert.equal(bc?.seconds, 0.5, 'counted from b\'s save of step 5, not a\'s older one');
  });
});
