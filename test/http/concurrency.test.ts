// Claims under contention, over real HTTP: many machines racing for few jobs never share one.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { DroverClient, Job } from '@drover/sdk';
import { STORES, startTestServer, type TestServer } from '@drover/testing/server';

const CLAIMERS = 50;
const JOBS = 20;

interface Claim {
  jobId: string;
  machineId: string;
}

/** One machine asking for work again and again until it is told there is none. */
async function claimUntilEmpty(client: DroverClient, machineId: string, groupId: string): Promise<Claim[]> {
  const got: Claim[] = [];
  for (;;) {
    const job = await client.claimWork({ machine_id: machineId, container_group_id: groupId });
    if (!job) return got;
    assert.equal(job.machine_id, machineId, 'the claimed job names its claimer');
    got.push({ jobId: job.id, machineId });
  }
}

function sorted(xs: string[]): string[] {
  return [...xs].sort();
}

/** The `claimed` events of a job, as (machine, attempt) pairs. */
async function claimEvents(client: DroverClient, jobId: string) {
  const { events } = await client.jobEvents(jobId);
  return events.filter((e) => e.type === 'claimed').map((e) => ({ machine: e.machine_id, attempt: e.attempt }));
}

for (const kind of STORES) {
  describe(`concurrent claims (${kind})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind);
    });
    after(async () => {
      await srv?.close();
    });

    test('50 machines racing for 20 jobs: every job is claimed exactly once, by one machine', async () => {
      const u = await srv.user();
      const group = 'race';
      const jobs = await u.client.createJobs(
        Array.from({ length: JOBS }, (_, i) => ({ command: 'echo', arguments: [String(i)], container_group_id: group })),
      );

      const perMachine = await Promise.all(
        Array.from({ length: CLAIMERS }, (_, i) => claimUntilEmpty(u.client, `racer-${i}`, group)),
      );
      const claims = perMachine.flat();

      // The union of what the machines were handed is every job, each exactly once.
      assert.deepEqual(sorted(claims.map((c) => c.jobId)), sorted(jobs.map((j) => j.id)));

      for (const claim of claims) {
        const job = await u.client.getJob(claim.jobId);
        assert.equal(job.status, 'running');
        assert.equal(job.machine_id, claim.machineId);
        assert.equal(job.attempt, 1);
        assert.deepEqual(await claimEvents(u.client, claim.jobId), [{ machine: claim.machineId, attempt: 1 }]);
      }
      assert.equal(await u.client.claimWork({ machine_id: 'late', container_group_id: group }), undefined);
    });

    test('50 machines racing for 20 jobs whose leases lapsed: each is re-claimed exactly once', async () => {
      const u = await srv.user();
      const group = 'lapsed';
      // heartbeat_interval 1 s: with the default lease factor a silent holder loses the job after 2 s.
      const jobs = await u.client.createJobs(
        Array.from({ length: JOBS }, (_, i) => ({
          command: 'echo',
          arguments: [String(i)],
          container_group_id: group,
          heartbeat_interval: 1,
        })),
      );
      // Twenty machines take one job each, then vanish without a heartbeat.
      const first = await Promise.all(
        Array.from({ length: JOBS }, (_, i) => u.client.claimWork({ machine_id: `vanished-${i}`, container_group_id: group })),
      );
      assert.equal(new Set(first.map((j) => j?.id)).size, JOBS, 'the first twenty machines took one job each');

      // Fifty other machines long-poll for work: they all wake together as the leases lapse and race.
      // Each completes what it gets at once, so a re-claimed job can never lapse a second time.
      const reclaimed: Claim[] = [];
      const deadline = Date.now() + 30_000;
      const racer = async (machineId: string) => {
        const m = { machine_id: machineId, container_group_id: group };
        while (reclaimed.length < JOBS && Date.now() < deadline) {
          const job: Job | undefined = await u.client.claimWork(m, 1);
          if (!job) continue;
          reclaimed.push({ jobId: job.id, machineId });
          await u.client.completeJob(job.id, m);
        }
      };
      await Promise.all(Array.from({ length: CLAIMERS }, (_, i) => racer(`racer-${i}`)));

      assert.deepEqual(sorted(reclaimed.map((c) => c.jobId)), sorted(jobs.map((j) => j.id)));
      for (const claim of reclaimed) {
        const job = await u.client.getJob(claim.jobId);
        assert.equal(job.status, 'completed');
        assert.equal(job.attempt, 2);
        assert.equal(job.num_failures, 0, 'a lapsed lease counts no failure');
        const claimedBy = await claimEvents(u.client, claim.jobId);
        assert.equal(claimedBy.length, 2, `job ${claim.jobId} was claimed ${claimedBy.length} times`);
        assert.match(claimedBy[0]!.machine ?? '', /^vanished-/);
        assert.deepEqual(claimedBy[1], { machine: claim.machineId, attempt: 2 });
        const { events } = await u.client.jobEvents(claim.jobId);
        assert.equal(events.filter((e) => e.type === 'lease_expired').length, 1);
      }
    });
  });
}
