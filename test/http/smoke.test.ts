import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { STORES, startTestServer, type TestServer } from '@drover/testing/server';

for (const kind of STORES) {
  describe(`smoke (${kind})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind);
    });
    after(async () => {
      await srv?.close();
    });

    test('a submitted job is claimed, heartbeated and completed', async () => {
      const u = await srv.user();
      const m = { machine_id: 'm1', container_group_id: 'g1' };
      const job = await u.client.createJob({ command: 'echo', container_group_id: 'g1' });
      assert.equal(job.status, 'pending');
      const claimed = await u.client.claimWork(m);
      assert.equal(claimed?.id, job.id);
      assert.equal(claimed?.attempt, 1);
      assert.deepEqual(await u.client.heartbeat(job.id, m, { fraction: 0.5, message: 'half' }), { status: 'running' });
      assert.deepEqual(await u.client.completeJob(job.id, m), { message: 'Completed reported' });
      const done = await u.client.getJob(job.id);
      assert.equal(done.status, 'completed');
      assert.deepEqual(done.progress, { fraction: 0.5, message: 'half' });
    });
  });
}
