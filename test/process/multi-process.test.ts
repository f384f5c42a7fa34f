// Several coordinator processes on one PostgreSQL database: wake-ups cross processes
// (LISTEN/NOTIFY) and claims stay exclusive across them (FOR UPDATE SKIP LOCKED).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DroverClient, type Job } from '@drover/sdk';
import { freshDatabase, spawnServer, type ServerProcess } from '@drover/testing/server';
import { waitFor, waitingLongPolls } from '@drover/testing/wait';

describe('two coordinator processes on one PostgreSQL database', () => {
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let a: ServerProcess;
  let b: ServerProcess;
  /** the same user, talking to coordinator A and to coordinator B */
  let viaA: DroverClient;
  let viaB: DroverClient;

  before(async () => {
    db = await freshDatabase('postgres');
    [a, b] = await Promise.all([
      spawnServer({ database: db.database, adminKey }),
      spawnServer({ database: db.database, adminKey }),
    ]);
    const admin = new DroverClient({ url: a.url, key: adminKey, retries: 0 });
    const user = await admin.createUser('replicated');
    const { token } = await admin.createToken(user.id);
    viaA = new DroverClient({ url: a.url, key: token, retries: 0 });
    viaB = new DroverClient({ url: b.url, key: token, retries: 0 });
  });

  after(async () => {
    const codes = await Promise.all([a?.stop(), b?.stop()]);
    await db?.cleanup();
    assert.deepEqual(codes, [0, 0], `both coordinators exit cleanly:\n${a?.output()}\n${b?.output()}`);
  });

  test('a user and key created through one coordinator work on the other', async () => {
    const me = await viaB.me();
    assert.equal(me.username, 'replicated');
    assert.equal(me.admin, false);
  });

  test('a machine long-polling one coordinator is handed a job submitted through the other at once', async () => {
    const parked = await waitingLongPolls(b);
    const started = Date.now();
    const answer = viaB.claimWork({ machine_id: 'on-b', container_group_id: 'notify' }, 20).then((job) => ({ job, at: Date.now() }));
    await waitFor('the long-poll to be parked on B', async () => (await waitingLongPolls(b)) > parked);
    const submitted = Date.now();
    const job = await viaA.createJob({ command: 'echo', container_group_id: 'notify' });
    const { job: got, at } = await answer;
    assert.equal(got?.id, job.id);
    assert.equal(got?.machine_id, 'on-b');
    // Without a cross-process wake-up B would find the job only at the end of its 20 s wait.
    assert.ok(at - submitted < 10_000, `answered ${at - submitted} ms after the submit (${at - started} ms after asking)`);
  });

  test('a machine long-polling one coordinator is handed a job released through the other at once', async () => {
    const holder = { machine_id: 'holder-on-a', container_group_id: 'notify-release' };
    const job = await viaA.createJob({ command: 'echo', container_group_id: holder.container_group_id });
    assert.equal((await viaA.claimWork(holder))?.id, job.id);
    const parked = await waitingLongPolls(b);
    const answer = viaB.claimWork({ machine_id: 'on-b', container_group_id: holder.container_group_id }, 20).then((j) => ({ job: j, at: Date.now() }));
    await waitFor('the long-poll to be parked on B', async () => (await waitingLongPolls(b)) > parked);
    const released = Date.now();
    await viaA.releaseJob(job.id, holder);
    const { job: got, at } = await answer;
    assert.equal(got?.id, job.id);
    assert.equal(got?.attempt, 2);
    assert.ok(at - released < 10_000, `answered ${at - released} ms after the release`);
  });

  test('40 machines split across both coordinators racing for 30 jobs never get one job twice', async () => {
    const group = 'split-race';
    const jobs = await viaA.createJobs(
      Array.from({ length: 30 }, (_, i) => ({ command: 'echo', arguments: [String(i)], container_group_id: group })),
    );
    const claimer = async (i: number) => {
      const client = i % 2 === 0 ? viaA : viaB;
      const m = { machine_id: `split-${i}`, container_group_id: group };
      const got: Job[] = [];
      for (let job = await client.claimWork(m); job; job = await client.claimWork(m)) got.push(job);
      return got;
    };
    const claims = (await Promise.all(Array.from({ length: 40 }, (_, i) => claimer(i)))).flat();

    assert.deepEqual(claims.map((j) => j.id).sort(), jobs.map((j) => j.id).sort(), 'every job handed out exactly once');
    for (const claim of claims) {
      const { events } = await viaA.jobEvents(claim.id);
      assert.deepEqual(
        events.filter((e) => e.type === 'claimed').map((e) => e.machine_id),
        [claim.machine_id],
        `job ${claim.id} was claimed by one machine only`,
      );
    }
    const viaEach = new Set(claims.map((j) => Number(j.machine_id!.slice('split-'.length)) % 2));
    assert.equal(viaEach.size, 2, 'both coordinators handed out jobs');
  });
});
