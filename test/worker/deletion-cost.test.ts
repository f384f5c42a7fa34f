// The instance's deletion cost as SaladCloud's scale-in reads it, set through a real ImdsClient
// against a loopback IMDS: 0 idle, rising while a job runs, highest during a final upload.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { DELETION_COST, DeletionCost, ImdsClient } from '@drover/worker';
import { startRecordingImds, type RecordingImds } from '@drover/testing/imds';

describe('deletion cost', () => {
  let imds: RecordingImds;
  let cost: DeletionCost;
  const sent = () => imds.requests.map((r) => (JSON.parse(r.body) as { deletion_cost: number }).deletion_cost);

  before(async () => {
    imds = await startRecordingImds();
  });
  after(() => imds.close());
  beforeEach(() => {
    imds.requests.length = 0;
    cost = new DeletionCost(new ImdsClient({ baseUrl: imds.url, machineId: 'salad-node-1', log: { info: () => {}, warn: () => {} } }));
  });

  it('an idle node costs 0, a running job 1 and then more with every heartbeat, so scale-in takes idle nodes first', async () => {
    await cost.idle();
    await cost.jobStarted('j1');
    for (let beat = 1; beat <= 3; beat++) await cost.beat('j1', beat);
    await cost.jobEnded('j1');
    assert.deepEqual(sent(), [0, 1, 3, 4, 5, 0]);
    assert.ok(imds.requests.every((r) => r.method === 'PUT' && r.path === '/v1/deletion-cost' && r.headers.metadata === 'true'));
  });

  it('a final upload holds the highest cost, also while the next job runs, and releases it when done', async () => {
    await cost.idle();
    await cost.jobStarted('j1');
    await cost.beat('j1', 1);
    let finish!: () => void;
    const upload = cost.duringFinalUpload(async () => {
      await cost.jobEnded('j1');
      await new Promise<void>((r) => (finish = r));
    });
    await cost.settled();
    assert.equal(cost.value, DELETION_COST.finalUpload);
    await cost.jobStarted('j2');
    await cost.beat('j2', 1);
    await cost.beat('j1', 2); // the finished job's heartbeat goes on: it no longer raises anything
    assert.equal(cost.value, DELETION_COST.finalUpload, 'the upload still wins over the running job');
    finish();
    await upload;
    assert.equal(cost.value, 3, "back to the running job's cost");
    await cost.jobEnded('j2');
    assert.deepEqual(sent(), [0, 1, 3, DELETION_COST.finalUpload, 3, 0]);
  });

  it('a cost is sent only when it changes, and the last one sent is the one that holds', async () => {
    await cost.idle();
    await Promise.all([cost.jobEnded('nothing'), cost.jobStarted('a'), cost.beat('a', 1), cost.beat('a', 2), cost.jobEnded('a')]);
    await cost.settled();
    assert.deepEqual(sent(), [0, 1, 3, 4, 0]);
    const times = imds.requests.map((r) => r.at);
    assert.deepEqual(times, [...times].sort((x, y) => x - y), 'in order');
  });

  it('off SaladCloud nothing is sent', async () => {
    const local = new DeletionCost(new ImdsClient({ baseUrl: imds.url, machineId: 'LOCAL', log: { info: () => {}, warn: () => {} } }));
    await local.idle();
    await local.jobStarted('j');
    await local.duringFinalUpload(async () => {});
    assert.equal(imds.requests.length, 0);
  });
});
