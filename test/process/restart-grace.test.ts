// A coordinator that was down for longer than a lease (found by `npm run chaos`): the nodes kept
// running their jobs meanwhile, so after the restart the first idle node to ask must not take a
// job whose holder just could not be heard. Each running job whose lease was live when the
// coordinator was last heard of gets one lease of grace; a lease that had lapsed before the
// outage (a dead node) stays lapsed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DroverClient } from '@drover/sdk';
import { STORES, freePort, freshDatabase, spawnServer } from '@drover/testing/server';


for (const kind of STORES) {
  describe(`coordinator restart after an outage longer than a lease (${kind})`, () => {
    test('live holders keep their jobs through the restart; a job of a node that died before it is handed out at once', async () => {
      const db = await freshDatabase(kind);
      const adminKey = `admin-${Date.now()}`;
      const port = await freePort();
      let server = await spawnServer({ database: db.database, adminKey, port });
      try {
        const admin = new DroverClient({ url: server.url, key: adminKey, retries: 0 });
        const user = await admin.createUser(`grace-${kind}-${Date.now()}`);
        const { token } = await admin.createToken(user.id);
        const api = new DroverClient({ url: server.url, key: token, retries: 0 });
        const group = 'g';
        const machine = (id: string) => ({ machine_id: id, container_group_id: group });
        const def = { command: 'true', container_group_id: group, heartbeat_interval: 1 }; // lease 2 s

        // `dead` claims a job and never heartbeats; `live` claims the other and keeps beating.
        const deadJob = await api.createJob(def);
        assert.equal((await api.claimWork(machine('dead')))?.id, deadJob.id);
        const liveJob = await api.createJob(def);
        assert.equal((await api.claimWork(machine('live')))?.id, liveJob.id);
        for (let i = 0; i < 3; i++) {
          await sleep(900);
          assert.equal((await api.heartbeat(liveJob.id, machine('live'))).status, 'running');
        }
        // dead's lease lapsed 0.7 s ago, live's is fresh: the coordinator dies, and stays down 3 s.
        await server.stop('SIGKILL');
        await sleep(3000);
        server = await spawnServer({ database: db.database, adminKey, port });

        // Another node asks at once: it gets the dead node's job, not the live one's.
        assert.equal((await api.claimWork(machine('idle')))?.id, deadJob.id);
        assert.equal(await api.claimWork(machine('idle-2')), undefined, 'the live job is not handed out during its grace');
        assert.equal((await api.heartbeat(liveJob.id, machine('live'))).status, 'running');
        const { events } = await api.jobEvents(liveJob.id);
        assert.deepEqual(events.filter((e) => e.type === 'claimed').map((e) => e.machine_id), ['live']);

        // The grace is one lease, not forever: once live stops beating, its job is taken.
        await api.completeJob(deadJob.id, machine('idle'));
        await sleep(2300);
        assert.equal((await api.claimWork(machine('idle-2')))?.id, liveJob.id);
      } finally {
        await server.stop('SIGTERM');
        await db.cleanup();
      }
    });
  });
}
