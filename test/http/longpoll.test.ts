// The Drover long-poll, `GET /work?wait=S`: a waiting machine is answered the moment a job
// becomes claimable for it, with [] once S seconds pass, and at once when the server closes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Store } from '@drover/server';
import { DroverApiError, type DroverClient, type Job } from '@drover/sdk';
import { PG_ADMIN_URL } from '@drover/testing/pg';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor, waitingLongPolls } from '@drover/testing/wait';

/** Far below any `wait` the tests use: a waiter answered sooner was woken, not timed out. */
const WOKEN_WITHIN_MS = 10_000;
const LONG_WAIT_S = 20;

/** Start a long-poll and resolve once the server holds it; the result says when it was answered. */
async function parkWaiter(srv: TestServer, client: DroverClient, machine_id: string, container_group_id: string, wait: number) {
  const before = await waitingLongPolls(srv);
  const answer = client.claimWork({ machine_id, container_group_id }, wait).then((job) => ({ job, at: Date.now() }));
  await waitFor('the long-poll to be parked', async () => (await waitingLongPolls(srv)) > before);
  return { answer };
}

/** Count the calls a store method gets for one user (the store is a plain object; its methods can be wrapped). */
function countCalls(store: Store, method: 'claimJob' | 'nextLeaseExpiry', userId: string) {
  const original = store[method] as (...args: unknown[]) => unknown;
  let calls = 0;
  const wrapped = function (this: Store, ...args: unknown[]) {
    const caller = method === 'claimJob' ? (args[0] as { userId: string }).userId : args[0];
    if (caller === userId) calls++;
    return original.apply(this, args);
  };
  Object.defineProperty(store, method, { value: wrapped, configurable: true, writable: true });
  return {
    calls: () => calls,
    restore: () => delete (store as unknown as Record<string, unknown>)[method],
  };
}

