// The scheduling rules as a worker sees them over HTTP, on both stores: what DroverClient gets
// back, and the status code and body of every answer a Kelpie client may test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { DroverApiError, type DroverClient, type Job, type JobDefinition, type Machine } from '@drover/sdk';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

/** Lease timeout = LEASE_FACTOR × heartbeat_interval: 30 s for ordinary jobs, 0.5 s for SHORT ones. */
const LEASE_FACTOR = 0.5;
const LONG = { heartbeat_interval: 60 };
const SHORT = { heartbeat_interval: 1 };

/** The status code and JSON body of one request, for answers whose code matters (200 vs 202 vs 204). */
async function raw(srv: TestServer, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${srv.url}${path}`, {
    method,
    headers: { 'x-kelpie-key': key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

async function refused(p: Promise<unknown>, status: number, error: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DroverApiError, `expected an API error, got ${String(e)}`);
    assert.equal(e.status, status, e.message);
    assert.equal(e.error, error);
    assert.ok(e.message.length > 0);
    return true;
  });
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, deadlineMs = 15_000): Promise<T> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const kind of STORES) {
  describe(`scheduling over HTTP (${kind})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind, { leaseFactor: LEASE_FACTOR });
    });
    after(async () => {
      await srv?.close();
    });

    /** A user of its own with a group of its own, and machines in that group. */
    async function fixture() {
      const u: TestUser = await srv.user();
      const group = `g-${randomUUID().slice(0, 8)}`;
      const m = (id: string, groupId = group): Machine => ({ machine_id: id, container_group_id: groupId });
      const submit = (extra: Partial<JobDefinition> = {}) =>
        u.client.createJob({ command: 'python', arguments: ['train.py'], container_group_id: group, ...LONG, ...extra });
      const post = (jobId: string, what: string, machine: Machine) =>
        raw(srv, u.token, 'POST', `/jobs/${jobId}/${what}`, machine);
      const events = async (jobId: string) =>
        (await u.client.jobEvents(jobId)).events.map((e) => [e.type, e.machine_id, e.attempt] as const);
      return { u, c: u.client as DroverClient, group, m, submit, post, events };
    }

    test('a job is claimable only by its own user and its own container group', async () => {
      const a = await fixture();
      const b = await fixture();
      const job = await a.submit();
      assert.equal(await b.c.claimWork(a.m('m1')), undefined, "another user's machine in the same group");
      assert.equal(await a.c.claimWork(a.m('m1', `${a.group}-other`)), undefined, 'a machine of another group');
      const res = await raw(srv, a.u.token, 'GET', `/work?machine_id=m1&container_group_id=${a.group}`);
      assert.equal(res.status, 200);
      assert.equal((res.body as Job[]).length, 1);
      assert.equal((res.body as Job[])[0]!.id, job.id);
      const empty = await raw(srv, a.u.token, 'GET', `/work?machine_id=m2&container_group_id=${a.group}`);
      assert.deepEqual(empty, { status: 200, body: [] });
    });

    test('a claim sets status running, machine_id, heartbeat, started (only the first time) and increments attempt', async () => {
      const f = await fixture();
      const job = await f.submit();
      assert.equal(job.status, 'pending');
      assert.equal(job.attempt, 0);
      assert.equal(job.started, null);
      assert.equal(job.heartbeat, null);
      const first = (await f.c.claimWork(f.m('m1')))!;
      assert.equal(first.status, 'running');
      assert.equal(first.machine_id, 'm1');
      assert.equal(first.attempt, 1);
      assert.ok(first.started !== null && first.heartbeat !== null);
      assert.deepEqual(await f.c.getJob(job.id), first);

      await f.c.releaseJob(job.id, f.m('m1'));
      const second = (await f.c.claimWork(f.m('m2')))!;
      assert.equal(second.machine_id, 'm2');
      assert.equal(second.attempt, 2);
      assert.equal(second.started, first.started, 'started is kept from the first claim');
      assert.ok(Date.parse(second.heartbeat!) >= Date.parse(first.heartbeat!));
    });

    test('orphaned running jobs are handed out before older pending ones, oldest created first within each', async () => {
      const f = await fixture();
      const orphan1 = await f.submit();
      const orphan2 = await f.submit();
      assert.equal((await f.c.claimWork(f.m('m1')))?.id, orphan1.id);
      assert.equal((await f.c.claimWork(f.m('m2')))?.id, orphan2.id);
      // Pending jobs created before the orphans (a clock can only make newer ones over HTTP).
      const older = await srv.server.store.createJobs(
        f.u.id,
        [0, 1].map(() => ({
          id: randomUUID(),
          definition: {
            command: 'python',
            arguments: [],
            environment: {},
            container_group_id: f.group,
            max_failures: 3,
            heartbeat_interval: 60,
            compression: false,
          },
        })),
        Date.now() - 60_000,
      );
      await f.c.releaseJob(orphan2.id, f.m('m2'));
      await f.c.releaseJob(orphan1.id, f.m('m1'));
      const order = [];
      for (const machine of ['m3', 'm4', 'm5', 'm6']) order.push((await f.c.claimWork(f.m(machine)))?.id);
      assert.deepEqual(order, [orphan1.id, orphan2.id, older[0]!.id, older[1]!.id]);
    });

    test('jobs of one batch are claimed in batch order', async () => {
      const f = await fixture();
      const defs = Array.from({ length: 20 }, (_, i) => ({
        command: 'python',
        arguments: [String(i)],
        container_group_id: f.group,
      }));
      const res = await raw(srv, f.u.token, 'POST', '/jobs/batch', defs);
      assert.equal(res.status, 202);
      const batch = res.body as Job[];
      assert.deepEqual(
        batch.map((j) => j.arguments[0]),
        defs.map((d) => d.arguments[0]),
      );
      const claimed = [];
      for (let i = 0; i < batch.length; i++) claimed.push((await f.c.claimWork(f.m(`m${i}`)))!.id);
      assert.deepEqual(claimed, batch.map((j) => j.id));
    });

    test('a lease that lapses is re-claimed without counting a failure; the events log records lease_expired then claimed', async () => {
      const f = await fixture();
      const job = await f.submit(SHORT);
      await f.c.claimWork(f.m('m1'));
      // m1 sends no heartbeat; m2's long-poll is answered once m1's lease (0.5 s) has lapsed.
      const reclaimed = await eventually('the lapsed job to be re-claimed', () => f.c.claimWork(f.m('m2'), 10));
      assert.equal(reclaimed.id, job.id);
      assert.equal(reclaimed.status, 'running');
      assert.equal(reclaimed.machine_id, 'm2');
      assert.equal(reclaimed.attempt, 2);
      assert.equal(reclaimed.num_failures, 0);
      assert.deepEqual(await f.events(job.id), [
        ['created', null, 0],
        ['claimed', 'm1', 1],
        ['lease_expired', 'm1', 1],
        ['claimed', 'm2', 2],
      ]);
      // The machine that lost its lease hears canceled and may not report the outcome.
      assert.deepEqual(await f.c.heartbeat(job.id, f.m('m1')), { status: 'canceled' });
      await refused(f.c.completeJob(job.id, f.m('m1')), 409, 'conflict');
    });

    test('a job stays running through every re-assignment until completed, failed or canceled', async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 3 });
      const status = async () => (await f.c.getJob(job.id)).status;
      await f.c.claimWork(f.m('m1'));
      assert.equal(await status(), 'running');
      await f.c.releaseJob(job.id, f.m('m1'));
      assert.equal(await status(), 'running');
      await f.c.claimWork(f.m('m2'));
      await f.c.failJob(job.id, f.m('m2'));
      assert.equal(await status(), 'running');
      await f.c.claimWork(f.m('m3'));
      assert.equal(await status(), 'running');
      await f.c.completeJob(job.id, f.m('m3'));
      assert.equal(await status(), 'completed');
      assert.equal((await f.c.getJob(job.id)).attempt, 3);
    });

    test('a heartbeat from the holder renews the lease and answers running', async () => {
      const f = await fixture();
      const job = await f.submit();
      const claimed = (await f.c.claimWork(f.m('m1')))!;
      const res = await f.post(job.id, 'heartbeat', f.m('m1'));
      assert.deepEqual(res, { status: 200, body: { status: 'running' } });
      assert.deepEqual(await f.c.heartbeat(job.id, f.m('m1')), { status: 'running' });
      const after = await f.c.getJob(job.id);
      assert.equal(after.num_heartbeats, 2);
      assert.ok(Date.parse(after.heartbeat!) >= Date.parse(claimed.heartbeat!));
      assert.equal(after.machine_id, 'm1');
      assert.equal(await f.c.claimWork(f.m('m2')), undefined);
    });

    test('a heartbeat from any other machine answers canceled, also after the job was re-claimed elsewhere', async () => {
      const f = await fixture();
      const job = await f.submit();
      await f.c.claimWork(f.m('m1'));
      assert.deepEqual(await f.post(job.id, 'heartbeat', f.m('m9')), { status: 200, body: { status: 'canceled' } });
      assert.equal((await f.c.getJob(job.id)).num_heartbeats, 0);
      await f.c.releaseJob(job.id, f.m('m1'));
      await f.c.claimWork(f.m('m2'));
      assert.deepEqual(await f.c.heartbeat(job.id, f.m('m1')), { status: 'canceled' });
      assert.deepEqual(await f.c.heartbeat(job.id, f.m('m2')), { status: 'running' });
      assert.equal((await f.c.getJob(job.id)).status, 'running', 'the answer canceled changes nothing');
    });

    test('a heartbeat for a finished job answers its status', async () => {
      const f = await fixture();
      const done = await f.submit({ max_failures: 1 });
      const failed = await f.submit({ max_failures: 1 });
      const canceled = await f.submit({ max_failures: 1 });
      for (let i = 0; i < 3; i++) await f.c.claimWork(f.m('m1'));
      await f.c.completeJob(done.id, f.m('m1'));
      await f.c.failJob(failed.id, f.m('m1'));
      await f.c.cancelJob(canceled.id);
      for (const [job, status] of [
        [done, 'completed'],
        [failed, 'failed'],
        [canceled, 'canceled'],
      ] as const) {
        for (const machine of ['m1', 'm2']) {
          assert.deepEqual(await f.post(job.id, 'heartbeat', f.m(machine)), { status: 200, body: { status } });
        }
      }
    });

    test('a heartbeat for an unknown job, or for another user\'s job, is 404', async () => {
      const a = await fixture();
      const b = await fixture();
      const job = await a.submit();
      await a.c.claimWork(a.m('m1'));
      const res = await a.post(randomUUID(), 'heartbeat', a.m('m1'));
      assert.equal(res.status, 404);
      assert.equal((res.body as { error: string }).error, 'not_found');
      await refused(b.c.heartbeat(job.id, b.m('m1')), 404, 'not_found');
      await refused(a.c.heartbeat('not-a-uuid', a.m('m1')), 400, 'bad_request');
    });

    test('progress sent in a heartbeat is returned on the job', async () => {
      const f = await fixture();
      const job = await f.submit();
      assert.equal(job.progress, null);
      await f.c.claimWork(f.m('m1'));
      await f.c.heartbeat(job.id, f.m('m1'), { fraction: 0.4, message: 'epoch 4 of 10' });
      assert.deepEqual((await f.c.getJob(job.id)).progress, { fraction: 0.4, message: 'epoch 4 of 10' });
      await f.c.heartbeat(job.id, f.m('m1'));
      assert.deepEqual((await f.c.getJob(job.id)).progress, { fraction: 0.4, message: 'epoch 4 of 10' });
      const listed = await f.c.listJobs({ container_group_id: f.group });
      assert.deepEqual(listed.jobs[0]!.progress, { fraction: 0.4, message: 'epoch 4 of 10' });
    });

    test('completed from the holder completes the job; a repeat by the holder is 200 again', async () => {
      const f = await fixture();
      const job = await f.submit();
      await f.c.claimWork(f.m('m1'));
      assert.deepEqual(await f.post(job.id, 'completed', f.m('m1')), {
        status: 200,
        body: { message: 'Completed reported' },
      });
      const done = await f.c.getJob(job.id);
      assert.equal(done.status, 'completed');
      assert.ok(done.completed !== null);
      assert.deepEqual(await f.post(job.id, 'completed', f.m('m1')), {
        status: 200,
        body: { message: 'Completed reported' },
      });
      assert.deepEqual(await f.c.getJob(job.id), done);
      assert.equal(await f.c.claimWork(f.m('m2')), undefined);
    });

    test('completed from a non-holder is 409 and changes nothing', async () => {
      const f = await fixture();
      const job = await f.submit();
      await f.c.claimWork(f.m('m1'));
      const before = await f.c.getJob(job.id);
      const res = await f.post(job.id, 'completed', f.m('m2'));
      assert.equal(res.status, 409);
      assert.equal((res.body as { error: string }).error, 'conflict');
      assert.deepEqual(await f.c.getJob(job.id), before);
      await f.c.completeJob(job.id, f.m('m1'));
      await refused(f.c.completeJob(job.id, f.m('m2')), 409, 'conflict');
      await refused(f.c.completeJob(randomUUID(), f.m('m1')), 404, 'not_found');
    });

    test('failed from the holder counts a failure, bans the machine and releases the lease at once', async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 3 });
      await f.c.claimWork(f.m('m1'));
      assert.deepEqual(await f.post(job.id, 'failed', f.m('m1')), {
        status: 202,
        body: { message: 'Failure reported' },
      });
      const after = await f.c.getJob(job.id);
      assert.equal(after.num_failures, 1);
      assert.equal(after.status, 'running');
      assert.equal(after.machine_id, null);
      // Another machine gets it at once (the lease was 30 s).
      const next = (await f.c.claimWork(f.m('m2')))!;
      assert.equal(next.id, job.id);
      assert.equal(next.attempt, 2);
    });

    test('a machine that failed a job is never handed it again, even when it is the only claimable job', async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 5 });
      await f.c.claimWork(f.m('m1'));
      await f.c.failJob(job.id, f.m('m1'));
      assert.equal(await f.c.claimWork(f.m('m1')), undefined);
      const waited = await raw(srv, f.u.token, 'GET', `/work?machine_id=m1&container_group_id=${f.group}&wait=0.3`);
      assert.deepEqual(waited, { status: 200, body: [] });
      await f.c.claimWork(f.m('m2'));
      await f.c.releaseJob(job.id, f.m('m2'));
      assert.equal(await f.c.claimWork(f.m('m1')), undefined, 'not after a release either');
      const other = await f.submit();
      assert.equal((await f.c.claimWork(f.m('m1')))?.id, other.id, 'the ban is for that job only');
    });

    test('at max_failures the job is failed', async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 2 });
      await f.c.claimWork(f.m('m1'));
      await f.c.failJob(job.id, f.m('m1'));
      await f.c.claimWork(f.m('m2'));
      assert.deepEqual(await f.post(job.id, 'failed', f.m('m2')), { status: 202, body: { message: 'Failure reported' } });
      const failed = await f.c.getJob(job.id);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.num_failures, 2);
      assert.ok(failed.failed !== null);
      assert.equal(await f.c.claimWork(f.m('m3')), undefined);
      assert.deepEqual((await f.events(job.id)).slice(-2), [
        ['failed_attempt', 'm2', 2],
        ['failed', 'm2', 2],
      ]);
    });

    test("a failure report's reason is kept on its events, and a bad reason is 400 changing nothing", async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 2 });
      await f.c.claimWork(f.m('m1'));
      // Refused reasons: too long, a control character other than tab or newline.
      for (const [reason, why] of [['x'.repeat(2001), 'must NOT have more than 2000'], ['bad\u0007bell', 'must match pattern']] as const) {
        const r = await f.post(job.id, 'failed', { ...f.m('m1'), reason } as Machine);
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.match(String((r.body as { message?: string }).message), new RegExp(`body/reason ${why}`));
      }
      assert.equal((await f.c.getJob(job.id)).num_failures, 0, 'the refused reports changed nothing');
      await f.c.failJob(job.id, f.m('m1'), 'the job process exited with code 3\nTraceback: ...');
      await f.c.claimWork(f.m('m2'));
      await f.c.failJob(job.id, f.m('m2'));
      const { events } = await f.c.jobEvents(job.id);
      const failures = events.filter((e) => e.type === 'failed_attempt' || e.type === 'failed').map((e) => [e.type, e.machine_id, e.reason]);
      assert.deepEqual(failures, [
        ['failed_attempt', 'm1', 'the job process exited with code 3\nTraceback: ...'],
        ['failed_attempt', 'm2', undefined],
        ['failed', 'm2', undefined],
      ]);
      assert.ok(events.every((e) => e.type.startsWith('failed') || !('reason' in e)), 'only failures carry a reason');
    });

    test('a repeated failed report from the same machine changes nothing', async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 2 });
      await f.c.claimWork(f.m('m1'));
      await f.c.failJob(job.id, f.m('m1'));
      assert.deepEqual(await f.post(job.id, 'failed', f.m('m1')), { status: 202, body: { message: 'Failure reported' } });
      assert.equal((await f.c.getJob(job.id)).num_failures, 1);
      // Also the report that failed the job for good, which a worker retries when the answer is lost.
      await f.c.claimWork(f.m('m2'));
      await f.c.failJob(job.id, f.m('m2'));
      assert.deepEqual(await f.post(job.id, 'failed', f.m('m2')), { status: 202, body: { message: 'Failure reported' } });
      assert.deepEqual(await f.post(job.id, 'failed', f.m('m1')), { status: 202, body: { message: 'Failure reported' } });
      const failed = await f.c.getJob(job.id);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.num_failures, 2);
      // A machine that never held it is refused.
      await refused(f.c.failJob(job.id, f.m('m3')), 409, 'conflict');
    });

    test('release hands the job back at once without counting a failure; the releasing machine then hears canceled', async () => {
      const f = await fixture();
      const job = await f.submit();
      await f.c.claimWork(f.m('m1'));
      assert.deepEqual(await f.post(job.id, 'release', f.m('m1')), { status: 202, body: { message: 'Job released' } });
      assert.deepEqual(await f.c.heartbeat(job.id, f.m('m1')), { status: 'canceled' });
      const released = await f.c.getJob(job.id);
      assert.equal(released.status, 'running');
      assert.equal(released.machine_id, null);
      assert.equal(released.num_failures, 0);
      const next = (await f.c.claimWork(f.m('m2')))!;
      assert.equal(next.id, job.id);
      assert.deepEqual((await f.events(job.id)).slice(-2), [
        ['released', 'm1', 1],
        ['claimed', 'm2', 2],
      ]);
      await refused(f.c.releaseJob(job.id, f.m('m1')), 409, 'conflict');
    });

    test('cancel makes the job canceled for good: it cannot be claimed, completed or un-canceled', async () => {
      const f = await fixture();
      const running = await f.submit();
      await f.c.claimWork(f.m('m2'));
      const pending = await f.submit();
      for (const job of [pending, running]) {
        assert.deepEqual(await raw(srv, f.u.token, 'DELETE', `/jobs/${job.id}`), {
          status: 202,
          body: { message: 'Job canceled' },
        });
      }
      const queued = await f.submit();
      await f.c.cancelJob(queued.id);
      assert.equal(await f.c.claimWork(f.m('m3')), undefined);
      await refused(f.c.completeJob(running.id, f.m('m2')), 409, 'conflict');
      await refused(f.c.failJob(running.id, f.m('m2')), 409, 'conflict');
      await refused(f.c.releaseJob(running.id, f.m('m2')), 409, 'conflict');
      for (const job of [pending, running, queued]) {
        const row = await f.c.getJob(job.id);
        assert.equal(row.status, 'canceled');
        assert.ok(row.canceled !== null);
        assert.equal(row.completed, null);
      }
    });

    test("a canceled job's holder learns it from its next heartbeat", async () => {
      const f = await fixture();
      const job = await f.submit();
      await f.c.claimWork(f.m('m1'));
      await f.c.cancelJob(job.id);
      assert.deepEqual(await f.post(job.id, 'heartbeat', f.m('m1')), { status: 200, body: { status: 'canceled' } });
    });

    test('canceling a completed job is 409; canceling twice is 202 both times', async () => {
      const f = await fixture();
      const done = await f.submit();
      const job = await f.submit();
      await f.c.claimWork(f.m('m1'));
      await f.c.completeJob(done.id, f.m('m1'));
      const res = await raw(srv, f.u.token, 'DELETE', `/jobs/${done.id}`);
      assert.equal(res.status, 409);
      assert.equal((res.body as { error: string }).error, 'conflict');
      assert.equal((await f.c.getJob(done.id)).status, 'completed');
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(await raw(srv, f.u.token, 'DELETE', `/jobs/${job.id}`), {
          status: 202,
          body: { message: 'Job canceled' },
        });
      }
      await refused(f.c.cancelJob(randomUUID()), 404, 'not_found');
    });

    test("purge deletes the group's pending jobs, cancels its running ones, and leaves other groups and users alone", async () => {
      const f = await fixture();
      const other = await fixture();
      const running = await f.submit();
      const pending = [await f.submit(), await f.submit()];
      await f.c.claimWork(f.m('m1'));
      const otherGroup = await f.c.createJob({ command: 'x', container_group_id: `${f.group}-b` });
      const otherUser = await other.c.createJob({ command: 'x', container_group_id: f.group });

      assert.deepEqual(await raw(srv, f.u.token, 'DELETE', `/jobs/container-groups/${f.group}`), {
        status: 200,
        body: { count: 3 },
      });
      assert.equal((await f.c.getJob(running.id)).status, 'canceled');
      for (const job of pending) await refused(f.c.getJob(job.id), 404, 'not_found');
      assert.deepEqual(await f.c.heartbeat(running.id, f.m('m1')), { status: 'canceled' });
      assert.equal((await f.c.getJob(otherGroup.id)).status, 'pending');
      assert.equal((await other.c.getJob(otherUser.id)).status, 'pending');
      assert.equal((await other.c.claimWork(other.m('m1', f.group)))?.id, otherUser.id);
      assert.deepEqual(await f.c.purgeContainerGroup(f.group), { count: 0 });
    });

    test('GET /jobs filters by status and container group, pages, sorts ascending on asc, and counts the page', async () => {
      const f = await fixture();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await f.submit()).id);
      const elsewhere = await f.c.createJob({ command: 'x', container_group_id: `${f.group}-b` });
      await f.c.claimWork(f.m('m1')); // ids[0] running
      const list = async (q: Record<string, string | number | boolean>) => {
        const qs = new URLSearchParams(Object.entries(q).map(([k, v]): [string, string] => [k, String(v)]));
        const res = await raw(srv, f.u.token, 'GET', `/jobs?${qs}`);
        assert.equal(res.status, 200);
        const body = res.body as { _count: number; jobs: Job[] };
        assert.equal(body._count, body.jobs.length, '_count is the number of jobs in the page');
        return body.jobs.map((j) => j.id);
      };
      const all = [...ids, elsewhere.id];
      // created may tie within one millisecond; ties keep submission order.
      assert.deepEqual(await list({ asc: true }), all);
      assert.deepEqual(await list({}), [...all].reverse());
      assert.deepEqual(await list({ status: 'running' }), [ids[0]]);
      assert.deepEqual(await list({ container_group_id: `${f.group}-b` }), [elsewhere.id]);
      assert.deepEqual(await list({ status: 'pending', container_group_id: f.group, asc: true }), ids.slice(1));
      assert.deepEqual(await list({ page_size: 2, asc: true }), ids.slice(0, 2));
      assert.deepEqual(await list({ page_size: 2, page: 2, asc: true }), ids.slice(2, 4));
      assert.deepEqual(await list({ page_size: 2, page: 3, asc: true }), [ids[4], elsewhere.id]);
      assert.deepEqual(await list({ page_size: 2, page: 4, asc: true }), []);
      assert.deepEqual(await f.c.listJobs({ status: 'completed' }), { _count: 0, jobs: [] });
      await refused(f.c.listJobs({ status: 'bogus' as never }), 400, 'bad_request');
    });

    test('GET /jobs/:id/events returns the attempt history', async () => {
      const f = await fixture();
      const job = await f.submit({ max_failures: 2 });
      await f.c.claimWork(f.m('m1'));
      await f.c.failJob(job.id, f.m('m1'));
      await f.c.claimWork(f.m('m2'));
      await f.c.releaseJob(job.id, f.m('m2'));
      await f.c.claimWork(f.m('m3'));
      await f.c.completeJob(job.id, f.m('m3'));
      const res = await raw(srv, f.u.token, 'GET', `/jobs/${job.id}/events`);
      assert.equal(res.status, 200);
      const { events } = res.body as { events: { type: string; machine_id: string | null; attempt: number; at: string; job_id: string }[] };
      assert.deepEqual(
        events.map((e) => [e.type, e.machine_id, e.attempt]),
        [
          ['created', null, 0],
          ['claimed', 'm1', 1],
          ['failed_attempt', 'm1', 1],
          ['claimed', 'm2', 2],
          ['released', 'm2', 2],
          ['claimed', 'm3', 3],
          ['completed', 'm3', 3],
        ],
      );
      assert.ok(events.every((e) => e.job_id === job.id && !Number.isNaN(Date.parse(e.at))));
      const times = events.map((e) => Date.parse(e.at));
      assert.deepEqual(times, [...times].sort((x, y) => x - y));
      await refused(f.c.jobEvents(randomUUID()), 404, 'not_found');
      const stranger = await fixture();
      await refused(stranger.c.jobEvents(job.id), 404, 'not_found');
    });

    // Last: it removes every job on this server.
    test('admin clear (DELETE /jobs) is 204 and removes every job', async () => {
      const a = await fixture();
      const b = await fixture();
      const ja = await a.submit();
      const jb = await b.submit();
      await a.c.claimWork(a.m('m1'));
      await refused(a.c.clearAllJobs(), 403, 'forbidden');
      assert.equal((await a.c.getJob(ja.id)).status, 'running');
      assert.deepEqual(await raw(srv, srv.adminKey, 'DELETE', '/jobs'), { status: 204, body: undefined });
      await refused(a.c.getJob(ja.id), 404, 'not_found');
      await refused(b.c.getJob(jb.id), 404, 'not_found');
      assert.deepEqual(await a.c.listJobs(), { _count: 0, jobs: [] });
      await refused(a.c.heartbeat(ja.id, a.m('m1')), 404, 'not_found');
    });
  });
}
