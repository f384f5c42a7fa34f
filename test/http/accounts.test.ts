// The first hour's missing basics, on both stores: an admin revokes a key and deletes a user; a job
// queued for a group no worker serves says so; /metrics on a listener of its own when asked.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DroverApiError } from '@drover/sdk';
import { STORES, startTestServer, type TestServer } from '@drover/testing/server';

const machine = (machine_id: string, container_group_id: string) => ({ machine_id, container_group_id });

for (const kind of STORES) {
  describe(`accounts and notices (${kind})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer(kind);
    });
    after(async () => {
      await srv?.close();
    });

    test('an admin lists and revokes a key by its id: refused at once, the user\'s other key still works', async () => {
      const u = await srv.user();
      const second = await srv.admin.createToken(u.id);
      assert.match(second.id ?? '', /^[0-9a-f]{16}$/);
      assert.ok(second.token.startsWith(`drv_${second.id}_`));
      await srv.client(second.token).me(); // verified and cached: revoking must still take effect at once
      const { tokens } = await srv.admin.listTokens(u.id);
      assert.equal(tokens.length, 2);
      assert.ok(tokens.some((t) => t.id === second.id));
      assert.ok(tokens.every((t) => Object.keys(t).sort().join() === 'created,id'), 'ids and times only, never a secret');
      await srv.admin.revokeToken(second.id!);
      await assert.rejects(srv.client(second.token).me(), (e: unknown) => e instanceof DroverApiError && e.status === 403);
      assert.equal((await u.client.me()).id, u.id, 'the other key works');
      await assert.rejects(srv.admin.revokeToken(second.id!), (e: unknown) => e instanceof DroverApiError && e.status === 404);
      await assert.rejects(u.client.revokeToken(second.id!), (e: unknown) => e instanceof DroverApiError && e.status === 403, 'admin only');
      await assert.rejects(srv.admin.revokeToken('not-an-id'), (e: unknown) => e instanceof DroverApiError && e.status === 400 && /params\/id/.test(e.message));
    });

    test('an admin deletes a user: refused while it has a pending or running job (409 with the count), then its keys and jobs go with it', async () => {
      const u = await srv.user();
      const job = await u.client.createJob({ command: 'x', container_group_id: 'g-del' });
      await assert.rejects(srv.admin.deleteUser(u.id), (e: unknown) => e instanceof DroverApiError && e.status === 409 && /1 pending or running job/.test(e.message));
      assert.equal((await u.client.getJob(job.id)).status, 'pending', 'nothing changed');
      await u.client.cancelJob(job.id);
      await srv.admin.deleteUser(u.id);
      await assert.rejects(u.client.me(), (e: unknown) => e instanceof DroverApiError && e.status === 403, 'its key is gone');
      await assert.rejects(srv.admin.listTokens(u.id), (e: unknown) => e instanceof DroverApiError && e.status === 404);
      assert.doesNotMatch(await srv.snapshot(), new RegExp(u.id), 'no row of the user is left');
      await assert.rejects(srv.admin.deleteUser(u.id), (e: unknown) => e instanceof DroverApiError && e.status === 404);
      const admin = await srv.admin.me();
      await assert.rejects(srv.admin.deleteUser(admin.id), (e: unknown) => e instanceof DroverApiError && e.status === 400 && /admin/.test(e.message));
    });

    test('a job for a group no worker has polled says so on submission and on GET; once a worker polls the group, it does not', async () => {
      const u = await srv.user();
      const typo = await u.client.createJob({ command: 'x', container_group_id: 'gpu-groop' });
      assert.match(typo.notice ?? '', /^no worker has polled container group "gpu-groop" in the last 5 minutes \(none ever has\): check the group id/);
      assert.equal((await u.client.getJob(typo.id)).notice, typo.notice);
      await u.client.claimWork(machine('m1', 'gpu-group')); // a worker asks for the real group's work (none yet)
      const ok = await u.client.createJob({ command: 'x', container_group_id: 'gpu-group' });
      assert.equal(ok.notice, undefined);
      const batch = await u.client.createJobs([{ command: 'x', container_group_id: 'gpu-group' }, { command: 'x', container_group_id: 'gpu-groop' }]);
      assert.deepEqual(batch.map((j) => j.notice === undefined), [true, false]);
      // Another user's workers do not count for this user's groups.
      const other = await srv.user();
      assert.match((await other.client.createJob({ command: 'x', container_group_id: 'gpu-group' })).notice ?? '', /no worker has polled/);
      // A running job is being served: no notice.
      assert.equal((await u.client.claimWork(machine('m1', 'gpu-groop')))?.id, typo.id);
      assert.equal((await u.client.getJob(typo.id)).notice, undefined);
    });
  });
}

describe('/metrics on a listener of its own', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer('sqlite', { metricsListen: { host: '127.0.0.1', port: 0 } });
  });
  after(async () => {
    await srv?.close();
  });

  test('serves GET /metrics without a key there, and nothing else; the API port still wants the admin key', async () => {
    const url = srv.server.metricsUrl!;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const open = await fetch(url);
    assert.equal(open.status, 200);
    assert.match(await open.text(), /drover_longpoll_waiting/);
    assert.equal((await fetch(url.replace('/metrics', '/jobs'))).status, 404);
    assert.equal((await fetch(`${srv.url}/metrics`)).status, 401);
  });
});