for (const kind of STORES) {
  describe(`long-poll (${kind})`, () => {
    let srv: TestServer;
    let u: TestUser;
    let n = 0;
    /** a fresh group per test, so no test sees another's jobs */
    const group = () => `lp-${++n}`;
    before(async () => {
      srv = await startTestServer(kind);
      u = await srv.user();
    });
    after(async () => {
      await srv?.close();
    });

    test('a waiting machine is handed a job the moment it is submitted', async () => {
      const g = group();
      const { answer } = await parkWaiter(srv, u.client, 'waiter', g, LONG_WAIT_S);
      const submitted = Date.now();
      const job = await u.client.createJob({ command: 'echo', container_group_id: g });
      const { job: got, at } = await answer;
      assert.equal(got?.id, job.id);
      assert.equal(got?.machine_id, 'waiter');
      assert.ok(at - submitted < WOKEN_WITHIN_MS, `answered ${at - submitted} ms after the submit`);
    });

    test('a waiting machine is handed a job the moment another machine releases it', async () => {
      const g = group();
      const holder = { machine_id: 'holder', container_group_id: g };
      const job = await u.client.createJob({ command: 'echo', container_group_id: g });
      assert.equal((await u.client.claimWork(holder))?.id, job.id);
      const { answer } = await parkWaiter(srv, u.client, 'waiter', g, LONG_WAIT_S);
      const released = Date.now();
      await u.client.releaseJob(job.id, holder);
      const { job: got, at } = await answer;
      assert.equal(got?.id, job.id);
      assert.equal(got?.machine_id, 'waiter');
      assert.equal(got?.attempt, 2);
      assert.equal(got?.num_failures, 0);
      assert.ok(at - released < WOKEN_WITHIN_MS, `answered ${at - released} ms after the release`);
    });

    test('a waiting machine is handed a job the moment another machine fails it back', async () => {
      const g = group();
      const holder = { machine_id: 'holder', container_group_id: g };
      const job = await u.client.createJob({ command: 'echo', container_group_id: g, max_failures: 3 });
      assert.equal((await u.client.claimWork(holder))?.id, job.id);
      const { answer } = await parkWaiter(srv, u.client, 'waiter', g, LONG_WAIT_S);
      const failed = Date.now();
      await u.client.failJob(job.id, holder);
      const { job: got, at } = await answer;
      assert.equal(got?.id, job.id);
      assert.equal(got?.machine_id, 'waiter');
      assert.equal(got?.num_failures, 1);
      assert.ok(at - failed < WOKEN_WITHIN_MS, `answered ${at - failed} ms after the failure`);
    });

    test('one released job wakes one waiter; a woken waiter banned from it hands it on to the next', async () => {
      const g = group();
      const [a, b, c] = ['banned', 'other', 'holder'].map((m) => ({ machine_id: m, container_group_id: g }));
      const job = await u.client.createJob({ command: 'echo', container_group_id: g, max_failures: 5 });
      assert.equal((await u.client.claimWork(a!))?.id, job.id);
      await u.client.failJob(job.id, a!); // `banned` may never have it again
      assert.equal((await u.client.claimWork(c!))?.id, job.id);
      // `banned` waits longest, so it is the one the release wakes.
      const banned = await parkWaiter(srv, u.client, a!.machine_id, g, 4);
      const other = await parkWaiter(srv, u.client, b!.machine_id, g, LONG_WAIT_S);
      const released = Date.now();
      await u.client.releaseJob(job.id, c!);
      const { job: got, at } = await other.answer;
      assert.equal(got?.id, job.id);
      assert.equal(got?.machine_id, 'other');
      assert.ok(at - released < WOKEN_WITHIN_MS, `handed on ${at - released} ms after the release`);
      assert.equal((await banned.answer).job, undefined, 'the banned machine gets nothing');
    });

    test('a waiting machine is handed a job the moment its holder\'s lease lapses', async () => {
      const g = group();
      const holder = { machine_id: 'holder', container_group_id: g };
      // heartbeat_interval 1 s, lease factor 2: the silent holder loses the job 2 s after its claim.
      const job = await u.client.createJob({ command: 'echo', container_group_id: g, heartbeat_interval: 1 });
      const claimed = await u.client.claimWork(holder);
      assert.equal(claimed?.id, job.id);
      const lapses = Date.parse(claimed!.heartbeat!) + 2000;
      const { job: got, at } = await (await parkWaiter(srv, u.client, 'waiter', g, 10)).answer;
      assert.equal(got?.id, job.id, 'the lapsed job is handed to the waiter');
      assert.equal(got?.machine_id, 'waiter');
      assert.equal(got?.attempt, 2);
      assert.ok(at >= lapses, 'not before the lease lapsed');
      assert.ok(at - lapses < WOKEN_WITHIN_MS - 2000, `answered ${at - lapses} ms after the lapse, not at the 10 s deadline`);
      const { events } = await u.client.jobEvents(job.id);
      assert.deepEqual(
        events.map((e) => [e.type, e.machine_id]),
        [['created', null], ['claimed', 'holder'], ['lease_expired', 'holder'], ['claimed', 'waiter']],
      );
    });

    test('a machine that was already waiting when the job was claimed is handed it when the lease lapses', async () => {
      const g = group();
      // Both park before the job exists; the holder has waited longest, so the new job wakes it.
      const holderPoll = await parkWaiter(srv, u.client, 'holder', g, LONG_WAIT_S);
      const waiterPoll = await parkWaiter(srv, u.client, 'waiter', g, LONG_WAIT_S);
      const job = await u.client.createJob({ command: 'echo', container_group_id: g, heartbeat_interval: 1 });
      const { job: claimed } = await holderPoll.answer;
      assert.equal(claimed?.id, job.id);
      // The holder stays silent: heartbeat_interval 1 s, lease factor 2, the lease lapses 2 s after the claim.
      const lapses = Date.parse(claimed!.heartbeat!) + 2000;
      const { job: got, at } = await waiterPoll.answer;
      assert.equal(got?.id, job.id, 'the lapsed job is handed to the waiter');
      assert.equal(got?.attempt, 2);
      assert.ok(at >= lapses, 'not before the lease lapsed');
      assert.ok(at - lapses < 5000, `answered ${at - lapses} ms after the lapse, not at the end of its ${LONG_WAIT_S} s long-poll`);
    });

    test('a long-poll with nothing to hand out answers [] once its wait is over', async () => {
      const g = group();
      const started = Date.now();
      const jobs = await u.client.request<Job[]>('GET', '/work', { query: { machine_id: 'm', container_group_id: g, wait: 1 } });
      assert.deepEqual(jobs, []);
      assert.ok(Date.now() - started >= 950, `answered after ${Date.now() - started} ms, before its 1 s wait`);
    });

    test('without wait (or with wait=0) a claim answers at once, without waiting, when nothing is claimable', async () => {
      const g = group();
      // A job held by another machine with a long lease: nothing claimable, but something a waiter would wait for.
      await u.client.createJob({ command: 'echo', container_group_id: g, heartbeat_interval: 3600 });
      assert.ok(await u.client.claimWork({ machine_id: 'holder', container_group_id: g }));
      const claims = countCalls(srv.server.store, 'claimJob', u.id);
      const expiries = countCalls(srv.server.store, 'nextLeaseExpiry', u.id);
      try {
        const started = Date.now();
        assert.deepEqual(await u.client.request('GET', '/work', { query: { machine_id: 'm', container_group_id: g } }), []);
        assert.deepEqual(await u.client.request('GET', '/work', { query: { machine_id: 'm', container_group_id: g, wait: 0 } }), []);
        assert.equal(claims.calls(), 2, 'one claim attempt per request');
        assert.equal(expiries.calls(), 0, 'no request looked for a lease expiry to wait for');
        assert.ok(Date.now() - started < WOKEN_WITHIN_MS);
      } finally {
        claims.restore();
        expiries.restore();
      }
    });

    test('a machine waiting for another group or as another user is not handed the job', async () => {
      const g = group();
      const other = await srv.user();
      const otherGroup = await parkWaiter(srv, u.client, 'other-group', `${g}-other`, 1);
      const otherUser = await parkWaiter(srv, other.client, 'other-user', g, 1);
      const job = await u.client.createJob({ command: 'echo', container_group_id: g });
      const answers = await Promise.all([otherGroup.answer, otherUser.answer]);
      assert.deepEqual(answers.map((a) => a.job), [undefined, undefined]);
      assert.equal((await u.client.getJob(job.id)).status, 'pending');
    });

    test('wait above 60 seconds, below 0 or not a number is refused with 400', async () => {
      for (const wait of ['61', '-1', 'soon']) {
        await assert.rejects(
          u.client.request('GET', '/work', { query: { machine_id: 'm', container_group_id: group(), wait } }),
          (e: unknown) => e instanceof DroverApiError && e.status === 400,
          `wait=${wait}`,
        );
      }
    });

    test('a waiting long-poll does not poll the database in a loop', async () => {
      const g = group();
      const claims = countCalls(srv.server.store, 'claimJob', u.id);
      const expiries = countCalls(srv.server.store, 'nextLeaseExpiry', u.id);
      try {
        assert.equal(await u.client.claimWork({ machine_id: 'm', container_group_id: g }, 2), undefined);
        assert.ok(claims.calls() >= 1 && claims.calls() <= 2, `claimJob was called ${claims.calls()} times in a 2 s wait`);
        assert.ok(expiries.calls() <= 2, `nextLeaseExpiry was called ${expiries.calls()} times in a 2 s wait`);
      } finally {
        claims.restore();
        expiries.restore();
      }
    });

    test('a long-poll does not poll the database while another machine holds a live lease', async () => {
      const g = group();
      await u.client.createJob({ command: 'echo', container_group_id: g, heartbeat_interval: 3600 });
      assert.ok(await u.client.claimWork({ machine_id: 'holder', container_group_id: g }));
      const claims = countCalls(srv.server.store, 'claimJob', u.id);
      try {
        assert.equal(await u.client.claimWork({ machine_id: 'm', container_group_id: g }, 2), undefined);
        assert.ok(claims.calls() <= 2, `claimJob was called ${claims.calls()} times in a 2 s wait`);
      } finally {
        claims.restore();
      }
    });
  });

  describe(`long-poll at shutdown (${kind})`, () => {
    test('closing the server answers waiting long-polls at once with []', async () => {
      const srv = await startTestServer(kind);
      try {
        const u = await srv.user();
        const answers = [
          (await parkWaiter(srv, u.client, 'a', 'g', 30)).answer,
          (await parkWaiter(srv, u.client, 'b', 'g2', 30)).answer,
        ];
        const closing = Date.now();
        await srv.stop();
        const closed = Date.now();
        assert.deepEqual((await Promise.all(answers)).map((a) => a.job), [undefined, undefined]);
        assert.ok(closed - closing < 15_000, `close took ${closed - closing} ms: it waited for the 30 s long-polls`);
      } finally {
        await srv.close();
      }
    });
  });
}

