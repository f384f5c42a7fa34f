// The store contract, on both stores: every scheduling rule of the design, driven through the
// Store interface with explicit clocks (`now`), so lease expiry is tested without sleeping.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { type JobRow, type NewJob, type Outcome, type Store, type WorkSignal } from '@drover/server';
import { Migrator, type Kysely } from 'kysely';
import { STORES } from '@drover/testing/server';
import { CodeMigrationProvider } from '../../packages/server/src/store/migrations.js';
import { T0, storeForSuite, storeJob, storeUser } from '@drover/testing/store';

/** Lease timeout = LEASE_FACTOR × heartbeat_interval. */
const LEASE_FACTOR = 2;
const INTERVAL = 30; // seconds, the default heartbeat_interval
const LEASE_MS = LEASE_FACTOR * INTERVAL * 1000;

type Definition = NewJob['definition'];

function outcomeJob(outcome: Outcome): JobRow {
  assert.notEqual(outcome.kind, 'not_found', 'expected an outcome with a job');
  return (outcome as Extract<Outcome, { job: JobRow }>).job;
}

async function waitFor<T>(what: string, probe: () => T | undefined, deadlineMs = 10_000): Promise<T> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const kind of STORES) {
  describe(`store contract (${kind})`, () => {
    const store = storeForSuite(kind, LEASE_FACTOR);

    /** A user of its own and a group name of its own, so tests never see each other's jobs. */
    async function fixture() {
      const { userId, group } = await storeUser(store(), 'contract');
      const create = async (n = 1, now = T0, extra: Partial<Definition> = {}) =>
        store().createJobs(userId, Array.from({ length: n }, () => storeJob(group, extra)), now);
      const one = async (now = T0, extra: Partial<Definition> = {}) => (await create(1, now, extra))[0]!;
      const claim = (machineId: string, now: number, groupId = group) =>
        store().claimJob({ userId, machineId, groupId, now });
      const ref = (jobId: string, machineId: string, now: number) => ({ userId, jobId, machineId, now });
      const get = async (jobId: string) => (await store().getJob(userId, jobId))!;
      const events = async (jobId: string) =>
        ((await store().listEvents(userId, jobId)) ?? []).map((e) => [e.type, e.machine_id, e.attempt] as const);
      return { userId, group, create, one, claim, ref, get, events };
    }

    test('a transition that fails undoes nothing of the transitions committed with it', async () => {
      // SQLite commits concurrent transitions together: a failing one must not take the others down.
      const f = await fixture();
      const taken = await f.one();
      const clash: NewJob = { ...storeJob(f.group), id: taken.id }; // the same id again: refused
      const [first, duplicate, second, claim] = await Promise.allSettled([
        f.create(2),
        store().createJobs(f.userId, [clash], T0),
        f.create(3),
        f.claim('m1', T0 + 1),
      ]);
      assert.equal(first.status, 'fulfilled');
      assert.equal(duplicate.status, 'rejected');
      assert.equal(second.status, 'fulfilled');
      assert.equal(claim.status, 'fulfilled');
      const all = await store().listJobs({ userId: f.userId, limit: 100, offset: 0, asc: true });
      assert.equal(all.length, 6, 'the first job, then 2 + 3 more; not the duplicate');
      assert.equal(all.filter((j) => j.status === 'running').length, 1);
    });

    test('a job is claimable only by its own user and its own container group', async () => {
      const a = await fixture();
      const b = await fixture();
      const job = await a.one();
      assert.equal(await store().claimJob({ userId: b.userId, machineId: 'm1', groupId: a.group, now: T0 + 1 }), undefined);
      assert.equal(await a.claim('m1', T0 + 1, `${a.group}-other`), undefined);
      assert.equal((await a.get(job.id)).status, 'pending');
      assert.equal((await a.claim('m1', T0 + 1))?.id, job.id);
    });

    test('a claim sets status running, machine_id, heartbeat, started (only the first time) and increments attempt', async () => {
      const f = await fixture();
      const job = await f.one();
      assert.equal(job.attempt, 0);
      assert.equal(job.started, null);
      const first = (await f.claim('m1', T0 + 100))!;
      assert.equal(first.status, 'running');
      assert.equal(first.machine_id, 'm1');
      assert.equal(first.heartbeat, T0 + 100);
      assert.equal(first.started, T0 + 100);
      assert.equal(first.attempt, 1);
      assert.deepEqual(await f.get(job.id), first);

      assert.equal((await store().releaseJob(f.ref(job.id, 'm1', T0 + 200))).kind, 'applied');
      const second = (await f.claim('m2', T0 + 300))!;
      assert.equal(second.status, 'running');
      assert.equal(second.machine_id, 'm2');
      assert.equal(second.heartbeat, T0 + 300);
      assert.equal(second.started, T0 + 100, 'started is kept from the first claim');
      assert.equal(second.attempt, 2);
    });

    test('orphaned running jobs (lease lapsed or released) are handed out before older pending ones', async () => {
      const f = await fixture();
      // Two jobs get claimed, then two older ones are queued behind them (created earlier).
      const lapsed = await f.one(T0 + 1000);
      const released = await f.one(T0 + 1001);
      assert.equal((await f.claim('m1', T0 + 2000))?.id, lapsed.id);
      assert.equal((await f.claim('m2', T0 + 2000))?.id, released.id);
      const [old1, old2] = await f.create(2, T0);
      assert.equal((await store().releaseJob(f.ref(released.id, 'm2', T0 + 3000))).kind, 'applied');

      const later = T0 + 2000 + LEASE_MS + 1; // m1's lease has lapsed
      assert.equal((await f.claim('m3', later))?.id, lapsed.id, 'the oldest orphan first');
      assert.equal((await f.claim('m4', later))?.id, released.id, 'then the next orphan');
      assert.equal((await f.claim('m5', later))?.id, old1!.id, 'then pending, oldest first');
      assert.equal((await f.claim('m6', later))?.id, old2!.id);
      assert.equal(await f.claim('m7', later), undefined);
    });

    test('pending jobs are handed out oldest created first', async () => {
      const f = await fixture();
      const newer = await f.one(T0 + 50);
      const older = await f.one(T0 + 10);
      const middle = await f.one(T0 + 30);
      const order = [];
      for (let i = 0; i < 3; i++) order.push((await f.claim(`m${i}`, T0 + 100))!.id);
      assert.deepEqual(order, [older.id, middle.id, newer.id]);
    });

    test('jobs of one batch are claimed in batch order', async () => {
      const f = await fixture();
      const batch = await f.create(40, T0);
      assert.deepEqual(
        batch.map((j) => j.created),
        batch.map(() => T0),
      );
      const claimed = [];
      for (let i = 0; i < batch.length; i++) claimed.push((await f.claim(`m${i}`, T0 + 1))!.id);
      assert.deepEqual(claimed, batch.map((j) => j.id));
    });

    test('a lease lapses only after *longer* than the lease timeout without a heartbeat', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      assert.equal(await f.claim('m2', T0 + LEASE_MS), undefined, 'exactly the lease timeout: still held');
      assert.equal((await f.claim('m2', T0 + LEASE_MS + 1))?.id, job.id, 'one millisecond longer: lapsed');
    });

    test('a lease that lapses is re-claimed without counting a failure; the events log records lease_expired then claimed', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      assert.equal(await f.claim('m2', T0 + LEASE_MS - 1), undefined, 'the lease is still live');
      const reclaimed = (await f.claim('m2', T0 + LEASE_MS + 1))!;
      assert.equal(reclaimed.id, job.id);
      assert.equal(reclaimed.machine_id, 'm2');
      assert.equal(reclaimed.attempt, 2);
      assert.equal(reclaimed.num_failures, 0);
      assert.equal(reclaimed.status, 'running');
      assert.deepEqual(await f.events(job.id), [
        ['created', null, 0],
        ['claimed', 'm1', 1],
        ['lease_expired', 'm1', 1],
        ['claimed', 'm2', 2],
      ]);
      // m1 was not banned: a lapse is no failure of the machine.
      await f.claim('m3', T0 + 2 * LEASE_MS + 2);
      assert.equal((await f.get(job.id)).machine_id, 'm3');
      await store().releaseJob(f.ref(job.id, 'm3', T0 + 2 * LEASE_MS + 3));
      assert.equal((await f.claim('m1', T0 + 2 * LEASE_MS + 4))?.id, job.id);
    });

    test('a job stays running through every re-assignment until completed, failed or canceled', async () => {
      const f = await fixture();
      const [toComplete, toFail, toCancel] = await f.create(3, T0, { max_failures: 2 });
      for (const job of [toComplete!, toFail!, toCancel!]) {
        let t = T0 + 10;
        await f.claim('m1', t);
        // lapse → re-claim by m2
        t += LEASE_MS + 1;
        assert.equal((await f.claim('m2', t))?.id, job.id);
        assert.equal((await f.get(job.id)).status, 'running');
        // release → re-claim by m3
        await store().releaseJob(f.ref(job.id, 'm2', ++t));
        assert.equal((await f.get(job.id)).status, 'running');
        assert.equal((await f.claim('m3', ++t))?.id, job.id);
        // failure (1 of 2) → re-claim by m4
        await store().failJob(f.ref(job.id, 'm3', ++t));
        assert.equal((await f.get(job.id)).status, 'running');
        assert.equal((await f.claim('m4', ++t))?.id, job.id);
        assert.equal((await f.get(job.id)).status, 'running');

        if (job === toComplete) await store().completeJob(f.ref(job.id, 'm4', ++t));
        else if (job === toFail) await store().failJob(f.ref(job.id, 'm4', ++t));
        else await store().cancelJob(f.userId, job.id, ++t);
      }
      assert.equal((await f.get(toComplete!.id)).status, 'completed');
      assert.equal((await f.get(toFail!.id)).status, 'failed');
      assert.equal((await f.get(toCancel!.id)).status, 'canceled');
      assert.equal((await f.get(toComplete!.id)).attempt, 4);
    });

    test('a heartbeat from the holder renews the lease and answers running', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const hb = await store().heartbeat(f.ref(job.id, 'm1', T0 + 50_000));
      assert.equal(hb.kind, 'applied');
      assert.equal(outcomeJob(hb).heartbeat, T0 + 50_000);
      assert.equal(outcomeJob(hb).num_heartbeats, 1);
      // The first lease would have lapsed at T0 + LEASE_MS; the renewed one runs to T0 + 50 s + LEASE_MS.
      assert.equal(await f.claim('m2', T0 + LEASE_MS + 1), undefined);
      assert.equal(await f.claim('m2', T0 + 50_000 + LEASE_MS - 1), undefined);
      assert.equal((await f.claim('m2', T0 + 50_000 + LEASE_MS + 1))?.id, job.id);
    });

    test('a heartbeat from any other machine answers canceled, also after the job was re-claimed elsewhere', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const stranger = await store().heartbeat(f.ref(job.id, 'm9', T0 + 10));
      assert.equal(stranger.kind, 'not_holder');
      assert.equal(outcomeJob(stranger).machine_id, 'm1');
      assert.equal(outcomeJob(stranger).num_heartbeats, 0, "a stranger's heartbeat counts nothing");
      // The stranger did not renew m1's lease.
      await f.claim('m2', T0 + LEASE_MS + 1);
      const old = await store().heartbeat(f.ref(job.id, 'm1', T0 + LEASE_MS + 2));
      assert.equal(old.kind, 'not_holder');
      assert.equal(outcomeJob(old).machine_id, 'm2');
      assert.equal((await store().heartbeat(f.ref(job.id, 'm2', T0 + LEASE_MS + 3))).kind, 'applied');
    });

    test('a heartbeat for a finished job answers its status', async () => {
      const f = await fixture();
      const [done, failed, canceled] = await f.create(3, T0, { max_failures: 1 });
      for (let i = 0; i < 3; i++) await f.claim('m1', T0 + 1);
      await store().completeJob(f.ref(done!.id, 'm1', T0 + 2));
      await store().failJob(f.ref(failed!.id, 'm1', T0 + 2));
      await store().cancelJob(f.userId, canceled!.id, T0 + 2);
      for (const [j, status] of [
        [done!, 'completed'],
        [failed!, 'failed'],
        [canceled!, 'canceled'],
      ] as const) {
        for (const machine of ['m1', 'm2']) {
          const hb = await store().heartbeat(f.ref(j.id, machine, T0 + 3));
          assert.equal(hb.kind, 'finished');
          assert.equal(outcomeJob(hb).status, status);
        }
      }
    });

    test('a heartbeat for an unknown job, or for another user\'s job, is not found', async () => {
      const a = await fixture();
      const b = await fixture();
      const job = await a.one();
      await a.claim('m1', T0);
      assert.equal((await store().heartbeat(a.ref(randomUUID(), 'm1', T0 + 1))).kind, 'not_found');
      assert.equal((await store().heartbeat(b.ref(job.id, 'm1', T0 + 1))).kind, 'not_found');
    });

    test('progress sent in a heartbeat is returned on the job', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      await store().heartbeat({ ...f.ref(job.id, 'm1', T0 + 1), progress: { fraction: 0.25, message: 'epoch 1' } });
      assert.deepEqual(JSON.parse((await f.get(job.id)).progress!), { fraction: 0.25, message: 'epoch 1' });
      // A heartbeat without progress keeps the last one.
      await store().heartbeat(f.ref(job.id, 'm1', T0 + 2));
      assert.deepEqual(JSON.parse((await f.get(job.id)).progress!), { fraction: 0.25, message: 'epoch 1' });
      // A stranger's progress is ignored.
      await store().heartbeat({ ...f.ref(job.id, 'm2', T0 + 3), progress: { fraction: 0.99 } });
      assert.deepEqual(JSON.parse((await f.get(job.id)).progress!), { fraction: 0.25, message: 'epoch 1' });
    });

    test('completed from the holder completes the job', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const out = await store().completeJob(f.ref(job.id, 'm1', T0 + 5));
      assert.equal(out.kind, 'applied');
      const done = await f.get(job.id);
      assert.equal(done.status, 'completed');
      assert.equal(done.completed, T0 + 5);
      assert.equal(done.machine_id, 'm1');
      assert.equal(await f.claim('m2', T0 + 10 * LEASE_MS), undefined, 'a completed job is never handed out');
    });

    test("a completion may carry the app's last progress; without one the last heartbeat's stays", async () => {
      const f = await fixture();
      const [a, b] = [await f.one(), await f.one()];
      await f.claim('m1', T0);
      await f.claim('m2', T0);
      for (const [job, m] of [[a, 'm1'], [b, 'm2']] as const) await store().heartbeat({ ...f.ref(job.id, m, T0 + 1), progress: { fraction: 0.5 } });
      const held = (await f.get(a.id)).machine_id === 'm1' ? [a, b] : [b, a];
      await store().completeJob({ ...f.ref(held[0]!.id, 'm1', T0 + 5), progress: { fraction: 1, message: 'done' } });
      await store().completeJob(f.ref(held[1]!.id, 'm2', T0 + 5));
      assert.deepEqual(JSON.parse((await f.get(held[0]!.id)).progress!), { fraction: 1, message: 'done' });
      assert.deepEqual(JSON.parse((await f.get(held[1]!.id)).progress!), { fraction: 0.5 });
      // A stranger's completion (refused) leaves the progress alone too.
      assert.equal((await store().completeJob({ ...f.ref(held[1]!.id, 'm9', T0 + 6), progress: { fraction: 0 } })).kind, 'finished');
      assert.deepEqual(JSON.parse((await f.get(held[1]!.id)).progress!), { fraction: 0.5 });
    });

    test('completed from a non-holder is refused and changes nothing', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const before = await f.get(job.id);
      const out = await store().completeJob(f.ref(job.id, 'm2', T0 + 5));
      assert.equal(out.kind, 'not_holder');
      assert.deepEqual(await f.get(job.id), before);
      // Nor after the job was completed by its holder.
      await store().completeJob(f.ref(job.id, 'm1', T0 + 6));
      assert.equal((await store().completeJob(f.ref(job.id, 'm2', T0 + 7))).kind, 'finished');
      assert.equal((await store().completeJob(f.ref(randomUUID(), 'm1', T0 + 7))).kind, 'not_found');
    });

    test('a repeated completed from the holder is harmless', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      await store().completeJob(f.ref(job.id, 'm1', T0 + 5));
      const again = await store().completeJob(f.ref(job.id, 'm1', T0 + 9));
      assert.equal(again.kind, 'repeat');
      const done = await f.get(job.id);
      assert.equal(done.completed, T0 + 5);
      assert.equal((await f.events(job.id)).filter(([t]) => t === 'completed').length, 1);
    });

    test('a failed report from the holder counts one failure and releases the lease at once', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const out = await store().failJob(f.ref(job.id, 'm1', T0 + 5));
      assert.equal(out.kind, 'applied');
      const after = await f.get(job.id);
      assert.equal(after.num_failures, 1);
      assert.equal(after.status, 'running');
      assert.equal(after.machine_id, null);
      assert.equal(after.failed, null);
      // Claimable by another machine at the same instant, long before the old lease would have lapsed.
      const next = (await f.claim('m2', T0 + 5))!;
      assert.equal(next.id, job.id);
      assert.equal(next.attempt, 2);
      assert.deepEqual(await f.events(job.id), [
        ['created', null, 0],
        ['claimed', 'm1', 1],
        ['failed_attempt', 'm1', 1],
        ['claimed', 'm2', 2],
      ]);
    });

    test('a machine that failed a job is never handed it again, even when it is the only claimable job', async () => {
      const f = await fixture();
      const job = await f.one(T0, { max_failures: 5 });
      await f.claim('m1', T0);
      await store().failJob(f.ref(job.id, 'm1', T0 + 1));
      assert.equal(await f.claim('m1', T0 + 2), undefined, 'not while it is orphaned');
      await f.claim('m2', T0 + 3);
      assert.equal(await f.claim('m1', T0 + 3 + LEASE_MS + 1), undefined, 'not after a lapse either');
      assert.equal((await f.claim('m3', T0 + 3 + LEASE_MS + 1))?.id, job.id);
      await store().releaseJob(f.ref(job.id, 'm3', T0 + 3 + LEASE_MS + 2));
      assert.equal(await f.claim('m1', T0 + 3 + LEASE_MS + 3), undefined, 'not after a release either');
      // The ban is per job: m1 still gets other work.
      const other = await f.one(T0 + 10);
      assert.equal((await f.claim('m1', T0 + 3 + LEASE_MS + 4))?.id, other.id);
    });

    test('at max_failures the job is failed', async () => {
      const f = await fixture();
      const job = await f.one(T0, { max_failures: 2 });
      await f.claim('m1', T0);
      await store().failJob(f.ref(job.id, 'm1', T0 + 1));
      await f.claim('m2', T0 + 2);
      const out = await store().failJob(f.ref(job.id, 'm2', T0 + 3));
      assert.equal(out.kind, 'applied');
      const failed = await f.get(job.id);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.num_failures, 2);
      assert.equal(failed.failed, T0 + 3);
      assert.equal(await f.claim('m3', T0 + 4), undefined);
      assert.deepEqual((await f.events(job.id)).slice(-2), [
        ['failed_attempt', 'm2', 2],
        ['failed', 'm2', 2],
      ]);
    });

    test('a repeated failed report from the same machine changes nothing', async () => {
      const f = await fixture();
      const job = await f.one(T0, { max_failures: 3 });
      await f.claim('m1', T0);
      await store().failJob(f.ref(job.id, 'm1', T0 + 1));
      assert.equal((await store().failJob(f.ref(job.id, 'm1', T0 + 2))).kind, 'repeat');
      assert.equal((await f.get(job.id)).num_failures, 1);
      // Still a repeat once another machine holds the job; the holder is untouched.
      await f.claim('m2', T0 + 3);
      assert.equal((await store().failJob(f.ref(job.id, 'm1', T0 + 4))).kind, 'repeat');
      const held = await f.get(job.id);
      assert.equal(held.num_failures, 1);
      assert.equal(held.machine_id, 'm2');
      assert.equal((await store().heartbeat(f.ref(job.id, 'm2', T0 + 5))).kind, 'applied');
    });

    test('a repeated failed report for the failure that failed the job changes nothing', async () => {
      const f = await fixture();
      const job = await f.one(T0, { max_failures: 1 });
      await f.claim('m1', T0);
      assert.equal((await store().failJob(f.ref(job.id, 'm1', T0 + 1))).kind, 'applied');
      assert.equal((await store().failJob(f.ref(job.id, 'm1', T0 + 2))).kind, 'repeat');
      const failed = await f.get(job.id);
      assert.equal(failed.num_failures, 1);
      assert.equal(failed.failed, T0 + 1);
      // A machine that never held it is no repeat.
      assert.equal((await store().failJob(f.ref(job.id, 'm2', T0 + 3))).kind, 'finished');
    });

    test('a failed report from a non-holder is refused and changes nothing', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const before = await f.get(job.id);
      assert.equal((await store().failJob(f.ref(job.id, 'm2', T0 + 1))).kind, 'not_holder');
      assert.deepEqual(await f.get(job.id), before);
      // m2 was not banned by its refused report.
      await store().releaseJob(f.ref(job.id, 'm1', T0 + 2));
      assert.equal((await f.claim('m2', T0 + 3))?.id, job.id);
    });

    test('release hands the job back at once without counting a failure; the releasing machine then hears canceled', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const out = await store().releaseJob(f.ref(job.id, 'm1', T0 + 5));
      assert.equal(out.kind, 'applied');
      const released = await f.get(job.id);
      assert.equal(released.status, 'running');
      assert.equal(released.machine_id, null);
      assert.equal(released.num_failures, 0);
      assert.equal((await store().heartbeat(f.ref(job.id, 'm1', T0 + 6))).kind, 'not_holder');
      assert.equal((await store().completeJob(f.ref(job.id, 'm1', T0 + 6))).kind, 'not_holder');
      const next = (await f.claim('m2', T0 + 6))!;
      assert.equal(next.id, job.id);
      assert.equal(next.num_failures, 0);
      assert.deepEqual(await f.events(job.id), [
        ['created', null, 0],
        ['claimed', 'm1', 1],
        ['released', 'm1', 1],
        ['claimed', 'm2', 2],
      ]);
      // Not a ban: the releasing machine may take it back later.
      await store().releaseJob(f.ref(job.id, 'm2', T0 + 7));
      assert.equal((await f.claim('m1', T0 + 8))?.id, job.id);
    });

    test('release from a non-holder is refused and changes nothing', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      const before = await f.get(job.id);
      assert.equal((await store().releaseJob(f.ref(job.id, 'm2', T0 + 1))).kind, 'not_holder');
      assert.deepEqual(await f.get(job.id), before);
      // Once released, a repeat by the releasing machine is harmless, but nobody else held it.
      await store().releaseJob(f.ref(job.id, 'm1', T0 + 2));
      assert.equal((await store().releaseJob(f.ref(job.id, 'm1', T0 + 3))).kind, 'repeat');
      assert.equal((await store().releaseJob(f.ref(job.id, 'm2', T0 + 3))).kind, 'not_holder');
      // Nor does a machine that failed it back hold it.
      await f.claim('m3', T0 + 4);
      await store().failJob(f.ref(job.id, 'm3', T0 + 5));
      assert.equal((await store().releaseJob(f.ref(job.id, 'm3', T0 + 6))).kind, 'not_holder');
      // Once re-claimed, the old releaser's repeat is refused too.
      await f.claim('m4', T0 + 7);
      assert.equal((await store().releaseJob(f.ref(job.id, 'm1', T0 + 8))).kind, 'not_holder');
      const held = await f.get(job.id);
      assert.equal(held.machine_id, 'm4');
      assert.equal(held.num_failures, 1);
      assert.equal((await f.events(job.id)).filter(([t]) => t === 'released').length, 1);
    });

    test('a canceled job is canceled for good: it cannot be claimed, completed or un-canceled', async () => {
      const f = await fixture();
      const [pending, running] = await f.create(2);
      await f.claim('m1', T0 + 1);
      for (const j of [pending!, running!]) {
        const out = await store().cancelJob(f.userId, j.id, T0 + 2);
        assert.equal(out.kind, 'applied');
        assert.equal(outcomeJob(out).status, 'canceled');
        assert.equal(outcomeJob(out).canceled, T0 + 2);
      }
      assert.equal(await f.claim('m2', T0 + 10 * LEASE_MS), undefined);
      assert.equal((await store().completeJob(f.ref(running!.id, 'm1', T0 + 3))).kind, 'finished');
      assert.equal((await store().failJob(f.ref(running!.id, 'm1', T0 + 3))).kind, 'finished');
      assert.equal((await store().releaseJob(f.ref(running!.id, 'm1', T0 + 3))).kind, 'finished');
      for (const j of [pending!, running!]) {
        const row = await f.get(j.id);
        assert.equal(row.status, 'canceled');
        assert.equal(row.canceled, T0 + 2);
        assert.equal(row.completed, null);
      }
    });

    test('the holder of a canceled job learns it from its next heartbeat', async () => {
      const f = await fixture();
      const job = await f.one();
      await f.claim('m1', T0);
      await store().cancelJob(f.userId, job.id, T0 + 1);
      const hb = await store().heartbeat(f.ref(job.id, 'm1', T0 + 2));
      assert.equal(hb.kind, 'finished');
      assert.equal(outcomeJob(hb).status, 'canceled');
    });

    test('canceling a completed job is refused; canceling twice is harmless', async () => {
      const f = await fixture();
      const [done, job] = await f.create(2);
      await f.claim('m1', T0 + 1);
      await store().completeJob(f.ref(done!.id, 'm1', T0 + 2));
      const refused = await store().cancelJob(f.userId, done!.id, T0 + 3);
      assert.equal(refused.kind, 'finished');
      assert.equal((await f.get(done!.id)).status, 'completed');
      assert.equal((await f.get(done!.id)).canceled, null);

      assert.equal((await store().cancelJob(f.userId, job!.id, T0 + 3)).kind, 'applied');
      assert.equal((await store().cancelJob(f.userId, job!.id, T0 + 4)).kind, 'repeat');
      assert.equal((await f.get(job!.id)).canceled, T0 + 3);
      assert.equal((await store().cancelJob(f.userId, randomUUID(), T0 + 4)).kind, 'not_found');
    });

    test("purge deletes the group's pending jobs, cancels its running ones, and leaves other groups and users alone", async () => {
      const f = await fixture();
      const other = await fixture();
      const [running, pending1, pending2] = await f.create(3);
      const done = await f.one(T0 - 10);
      await f.claim('m1', T0 - 5); // takes `done`
      await store().completeJob(f.ref(done.id, 'm1', T0 - 4));
      await f.claim('m1', T0 + 1); // takes `running`
      const otherGroup = (await store().createJobs(f.userId, [storeJob(`${f.group}-b`)], T0))[0]!;
      // Another user with the same group name.
      const otherUser = (await store().createJobs(other.userId, [storeJob(f.group)], T0))[0]!;

      assert.equal(await store().purgeGroup(f.userId, f.group, T0 + 2), 3);
      assert.equal((await f.get(running!.id)).status, 'canceled');
      assert.equal(await store().getJob(f.userId, pending1!.id), undefined);
      assert.equal(await store().getJob(f.userId, pending2!.id), undefined);
      assert.equal((await f.get(done.id)).status, 'completed');
      assert.equal((await f.get(otherGroup.id)).status, 'pending');
      assert.equal((await store().getJob(other.userId, otherUser.id))?.status, 'pending');
      assert.equal((await store().heartbeat(f.ref(running!.id, 'm1', T0 + 3))).kind, 'finished');
      assert.equal(await store().purgeGroup(f.userId, f.group, T0 + 4), 0);
    });

    test('listJobs filters by status and container group, pages, and orders by created', async () => {
      const f = await fixture();
      const a = await f.create(5, T0); // batch: same created, kept in batch order
      const later = await f.one(T0 + 100);
      const elsewhere = (await store().createJobs(f.userId, [storeJob(`${f.group}-b`)], T0 + 200))[0]!;
      await f.claim('m1', T0 + 300); // a[0] running
      const ids = (rows: JobRow[]) => rows.map((r) => r.id);
      const list = (extra: Partial<Parameters<Store['listJobs']>[0]> = {}) =>
        store().listJobs({ userId: f.userId, limit: 100, offset: 0, asc: false, ...extra });

      const newestFirst = [elsewhere.id, later.id, ...ids(a).reverse()];
      assert.deepEqual(ids(await list()), newestFirst);
      assert.deepEqual(ids(await list({ asc: true })), [...newestFirst].reverse());
      assert.deepEqual(ids(await list({ status: 'running' })), [a[0]!.id]);
      assert.deepEqual(ids(await list({ groupId: `${f.group}-b` })), [elsewhere.id]);
      assert.deepEqual(ids(await list({ status: 'pending', groupId: f.group, asc: true })), [...ids(a).slice(1), later.id]);
      assert.deepEqual(ids(await list({ limit: 3, offset: 0, asc: true })), ids(a).slice(0, 3));
      assert.deepEqual(ids(await list({ limit: 3, offset: 3, asc: true })), [...ids(a).slice(3), later.id]);
      assert.deepEqual(ids(await list({ limit: 3, offset: 6, asc: true })), [elsewhere.id]);
      assert.deepEqual(await list({ limit: 3, offset: 9 }), []);
    });

    test('listEvents returns the attempt history, and nothing for an unknown or foreign job', async () => {
      const f = await fixture();
      const other = await fixture();
      const job = await f.one(T0, { max_failures: 2 });
      await f.claim('m1', T0 + 1);
      await f.claim('m2', T0 + 1 + LEASE_MS + 1);
      await store().failJob(f.ref(job.id, 'm2', T0 + LEASE_MS + 3));
      await f.claim('m3', T0 + LEASE_MS + 4);
      await store().releaseJob(f.ref(job.id, 'm3', T0 + LEASE_MS + 5));
      await f.claim('m4', T0 + LEASE_MS + 6);
      await store().completeJob(f.ref(job.id, 'm4', T0 + LEASE_MS + 7));
      const events = (await store().listEvents(f.userId, job.id))!;
      assert.deepEqual(
        events.map((e) => [e.type, e.machine_id, e.attempt, e.at]),
        [
          ['created', null, 0, T0],
          ['claimed', 'm1', 1, T0 + 1],
          ['lease_expired', 'm1', 1, T0 + LEASE_MS + 2],
          ['claimed', 'm2', 2, T0 + LEASE_MS + 2],
          ['failed_attempt', 'm2', 2, T0 + LEASE_MS + 3],
          ['claimed', 'm3', 3, T0 + LEASE_MS + 4],
          ['released', 'm3', 3, T0 + LEASE_MS + 5],
          ['claimed', 'm4', 4, T0 + LEASE_MS + 6],
          ['completed', 'm4', 4, T0 + LEASE_MS + 7],
        ],
      );
      assert.ok(events.every((e) => e.job_id === job.id));
      assert.equal(await store().listEvents(f.userId, randomUUID()), undefined);
      assert.equal(await store().listEvents(other.userId, job.id), undefined);
    });

    test('a claim is atomic: concurrent claimers never share a job', async () => {
      const f = await fixture();
      const jobs = await f.create(6);
      const claims = await Promise.all(Array.from({ length: 24 }, (_, i) => f.claim(`m${i}`, T0 + 1)));
      const got = claims.filter((j): j is JobRow => j !== undefined);
      assert.equal(new Set(got.map((j) => j.id)).size, got.length, 'no job handed to two machines');
      assert.deepEqual(new Set(got.map((j) => j.id)), new Set(jobs.map((j) => j.id)));
      for (const j of got) {
        const row = await f.get(j.id);
        assert.equal(row.machine_id, j.machine_id);
        assert.equal(row.attempt, 1);
      }
    });

    test('the next lease expiry of a group is the earliest live lease among its running jobs', async () => {
      const f = await fixture();
      const [a, b] = await f.create(2, T0, { heartbeat_interval: 10 });
      assert.equal(await store().nextLeaseExpiry(f.userId, f.group, T0), undefined);
      await f.claim('m1', T0 + 100);
      await f.claim('m2', T0 + 200);
      const lease = LEASE_FACTOR * 10 * 1000;
      assert.equal(await store().nextLeaseExpiry(f.userId, f.group, T0 + 300), T0 + 100 + lease);
      await store().heartbeat(f.ref(a!.id, 'm1', T0 + 400));
      assert.equal(await store().nextLeaseExpiry(f.userId, f.group, T0 + 500), T0 + 200 + lease);
      await store().releaseJob(f.ref(b!.id, 'm2', T0 + 600));
      assert.equal(await store().nextLeaseExpiry(f.userId, f.group, T0 + 700), T0 + 400 + lease);
      assert.equal(await store().nextLeaseExpiry(f.userId, `${f.group}-b`, T0 + 700), undefined);
    });

    test('new, released and failed-back jobs signal work for their user and group', async () => {
      const f = await fixture();
      const seen: WorkSignal[] = [];
      const stop = store().onWork((s) => {
        if (s.userId === f.userId) seen.push(s);
      });
      try {
        const expect = async (n: number, what: string) =>
          waitFor(what, () => (seen.length >= n ? seen.slice() : undefined));
        const [job, other] = await f.create(2);
        await expect(1, 'a signal for new jobs');
        assert.deepEqual(seen[0], { userId: f.userId, groupId: f.group, count: 2 });
        await f.claim('m1', T0 + 1);
        await store().releaseJob(f.ref(job!.id, 'm1', T0 + 2));
        await expect(2, 'a signal for the released job');
        await f.claim('m2', T0 + 3);
        await f.claim('m3', T0 + 3);
        await store().failJob(f.ref(other!.id, 'm3', T0 + 4));
        await store().failJob(f.ref(job!.id, 'm2', T0 + 4));
        const all = await expect(4, 'signals for the failed-back jobs');
        assert.ok(all.every((s) => s.userId === f.userId && s.groupId === f.group));
      } finally {
        stop();
      }
    });

    /**
     * The counts the dashboard and /metrics read (SQLite: from job_counts, kept by triggers) against
     * the jobs themselves, counted here; on SQLite also against the store's own scan form.
     */
    async function checkCounts(userId: string, groups: string[], now: number, when: string): Promise<void> {
      const db = (store() as unknown as { db: Kysely<{ jobs: JobRow }> }).db;
      const rows = await db.selectFrom('jobs').select(['user_id', 'container_group_id', 'status', 'lease_expires_at', 'machine_id', 'heartbeat']).execute();
      const mine = rows.filter((r) => r.user_id === userId);
      const expected = [...new Set(mine.map((r) => r.container_group_id))].sort().map((g) => {
        const of = mine.filter((r) => r.container_group_id === g);
        const running = of.filter((r) => r.status === 'running');
        const jobs = Object.fromEntries(['pending', 'running', 'completed', 'failed', 'canceled'].map((st) => [st, of.filter((r) => r.status === st).length]));
        const beats = running.filter((r) => r.machine_id !== null && r.heartbeat !== null).map((r) => Number(r.heartbeat));
        return {
          container_group_id: g,
          jobs,
          queue_depth: jobs.pending! + running.filter((r) => Number(r.lease_expires_at) < now).length,
          running_machines: new Set(running.filter((r) => Number(r.lease_expires_at) >= now).map((r) => r.machine_id)).size,
          banned_machines: 0,
          oldest_heartbeat: beats.length ? Math.min(...beats) : null,
        };
      });
      const forms = kind === 'sqlite' ? [false, true] : [false];
      for (const scan of forms) {
        (store() as unknown as { countByScan: boolean }).countByScan = scan;
        try {
          const how = `${when}${scan ? ' (scan form)' : ''}`;
          const summaries = (await store().groupSummaries(userId, now)).map((g) => ({ ...g, banned_machines: 0 }));
          assert.deepEqual(summaries, expected, `group summaries ${how}`);
          for (const g of expected) assert.deepEqual((await store().groupSummaries(userId, now, g.container_group_id)).map((x) => ({ ...x, banned_machines: 0 })), [g], `${g.container_group_id} alone ${how}`);
          const whole: Record<string, number> = {};
          for (const r of rows) whole[r.status] = (whole[r.status] ?? 0) + 1;
          assert.deepEqual(await store().countJobsByStatus(), whole, `jobs by status, whole database ${how}`);
          const gauges = (await store().groupGauges(now)).filter((x) => groups.includes(x.container_group_id)).sort((a, b) => (a.container_group_id < b.container_group_id ? -1 : 1));
          const live = (g: string) => rows.filter((r) => r.container_group_id === g && r.status === 'running' && Number(r.lease_expires_at) >= now);
          assert.deepEqual(
            gauges,
            expected
              .filter((g) => g.jobs.pending! + g.jobs.running! > 0)
              .map((g) => {
                const beats = live(g.container_group_id).map((r) => Number(r.heartbeat)).filter((b) => b > 0);
                return { container_group_id: g.container_group_id, queue_depth: g.queue_depth, running: live(g.container_group_id).length, oldest_heartbeat: beats.length ? Math.min(...beats) : null };
              }),
            `group gauges ${how}`,
          );
        } finally {
          (store() as unknown as { countByScan: boolean }).countByScan = false;
        }
      }
    }

    test('the counts by status (group summaries, gauges, /metrics) follow every transition: submit, claim, complete, fail, release, lapse, cancel, purge, user deletion', async () => {
      const f = await fixture();
      const g2 = `${f.group}-two`;
      const groups = [f.group, g2];
      const check = (now: number, when: string) => checkCounts(f.userId, groups, now, when);
      await check(T0, 'with no jobs');
      const jobs = await f.create(6, T0, { max_failures: 2 });
      const others = await store().createJobs(f.userId, [storeJob(g2), storeJob(g2), storeJob(g2)], T0);
      await check(T0, 'after submit');
      const claimed = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((m, i) => f.claim(m, T0 + 1 + i)));
      assert.ok(claimed.every((j) => j !== undefined));
      await check(T0 + 10, 'after four claims');
      await store().heartbeat(f.ref(claimed[0]!.id, 'm1', T0 + 20));
      assert.equal((await store().completeJob(f.ref(claimed[0]!.id, 'm1', T0 + 30))).kind, 'applied');
      assert.equal((await store().failJob(f.ref(claimed[1]!.id, 'm2', T0 + 31))).kind, 'applied');
      assert.equal((await store().releaseJob(f.ref(claimed[2]!.id, 'm3', T0 + 32))).kind, 'applied');
      await check(T0 + 40, 'after a completion, a failure (retried) and a release');
      await check(T0 + 4 + LEASE_MS + 1, "after m4's lease lapsed");
      const again = await f.claim('m5', T0 + 50);
      assert.equal((await store().failJob(f.ref(again!.id, 'm5', T0 + 51))).kind, 'applied');
      const last = await f.claim('m6', T0 + 52);
      if (last?.id === again!.id) assert.equal((await store().failJob(f.ref(last.id, 'm6', T0 + 53))).kind, 'applied');
      assert.equal((await store().cancelJob(f.userId, others[0]!.id, T0 + 54)).kind, 'applied');
      await check(T0 + 60, 'after failures for good and a cancel');
      assert.ok((await store().purgeGroup(f.userId, g2, T0 + 70)) > 0);
      await check(T0 + 80, 'after a purge');
      assert.ok(jobs.length === 6);
      await store().cancelJob(f.userId, jobs[5]!.id, T0 + 90);
      for (const j of await store().listJobs({ userId: f.userId, limit: 100, offset: 0, asc: true })) {
        if (j.status === 'pending' || j.status === 'running') await store().cancelJob(f.userId, j.id, T0 + 91);
      }
      await check(T0 + 100, 'after every job ended');
      assert.deepEqual(await store().deleteUser(f.userId), { kind: 'deleted' });
      await check(T0 + 110, 'after the user was deleted');
      assert.deepEqual(await store().groupSummaries(f.userId, T0 + 110), []);
    });

    test('the job counts migration counts the jobs already in the database', async () => {
      const f = await fixture();
      const db = (store() as unknown as { db: Kysely<unknown> }).db;
      const back = await new Migrator({ db, provider: new CodeMigrationProvider(kind) }).migrateTo('0006_one_rule_per_salad_group');
      assert.ifError(back.error);
      await f.create(4);
      await f.claim('m1', T0 + 1);
      const done = await f.claim('m2', T0 + 2);
      await store().completeJob(f.ref(done!.id, 'm2', T0 + 3));
      await store().migrate();
      await checkCounts(f.userId, [f.group], T0 + 10, 'after the migration');
      await f.create(1, T0 + 11);
      await checkCounts(f.userId, [f.group], T0 + 12, 'after the migration and a submit');
    });

    test('hasClaimableWork: a pending job, or a running one whose lease lapsed; not a live lease, a finished job, another group', async () => {
      const f = await fixture();
      const has = (now: number, group = f.group) => store().hasClaimableWork(f.userId, group, now);
      assert.equal(await has(T0), false, 'no jobs');
      const [a, b] = await f.create(2);
      await store().completeJob(f.ref((await f.claim('m1', T0 + 1))!.id, 'm1', T0 + 2));
      assert.equal(await has(T0 + 3), true, 'one pending job behind a finished one');
      assert.equal(await has(T0 + 3, `${f.group}-other`), false, 'not in another group');
      const held = await f.claim('m2', T0 + 4);
      assert.ok(held && [a!.id, b!.id].includes(held.id));
      assert.equal(await has(T0 + 5), false, 'the only unfinished job has a live lease');
      assert.equal(await has(T0 + 4 + LEASE_MS + 1), true, 'its lease lapsed: an orphan');
      await store().releaseJob(f.ref(held.id, 'm2', T0 + 6));
      assert.equal(await has(T0 + 7), true, 'released: claimable at once');
    });

    test('clearJobs removes every job of every user', async () => {
      const a = await fixture();
      const b = await fixture();
      const ja = await a.one();
      const jb = await b.one();
      await a.claim('m1', T0);
      await store().clearJobs();
      assert.equal(await store().getJob(a.userId, ja.id), undefined);
      assert.equal(await store().getJob(b.userId, jb.id), undefined);
      assert.deepEqual(await store().countJobsByStatus(), {});
      assert.equal(await a.claim('m2', T0 + 10 * LEASE_MS), undefined);
    });
  });
}
