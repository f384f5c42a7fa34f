// The worker's log shipper against a real coordinator that goes away and comes back on the same
// port: while it is unreachable the buffer stays within its bound, keeping the newest lines; once
// it is back they are shipped, the dropped ones counted; a line is made storable before it is sent.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { DroverApiError, DroverClient } from '@drover/sdk';
import { LogShipper, ReportRefusedError, storableLine, type LogShipment } from '@drover/worker';
import { LOG_LINE_MAX } from '@drover/protocol';
import { freePort, freshDatabase, startTestServer, type TestServer } from '@drover/testing/server';

const silent = pino({ level: 'silent' });

describe('log shipper', () => {
  const closing: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of closing.reverse()) await c();
  });

  it('keeps at most its buffer bound while the coordinator is unreachable, then ships the newest lines and counts the dropped', async () => {
    const port = await freePort();
    const db = await freshDatabase('sqlite');
    closing.push(db.cleanup);
    const adminKey = 'admin-log-shipper-test';
    let server: TestServer = await startTestServer('sqlite', { port, database: db.database, adminKey });
    const user = await server.user();
    const machine = { machine_id: 'm-ship', container_group_id: 'g-ship' };
    const job = await user.client.createJob({ command: 'app', container_group_id: machine.container_group_id, sync: {} });
    assert.equal((await user.client.claimWork(machine))?.id, job.id);
    await server.stop();

    const client = new DroverClient({ url: server.url, key: user.token, retries: 0, timeoutMs: 2000 });
    const ship = (b: LogShipment) =>
      client.shipLogs(job.id, { ...machine, ...b }).catch((err: unknown) => {
        throw err instanceof DroverApiError && err.status < 500 ? new ReportRefusedError(err.message) : err;
      });
    const maxBufferBytes = 64 * 1024;
    const shipper = new LogShipper({ ship, attempt: 1, log: silent, flushIntervalMs: 50, maxBufferBytes });
    const N = 3000;
    for (let i = 0; i < N; i++) {
      shipper.push('stdout', `line ${i} ${'x'.repeat(90)}`);
      assert.ok(shipper.bufferedBytes <= maxBufferBytes, `buffered ${shipper.bufferedBytes} bytes at line ${i}`);
    }
    await new Promise((r) => setTimeout(r, 300)); // a few failed flushes
    server = await startTestServer('sqlite', { port, database: db.database, adminKey });
    closing.push(() => server.close());
    await shipper.close(20_000);

    const page = await user.client.jobLogs(job.id, { limit: 5000 });
    const seqs = page.lines.map((l) => l.seq);
    assert.ok(seqs.length > 100 && seqs.length < N, `${seqs.length} lines kept`);
    assert.equal(seqs.at(-1), N - 1, 'the newest line is kept');
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => N - seqs.length + i), 'a contiguous tail');
    assert.equal(page.dropped_lines, N - seqs.length, 'every dropped line is counted');
    assert.equal(page.lines.at(-1)?.text, `line ${N - 1} ${'x'.repeat(90)}`);
  });

  it('a line is made storable: control characters become spaces, lone surrogates go, a long line is cut', () => {
    assert.equal(storableLine('a\u0000b\u001bc\td'), 'a b c\td');
    assert.equal(storableLine('x\ud800y'), 'xy');
    const long = storableLine('z'.repeat(LOG_LINE_MAX + 10));
    assert.equal(long.length, LOG_LINE_MAX);
    assert.ok(long.endsWith('…'));
  });
});