describe('long-poll when the LISTEN connection is lost (postgres)', () => {
  /** Run SQL as the PostgreSQL admin, in a session of our own. */
  async function adminQuery(text: string): Promise<pg.QueryResult> {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL });
    await c.connect();
    try {
      return await c.query(text);
    } finally {
      await c.end();
    }
  }
  const databaseName = (srv: TestServer) => new URL(srv.database).pathname.slice(1);
  async function killListener(srv: TestServer): Promise<void> {
    const r = await adminQuery(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where datname = '${databaseName(srv)}' and query ilike 'LISTEN %'`,
    );
    assert.equal(r.rowCount, 1, 'the coordinator had one LISTEN connection');
  }

  test('a waiting machine is handed a job submitted while the coordinator was not listening', async () => {
    const srv = await startTestServer('postgres');
    try {
      const u = await srv.user();
      const { answer } = await parkWaiter(srv, u.client, 'waiter', 'g', LONG_WAIT_S);
      await killListener(srv);
      // Its notification is lost: nobody listens until the coordinator reconnects.
      const submitted = Date.now();
      const job = await u.client.createJob({ command: 'echo', container_group_id: 'g' });
      const { job: got, at } = await answer;
      assert.equal(got?.id, job.id);
      assert.ok(at - submitted < WOKEN_WITHIN_MS, `answered ${at - submitted} ms after the submit, at the ${LONG_WAIT_S} s deadline`);
    } finally {
      await srv.close();
    }
  });

  test('a coordinator refused by the database keeps trying to listen again', async () => {
    const srv = await startTestServer('postgres');
    try {
      const u = await srv.user();
      await adminQuery(`alter database ${databaseName(srv)} allow_connections false`);
      try {
        await killListener(srv);
        // The first attempt to listen again (after about a second) is refused.
        await new Promise((r) => setTimeout(r, 1500));
      } finally {
        await adminQuery(`alter database ${databaseName(srv)} allow_connections true`);
      }
      const { answer } = await parkWaiter(srv, u.client, 'waiter', 'g', LONG_WAIT_S);
      const submitted = Date.now();
      const job = await u.client.createJob({ command: 'echo', container_group_id: 'g' });
      const { job: got, at } = await answer;
      assert.equal(got?.id, job.id);
      assert.ok(at - submitted < WOKEN_WITHIN_MS, `answered ${at - submitted} ms after the submit, at the ${LONG_WAIT_S} s deadline`);
    } finally {
      await srv.close();
    }
  });
});
