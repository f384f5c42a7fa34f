// Jobs from an AWS SQS queue (`drover worker --queue`; the seeds' demo app 2): a real SQS-protocol
// server on loopback (fauxqs, which also serves the bucket), real `drover worker` processes, real
// signals. Each rule is one of the three things SQS lacks for long jobs, made up by the worker: a
// lease of 2 × heartbeat_interval instead of a visibility timeout of hours, a hand-on before the
// 12-hour visibility cap, and failures and status counted per job.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { SQS_ATTRIBUTES, defaultSqsStatusPrefix, sqsRecordKey, type JobDefinition, type SqsJobRecord } from '@drover/protocol';
import { expectedSum, inputKey, outputKey, seriesSumJob, stateKey, type SeriesOutput, type SeriesState } from '@drover/example-series-sum';
import { NotFoundError } from '@drover/storage';
import { REPO_ROOT } from '@drover/testing/server';
import { sqsStack, type SqsHarness, type TestQueue } from '@drover/testing/sqs';
import { waitFor } from '@drover/testing/wait';
import type { TestWorker, WorkerLogLine } from '@drover/testing/worker';

const COUNTER_APP = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');

describe('jobs from an SQS queue', () => {
  const h = sqsStack();
  const { workers, worker } = h;

  function dump(): string {
    return workers.map((w) => `--- ${w.machineId}\n${w.logs.slice(-30).map((l) => JSON.stringify(l)).join('\n')}\n${w.stderr().slice(-1500)}`).join('\n');
  }

  async function send(q: TestQueue, body: string | JobDefinition): Promise<string> {
    const r = await h.client.send(new SendMessageCommand({
      QueueUrl: q.url,
      MessageBody: typeof body === 'string' ? body : JSON.stringify(body),
      ...(q.name.endsWith('.fifo') ? { MessageGroupId: `g-${Math.random()}`, MessageDeduplicationId: `d-${Math.random()}` } : {}),
    }));
    return r.MessageId!;
  }

  async function record(q: TestQueue, id: string): Promise<SqsJobRecord | undefined> {
    try {
      return JSON.parse(await text(await h.s3.store.getStream(h.s3.bucket, sqsRecordKey(defaultSqsStatusPrefix(q.name), id)))) as SqsJobRecord;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async function untilRecord(q: TestQueue, id: string, what: string, cond: (r: SqsJobRecord) => boolean, timeoutMs = 60_000): Promise<SqsJobRecord> {
    let r: SqsJobRecord | undefined;
    try {
      await waitFor(`job ${id}: ${what}`, async () => (r = await record(q, id)) !== undefined && cond(r), timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; record ${JSON.stringify(r)}\n${dump()}`);
    }
    return r!;
  }

  async function object(key: string): Promise<string | undefined> {
    try {
      return await text(await h.s3.store.getStream(h.s3.bucket, key));
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** A series-sum job in app-managed mode (the Checkpointer's upload thread and queue), as the seeds' demo app 2 runs. */
  async function seriesSum(q: TestQueue, prefix: string, range: [number, number], o: { heartbeat: number; step: number; save: number }): Promise<string> {
    await h.s3.store.put(h.s3.bucket, inputKey(prefix), Buffer.from(JSON.stringify({ start: range[0], end: range[1] })));
    const def = seriesSumJob({ mode: 'app', bucket: h.s3.bucket, prefix, containerGroupId: q.name, stepSeconds: o.step, saveIntervalSeconds: o.save, heartbeatInterval: o.heartbeat });
    assert.deepEqual(def.sync, {}, 'the app moves its own data');
    return send(q, def);
  }

  async function savedStep(prefix: string): Promise<number> {
    const s = await object(stateKey(prefix));
    return s ? (JSON.parse(s) as SeriesState).step : 0;
  }

  const isJob = (id: string) => (l: WorkerLogLine) => l.job === id;

  /** The queue holds no message, visible or in flight (a worker deletes a message after writing the job's record). */
  async function queueEmpty(url: string, what: string): Promise<void> {
    let c: Awaited<ReturnType<SqsHarness['counts']>> | undefined;
    await waitFor(what, async () => {
      c = await h.counts(url);
      return c.available === 0 && c.inFlight === 0;
    }, 10_000).catch((err: Error) => assert.fail(`${err.message}: ${JSON.stringify(c)}\n${dump()}`));
  }

  it('a node killed with -9 mid-run: another node resumes the job within 2 × heartbeat_interval + 1 s, from its last checkpoint, and the sum is exact', async () => {
    const heartbeat = 2;
    const q = await h.queue({ redrive: true });
    const prefix = 'sqs/kill/';
    const [start, end] = [1_000_000_000_000_000, 1_000_000_000_000_079];
    const id = await seriesSum(q, prefix, [start, end], { heartbeat, step: 0.1, save: 0.3 });
    const a = worker(q);
    await a.waitForLog('A started the job', (l) => isJob(id)(l) && l.msg === 'job process started');
    const b = worker(q);
    await b.waitForLog('B waits for work', (l) => l.msg === 'drover worker started');
    await waitFor('a saved state past step 0', async () => (await savedStep(prefix)) > 0, 20_000);
    const running = await record(q, id);
    assert.equal(running?.machine_id, a.machineId);
    assert.equal(running?.lease_timeout, 2 * heartbeat, 'the lease is 2 × heartbeat_interval');

    const t0 = Date.now();
    await a.killNode();
    const atKill = await savedStep(prefix);
    const resumed = await b.waitForLog('B runs the job', (l) => isJob(id)(l) && l.msg === 'job process started', 30_000);
    const failoverMs = (resumed.time as number) - t0;
    assert.ok(failoverMs <= (2 * heartbeat + 1) * 1000, `B resumed ${failoverMs} ms after the kill (bound ${(2 * heartbeat + 1) * 1000} ms)\n${dump()}`);

    const done = await untilRecord(q, id, 'completed', (r) => r.status === 'completed');
    const out = JSON.parse((await object(outputKey(prefix)))!) as SeriesOutput;
    assert.equal(out.sum, expectedSum(start, end).toString());
    assert.deepEqual(out.machines, [a.machineId, b.machineId]);
    assert.ok(out.runs[1]!.from >= atKill && out.runs[1]!.from > 0, `B resumed at step ${out.runs[1]!.from}; the state at the kill said ${atKill}`);
    assert.deepEqual([done.attempt, done.num_failures, done.machine_id], [2, 0, b.machineId], 'a lapse is no failure');
    await queueEmpty(q.url, "the completed job's message deleted"); // the record says completed first, then the message goes
  });

  for (const variant of [
    { name: 'on its own (it receives the copy itself)', fifo: false, idle: false },
    { name: 'beside an idle node on a FIFO queue (that node relays the copy)', fifo: true, idle: true },
  ]) {
    it(`a job runs past the visibility cap without a restart: it moves to a new message before the cap, ${variant.name}`, async () => {
      const q = await h.queue({ fifo: variant.fifo, redrive: true });
      const prefix = `sqs/cap-${variant.fifo ? 'fifo' : 'std'}/`;
      const [start, end] = [-100, 99];
      // An 8 s cap (SQS's is 12 h): the 20 s job outlives it twice over.
      const capS = 8;
      const id = await seriesSum(q, prefix, [start, end], { heartbeat: 1, step: 0.1, save: 0.5 });
      const a = worker(q, { DROVER_SQS_VISIBILITY_CAP_S: String(capS) });
      const started = await a.waitForLog('A started the job', (l) => isJob(id)(l) && l.msg === 'job process started');
      const idle = variant.idle ? worker(q, { DROVER_SQS_VISIBILITY_CAP_S: String(capS) }) : undefined;
      const done = await untilRecord(q, id, 'completed', (r) => r.status === 'completed', 90_000);

      const pids = a.logs.filter((l) => isJob(id)(l) && l.msg === 'job process started').map((l) => l.pid);
      assert.deepEqual(pids, [started.pid], `one process ran the job from start to end\n${dump()}`);
      assert.equal(idle?.logs.some((l) => isJob(id)(l) && l.msg === 'claimed a job') ?? false, false, 'the idle node never took the job');
      const out = JSON.parse((await object(outputKey(prefix)))!) as SeriesOutput;
      assert.equal(out.sum, expectedSum(start, end).toString());
      assert.deepEqual(out.machines, [a.machineId]);
      assert.ok(done.hand_ons >= 2, `handed on ${done.hand_ons} times`);
      assert.equal(done.attempt, 1, 'never claimed again');
      assert.ok(done.replaced_message_ids.includes(id), 'the first message was replaced');
      assert.notEqual(done.message_id, id);
      if (variant.idle) assert.ok(idle!.logs.some((l) => isJob(id)(l) && /relayed to the node running it/.test(l.msg)), 'the idle node relayed a copy');
      await waitFor('the queue to be empty: every replaced message is deleted', async () => {
        const c = await h.counts(q.url);
        return c.available === 0 && c.inFlight === 0;
      }, 10_000);
    });
  }

  it('a job that fails max_failures times goes to the dead-letter queue with the reason; a node that failed it leaves it to another node', async () => {
    const q = await h.queue({ redrive: true });
    // heartbeat_interval 30: a failed attempt that waited out its lease (60 s) would miss the test's deadline.
    const id = await send(q, { command: process.execPath, arguments: [COUNTER_APP], environment: { EXIT_CODE: '3', CKPT_DIR: 'ck', OUT_DIR: 'out' }, container_group_id: 'g', max_failures: 2, heartbeat_interval: 30 });
    const a = worker(q);
    const once = await untilRecord(q, id, 'failed once', (x) => x.num_failures === 1 && x.machine_id === null, 30_000);
    assert.deepEqual(once.banned_machines, [a.machineId], 'the failing machine is banned from the job');
    // A sees the message again at once (a failure does not wait out the lease) and leaves it alone.
    const failed = await a.waitForLog('A reported the failure', (l) => isJob(id)(l) && l.msg === 'job reported failed');
    const declined = await a.waitForLog('A left the job to another node', (l) => isJob(id)(l) && /failed the job before: leaving it to another node/.test(l.msg), 15_000);
    assert.ok((declined.time as number) - (failed.time as number) < 10_000, 'a failed attempt is visible again at once, not after its lease');
    assert.equal((await record(q, id))?.status, 'running', 'the job waits in the queue for another node');

    const b = worker(q);
    const r = await untilRecord(q, id, 'dead-lettered', (x) => x.status === 'dead-lettered' && x.dead_letter_message_id !== null, 30_000);
    assert.deepEqual([r.num_failures, r.attempt, r.machine_id], [2, 2, null]);
    assert.deepEqual(r.banned_machines, [a.machineId, b.machineId]);
    assert.match(r.last_error ?? '', /exited with code 3/);
    assert.equal(r.dead_letter_queue_url, q.deadLetterUrl);
    const claims = (w: TestWorker) => w.logs.filter((l) => isJob(id)(l) && l.msg === 'claimed a job').length;
    assert.deepEqual([claims(a), claims(b)], [1, 1], 'each node ran the job once');

    const dead = await h.peek(q.deadLetterUrl);
    assert.equal(dead.length, 1);
    const attr = (name: string) => dead[0]!.MessageAttributes?.[name]?.StringValue;
    assert.equal(attr(SQS_ATTRIBUTES.jobId), id);
    assert.equal(attr(SQS_ATTRIBUTES.failures), '2');
    assert.match(attr(SQS_ATTRIBUTES.deadLetterReason) ?? '', /failed 2 times \(max_failures 2\); last: the job process exited with code 3/);
    assert.equal(JSON.parse(dead[0]!.Body!).command, process.execPath, 'the dead letter carries the job definition');
    await queueEmpty(q.url, 'the message deleted from the queue'); // after the record names its dead letter
  });

  it('a message that is not a job definition goes to the dead-letter queue with the reason; the worker goes on', async () => {
    const q = await h.queue();
    const notJson = await send(q, 'sum 1..100 please');
    const badField = await send(q, JSON.stringify({ command: 5, container_group_id: 'g' }));
    const w = worker(q, { DROVER_SQS_DEAD_LETTER_QUEUE_URL: q.deadLetterUrl });
    const good = await send(q, { command: process.execPath, arguments: [COUNTER_APP], environment: { STEPS: '2', CKPT_DIR: 'ck', OUT_DIR: 'out' }, container_group_id: 'g', heartbeat_interval: 1 });
    await untilRecord(q, good, 'completed', (r) => r.status === 'completed');
    for (const [id, reason] of [[notJson, /the message body is not JSON/], [badField, /not a Drover job definition: field command must be a string, got number 5/]] as const) {
      const r = await untilRecord(q, id, 'dead-lettered', (x) => x.status === 'dead-lettered' && x.dead_letter_message_id !== null, 10_000);
      assert.match(r.last_error ?? '', reason);
    }
    const dead = await h.peek(q.deadLetterUrl);
    assert.deepEqual(dead.map((m) => m.Body).sort(), ['sum 1..100 please', JSON.stringify({ command: 5, container_group_id: 'g' })].sort());
    assert.ok(dead.every((m) => (m.MessageAttributes?.[SQS_ATTRIBUTES.deadLetterReason]?.StringValue ?? '') !== ''));
    assert.equal(w.proc.exitCode, null, 'the worker is still running');
  });

  it('SIGTERM: the worker releases the job without counting a failure, and another node resumes it at once', async () => {
    const q = await h.queue({ redrive: true });
    const prefix = 'sqs/term/';
    const [start, end] = [1, 120];
    // heartbeat_interval 30: resuming before the 60 s lease lapses shows the release made it visible.
    const id = await seriesSum(q, prefix, [start, end], { heartbeat: 30, step: 0.1, save: 60 });
    const a = worker(q);
    await a.waitForLog('A started the job', (l) => isJob(id)(l) && l.msg === 'job process started');
    await a.waitForLog('the app saved its first state', (l) => isJob(id)(l) && /saved step 0 of 120/.test(l.msg));
    const b = worker(q);
    await b.waitForLog('B waits for work', (l) => l.msg === 'drover worker started');
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    a.signal('SIGTERM');
    assert.equal((await a.exited).code, 0);
    const resumed = await b.waitForLog('B runs the job', (l) => isJob(id)(l) && l.msg === 'job process started', 30_000);
    assert.ok((resumed.time as number) - t0 < 10_000, 'resumed long before the lease would have lapsed');
    const r = await untilRecord(q, id, 'completed', (x) => x.status === 'completed');
    assert.deepEqual([r.attempt, r.num_failures], [2, 0], 'a release is no failure');
    const out = JSON.parse((await object(outputKey(prefix)))!) as SeriesOutput;
    assert.equal(out.sum, expectedSum(start, end).toString());
    assert.ok(out.runs[1]!.from > 0, 'B resumed from the state A saved on SIGTERM');
  });

  it("a second delivery of a message a live node holds is not claimed: only once the holder's heartbeats stop", async () => {
    const q = await h.queue({ redrive: true });
    const id = await send(q, { command: process.execPath, arguments: [COUNTER_APP], environment: { STEPS: '1', CKPT_DIR: 'ck', OUT_DIR: 'out' }, container_group_id: 'g', heartbeat_interval: 1 });
    const now = () => new Date().toISOString();
    // Another node holds the job and beats (its record's heartbeat keeps fresh), as when SQS hands the
    // same message to a second receiver while the first still has it.
    const holder = (): SqsJobRecord => ({
      id, queue_url: q.url, status: 'running', message_id: id, replaced_message_ids: [], attempt: 1, num_failures: 0, max_failures: 3,
      heartbeat_interval: 1, lease_timeout: 2, machine_id: 'the-holder', command: process.execPath, arguments: [], created: now(), started: now(),
      heartbeat: now(), num_heartbeats: 1, completed: null, dead_lettered: null, hand_ons: 0, progress: null, last_error: null,
      dead_letter_queue_url: null, dead_letter_message_id: null, updated: now(),
    });
    const key = sqsRecordKey(defaultSqsStatusPrefix(q.name), id);
    await h.s3.store.put(h.s3.bucket, key, Buffer.from(JSON.stringify(holder())));
    let beating = true;
    const beats = (async () => {
      while (beating) {
        await h.s3.store.put(h.s3.bucket, key, Buffer.from(JSON.stringify(holder())));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const w = worker(q);
    await w.waitForLog('the worker to leave it', (l) => l.msg === 'sqs: leaving a message this node cannot place' && /the-holder holds it/.test(String(l.why)), 20_000);
    await new Promise((r) => setTimeout(r, 3000)); // it is received again every lease (2 s), and left again
    assert.equal(w.logs.some((l) => isJob(id)(l) && l.msg === 'claimed a job'), false, 'not claimed while the holder beats');
    beating = false;
    await beats;
    const r = await untilRecord(q, id, 'completed by the worker', (x) => x.status === 'completed', 20_000);
    assert.deepEqual([r.machine_id, r.attempt], [w.machineId, 2]);
  });

  it('a receiver deletes the messages a job no longer needs: a completed job\'s leftover, and a message a hand-on replaced', async () => {
    const q = await h.queue({ redrive: true });
    const def: JobDefinition = { command: process.execPath, arguments: [COUNTER_APP], environment: { STEPS: '1', CKPT_DIR: 'ck', OUT_DIR: 'out' }, container_group_id: 'g', heartbeat_interval: 1 };
    const done = await send(q, def);
    const replaced = await send(q, def);
    const now = new Date().toISOString();
    const base: SqsJobRecord = {
      id: '', queue_url: q.url, status: 'running', message_id: '', replaced_message_ids: [], attempt: 1, num_failures: 0, max_failures: 3,
      heartbeat_interval: 1, lease_timeout: 2, machine_id: null, command: def.command, arguments: def.arguments ?? [], created: now, started: now,
      heartbeat: now, num_heartbeats: 0, completed: null, dead_lettered: null, hand_ons: 0, progress: null, last_error: null,
      dead_letter_queue_url: null, dead_letter_message_id: null, updated: now,
    };
    const put = (r: SqsJobRecord) => h.s3.store.put(h.s3.bucket, sqsRecordKey(defaultSqsStatusPrefix(q.name), r.id), Buffer.from(JSON.stringify(r)));
    await put({ ...base, id: done, message_id: done, status: 'completed', completed: now });
    // The job moved on to another message; this one is what the hand-on left behind.
    await put({ ...base, id: replaced, message_id: '00000000-0000-4000-8000-000000000000', replaced_message_ids: [replaced], hand_ons: 1 });
    const w = worker(q);
    await waitFor('both messages to be deleted', async () => {
      const c = await h.counts(q.url);
      return c.available === 0 && c.inFlight === 0;
    }, 15_000);
    assert.equal(w.logs.some((l) => l.msg === 'claimed a job'), false, 'neither was run');
    assert.equal(w.logs.filter((l) => l.msg === 'sqs: deleting a message of a job that needs it no more').length, 2);
  });
});
