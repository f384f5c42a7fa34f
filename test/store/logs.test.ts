// Job logs and the dashboard's reads, on both stores: an attempt's lines are kept in order, once
// each, up to the cap, only from the machine that ran it and only for the job's owner; groups,
// history and handovers count what they say they count.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { type NewJob } from '@drover/server';
import type { LogLineIn } from '@drover/protocol';
import { STORES } from '@drover/testing/server';
import { T0, storeForSuite, storeJob, storeUser } from '@drover/testing/store';

const LEASE_MS = 2 * 30 * 1000;
const CAP = 10_000;

const newJob = (group: string): NewJob => storeJob(group, { max_failures: 2 });

const lines = (from: number, n: number, text = (i: number) => `line ${i}`): LogLineIn[] =>
  Array.from({ length: n }, (_, k) => ({ seq: from + k, at: new Date(T0 + from + k).toISOString(), stream: k % 5 === 4 ? 'stderr' : 'stdout', text: text(from + k) }));

for (const kind of STORES) {
  describe(`job logs and dashboard reads (${kind})`, () => {
    const store = storeForSuite(kind);

    async function fixture() {
      const { userId, group } = await storeUser(store(), 'logs');
      const [job] = await store().createJobs(userId, [newJob(group)], T0);
      const ship = (machineId: string, attempt: number, batch: LogLineIn[], dropped?: number, capBytes = CAP) =>
        store().appendLogs({ userId, jobId: job!.id, machineId, now: T0 + 1000, capBytes }, { attempt, lines: batch, ...(dropped !== undefined ? { dropped } : {}) });
      const read = (q: { attempt?: number; after?: number; limit?: number; tail?: number } = {}) =>
        store().readLogs(userId, job!.id, { after: -1, limit: 1000, ...q });
      return { userId, group, job: job!, ship, read };
    }

    test("an attempt's lines are read back in order, a page at a time, and a retried batch is stored once", async () => {
      const f = await fixture();
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      const first = await f.ship('m1', 1, lines(0, 30));
      assert.equal(first.kind, 'applied');
      assert.equal(first.kind === 'applied' && first.accepted, 30);
      // the same batch again (its answer was lost), overlapping the next one
      const again = await f.ship('m1', 1, lines(20, 20));
      assert.equal(again.kind === 'applied' && again.accepted, 10);
      const page1 = await f.read({ limit: 25 });
      assert.deepEqual(page1?.lines.map((l) => l.seq), Array.from({ length: 25 }, (_, i) => i));
      assert.equal(page1?.more, true);
      const page2 = await f.read({ after: 24, limit: 25 });
      assert.deepEqual(page2?.lines.map((l) => l.seq), Array.from({ length: 15 }, (_, i) => 25 + i));
      assert.equal(page2?.more, false);
      assert.equal(page2?.lines[4]?.stream, 'stderr');
      assert.equal(page2?.lines[0]?.text, 'line 25');
      const tail = await f.read({ tail: 3 });
      assert.deepEqual(tail?.lines.map((l) => l.seq), [37, 38, 39]);
      assert.equal(page2?.attempts[0]?.lines, 40);
    });

    test('an attempt keeps at most cap bytes: the lines past it are dropped and counted, and the log says truncated', async () => {
      const f = await fixture();
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      const text = () => 'x'.repeat(99); // 100 bytes with its newline
      const r1 = await f.ship('m1', 1, lines(0, 60, text));
      assert.ok(r1.kind === 'applied' && !r1.cap.truncated && r1.cap.stored_bytes === 6000);
      const r2 = await f.ship('m1', 1, lines(60, 60, text));
      assert.ok(r2.kind === 'applied');
      assert.equal(r2.accepted, 40, 'the cap of 10,000 bytes holds 100 lines');
      assert.equal(r2.cap.truncated, true);
      assert.equal(r2.cap.stored_bytes, CAP);
      // a line that would still fit after a bigger one did not: the log ends at the cap
      const r3 = await f.ship('m1', 1, lines(120, 1, () => ''));
      assert.ok(r3.kind === 'applied' && r3.accepted === 0 && r3.cap.truncated);
      const page = await f.read();
      assert.equal(page?.lines.length, 100);
      assert.equal(page?.attempts[0]?.truncated, 1);
      assert.equal(page?.attempts[0]?.dropped, 21);
      assert.equal(page?.attempts[0]?.bytes, CAP);
    });

    test("lines the worker dropped are counted once, with its batch's first try", async () => {
      const f = await fixture();
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      await f.ship('m1', 1, lines(0, 5), 7);
      await f.ship('m1', 1, lines(0, 5), 7); // a retry of the same batch
      assert.equal((await f.read())?.attempts[0]?.dropped, 7);
    });

    test('only the machine that ran an attempt may ship its lines, also after its lease lapsed; a later attempt has its own log', async () => {
      const f = await fixture();
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      assert.equal((await f.ship('m2', 1, lines(0, 1))).kind, 'not_holder');
      assert.equal((await f.ship('m1', 2, lines(0, 1))).kind, 'not_holder', 'an attempt that has not happened');
      await f.ship('m1', 1, lines(0, 3));
      // m1 goes silent; m2 takes the job over
      const taken = await store().claimJob({ userId: f.userId, machineId: 'm2', groupId: f.group, now: T0 + LEASE_MS + 1 });
      assert.equal(taken?.attempt, 2);
      assert.equal((await f.ship('m1', 1, lines(3, 2))).kind, 'applied', "m1's late lines are still attempt 1's");
      assert.equal((await f.ship('m1', 2, lines(0, 1))).kind, 'not_holder');
      assert.equal((await f.ship('m2', 2, lines(0, 4))).kind, 'applied');
      const newest = await f.read();
      assert.equal(newest?.attempt, 2);
      assert.equal(newest?.lines.length, 4);
      assert.equal(newest?.done, false);
      const old = await f.read({ attempt: 1 });
      assert.deepEqual(old?.lines.map((l) => l.seq), [0, 1, 2, 3, 4]);
      assert.equal(old?.done, true, 'attempt 1 is over once attempt 2 has the job');
      assert.deepEqual(newest?.attempts.map((a) => [a.attempt, a.machine_id]), [[1, 'm1'], [2, 'm2']]);
    });

    test('an attempt names its machine before its first line is shipped, and a later attempt its own', async () => {
      const f = await fixture();
      assert.equal((await f.read())?.machineId, null, 'a pending job has no machine');
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      const claimed = await f.read();
      assert.deepEqual([claimed?.attempt, claimed?.attempts.length, claimed?.machineId], [1, 0, 'm1']);
      await f.ship('m1', 1, lines(0, 2));
      await store().claimJob({ userId: f.userId, machineId: 'm2', groupId: f.group, now: T0 + LEASE_MS + 1 });
      assert.deepEqual([(await f.read({ attempt: 2 }))?.machineId, (await f.read({ attempt: 1 }))?.machineId], ['m2', 'm1']);
    });

    test("another user's job has no logs for you: shipping and reading are not found", async () => {
      const f = await fixture();
      const other = await fixture();
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      await f.ship('m1', 1, lines(0, 2));
      assert.equal(await store().readLogs(other.userId, f.job.id, { after: -1, limit: 10 }), undefined);
      const foreign = await store().appendLogs({ userId: other.userId, jobId: f.job.id, machineId: 'm1', now: T0, capBytes: CAP }, { attempt: 1, lines: lines(2, 1) });
      assert.equal(foreign.kind, 'not_found');
      assert.equal((await f.read())?.lines.length, 2);
    });

    test('a container group summary counts jobs by status, the claimable queue, live machines and banned machines', async () => {
      const f = await fixture();
      await store().createJobs(f.userId, [newJob(f.group), newJob(f.group), newJob(f.group)], T0);
      // 4 jobs: m1 and m2 take one each, m2 fails its (m2 banned, the job back in the queue)
      const a = await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      const b = await store().claimJob({ userId: f.userId, machineId: 'm2', groupId: f.group, now: T0 + 5 });
      await store().failJob({ userId: f.userId, jobId: b!.id, machineId: 'm2', now: T0 + 10 });
      const [g] = await store().groupSummaries(f.userId, T0 + 20, f.group);
      assert.equal(g?.jobs.running, 2, 'the failed-back job stays running, held by nobody');
      assert.equal(g?.jobs.pending, 2);
      assert.equal(g?.queue_depth, 3, '2 pending + 1 failed back');
      assert.equal(g?.running_machines, 1);
      assert.equal(g?.banned_machines, 1);
      assert.equal(g?.oldest_heartbeat, T0);
      const later = (await store().groupSummaries(f.userId, T0 + LEASE_MS + 1, f.group))[0];
      assert.equal(later?.running_machines, 0, "m1's lease has lapsed");
      assert.equal(later?.queue_depth, 4);
      assert.deepEqual((await store().bannedMachines(f.userId, f.group, 10)).map((m) => [m.machine_id, m.jobs]), [['m2', 1]]);
      assert.deepEqual((await store().groupMachines(f.userId, f.group, T0 + 20, 10)).map((m) => [m.machine_id, m.job_id, m.lease_live]), [['m1', a!.id, true]]);
      assert.deepEqual(await store().groupSummaries(randomUUID(), T0), [], "another user's groups are not yours");
    });

    test('job history gives the jobs in each status at the end of each bucket', async () => {
      const f = await fixture(); // one job created at T0
      const [x, y] = await store().createJobs(f.userId, [newJob(f.group), newJob(f.group)], T0 + 1500);
      const a = await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 + 2500 }); // the oldest: f.job
      await store().completeJob({ userId: f.userId, jobId: a!.id, machineId: 'm1', now: T0 + 3500 });
      await store().cancelJob(f.userId, y!.id, T0 + 3600);
      assert.ok(x);
      const h = await store().jobHistory(f.userId, { end: T0 + 4000, stepMs: 1000, buckets: 4 });
      // bucket ends: T0+1000, +2000, +3000, +4000
      assert.deepEqual(h.times, [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000]);
      assert.deepEqual(h.series.pending, [1, 3, 2, 1]);
      assert.deepEqual(h.series.running, [0, 0, 1, 0]);
      assert.deepEqual(h.series.completed, [0, 0, 0, 1]);
      assert.deepEqual(h.series.canceled, [0, 0, 0, 1]);
      assert.deepEqual(h.series.failed, [0, 0, 0, 0]);
    });

    test("job history matches the jobs' own timestamps: every group or one, windows before, among and after the jobs, both ways of counting", async () => {
      const { userId, group } = await storeUser(store(), 'history');
      const groups = [group, `${group}-b`];
      // One timeline of 40 jobs in two groups, with claims, completions, failures (for good: max 1),
      // cancels of running and of pending jobs and releases among the submissions; time only moves on.
      let t = T0;
      const jobs = [];
      const claims: { id: string; machine: string }[] = [];
      for (let i = 0; i < 40; i++) {
        jobs.push(...(await store().createJobs(userId, [storeJob(groups[i % 2]!, { max_failures: 1 })], (t += 400))));
        if (i >= 2 && i < 30) {
          const got = await store().claimJob({ userId, machineId: `m${i}`, groupId: groups[i % 2]!, now: (t += 300) });
          if (got) claims.push({ id: got.id, machine: `m${i}` });
        }
        const k = claims.length - 3; // end the attempt claimed three claims ago
        const c = i % 2 === 0 && k >= 0 ? claims[k] : undefined;
        if (c) {
          const ref = { userId, jobId: c.id, machineId: c.machine, now: (t += 300) };
          if (k % 5 === 0) await store().completeJob(ref);
          else if (k % 5 === 1) await store().failJob(ref);
          else if (k % 5 === 2) await store().cancelJob(userId, c.id, ref.now);
          else if (k % 5 === 3) await store().releaseJob(ref);
        }
      }
      assert.ok(claims.length >= 20);
      const claimed = new Set(claims.map((c) => c.id));
      for (const j of jobs.filter((j) => !claimed.has(j.id)).slice(0, 4)) await store().cancelJob(userId, j.id, (t += 300));

      const rows = await store().listJobs({ userId, limit: 1000, offset: 0, asc: true });
      assert.equal(rows.length, 40);
      const ms = (v: number | null) => (v === null ? null : Number(v));
      const statusAt = (r: (typeof rows)[number], at: number): string | undefined => {
        const [c, f, x] = [ms(r.completed), ms(r.failed), ms(r.canceled)];
        if (c !== null && c <= at) return 'completed';
        if (f !== null && f <= at) return 'failed';
        if (x !== null && x <= at) return 'canceled';
        const st = ms(r.started);
        if (st !== null && st <= at) return 'running';
        return ms(r.created)! <= at ? 'pending' : undefined;
      };
      const windows = [
        { end: T0 + 3_000, stepMs: 1_000, buckets: 10 }, // starts before the first job
        { end: T0 + 20_000, stepMs: 700, buckets: 20 }, // among them
        { end: t + 5_000, stepMs: 2_500, buckets: 20 }, // every event inside
        { end: t + 100_000, stepMs: 1_000, buckets: 8 }, // after them all
      ];
      const scans = kind === 'sqlite' ? [false, true] : [false];
      for (const scan of scans) {
        (store() as unknown as { countByScan: boolean }).countByScan = scan;
        try {
          for (const w of windows) {
            for (const g of [undefined, ...groups]) {
              const h = await store().jobHistory(userId, { ...w, ...(g !== undefined ? { groupId: g } : {}) });
              const mine = rows.filter((r) => g === undefined || r.container_group_id === g);
              for (const st of ['pending', 'running', 'completed', 'failed', 'canceled'] as const) {
                const expected = h.times.map((at) => mine.filter((r) => statusAt(r, at) === st).length);
                assert.deepEqual(h.series[st], expected, `${st}, window ending ${w.end - T0}, group ${g ?? "all"}${scan ? ", counting" : ""}: ${JSON.stringify(h.series[st])} vs ${JSON.stringify(expected)}`);
              }
            }
          }
        } finally {
          (store() as unknown as { countByScan: boolean }).countByScan = false;
        }
      }
    });

    test('a handover records its cause and the progress reached; the first progress after it gives the work redone, once', async () => {
      const f = await fixture();
      await store().claimJob({ userId: f.userId, machineId: 'm1', groupId: f.group, now: T0 });
      await store().heartbeat({ userId: f.userId, jobId: f.job.id, machineId: 'm1', now: T0 + 1000, progress: { fraction: 0.5 } });
      const taken = await store().claimJob({ userId: f.userId, machineId: 'm2', groupId: f.group, now: T0 + 1000 + LEASE_MS + 1 });
      const handover = await store().recordHandover(taken!, T0 + 1000 + LEASE_MS + 1);
      assert.equal(handover?.cause, 'lease_expired');
      assert.equal(handover?.from_machine, 'm1');
      assert.equal(handover?.progress_before, 0.5);
      const redone = await store().recordResume(f.job.id, 2, 0.4);
      assert.ok(redone !== undefined && Math.abs(redone - 0.1) < 1e-9, `redone ${redone}`);
      assert.equal(await store().recordResume(f.job.id, 2, 0.45), undefined, 'only the first progress counts');
      // m2 shuts down and releases: a second handover, caused by the release
      await store().releaseJob({ userId: f.userId, jobId: f.job.id, machineId: 'm2', now: T0 + LEASE_MS + 2000 });
      const third = await store().claimJob({ userId: f.userId, machineId: 'm3', groupId: f.group, now: T0 + LEASE_MS + 2001 });
      assert.equal((await store().recordHandover(third!, T0 + LEASE_MS + 2001))?.cause, 'released');
      const list = await store().listHandovers(f.userId, { limit: 10, jobId: f.job.id });
      assert.deepEqual(list.map((h) => [h.attempt, h.cause, h.from_machine, h.to_machine, h.progress_resumed]), [
        [3, 'released', 'm2', 'm3', null],
        [2, 'lease_expired', 'm1', 'm2', 0.4],
      ]);
      assert.deepEqual(await store().listHandovers(randomUUID(), { limit: 10 }), []);
    });
  });
}
