// Job logs end to end: a real coordinator, real `drover worker` processes, a job that prints. Its
// output reaches GET /jobs/:id/logs and `drover logs`; a node killed with kill -9 loses no more than
// its last second of output; an attempt's output stops at the coordinator's cap, and says so; the
// app's first progress goes out at once (it says where a handover resumed).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LogLine } from '@drover/protocol';
import { drover, droverSpawn, tmp } from '../cli/run.js';
import { REPO_ROOT, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { spawnWorker, type TestWorker } from '@drover/testing/worker';

const CHATTY = join(REPO_ROOT, 'test/fixtures/chatty-app.mjs');
const CAP_BYTES = 32 * 1024;
/** The worker ships every second; what a dead node may lose is bounded by that, plus slack for a loaded machine. */
const LOSS_BOUND_MS = 1000 + 1500;

describe('job logs (real worker processes)', () => {
  let server: TestServer;
  let user: TestUser;
  const workers: TestWorker[] = [];

  function worker(group: string): TestWorker {
    const w = spawnWorker({ url: server.url, key: user.token, group, env: { DROVER_STORAGE: `file://${tmp('drover-logs-store-')}` } });
    workers.push(w);
    return w;
  }

  const chatty = (group: string, env: Record<string, string>) =>
    user.client.createJob({ command: process.execPath, arguments: [CHATTY], environment: env, container_group_id: group, heartbeat_interval: 1, sync: {} });

  /** Every stored line of one attempt, page by page. */
  async function allLines(jobId: string, attempt: number): Promise<LogLine[]> {
    const out: LogLine[] = [];
    for (let after = -1; ; ) {
      const page = await user.client.jobLogs(jobId, { attempt, after, limit: 1000 });
      out.push(...page.lines);
      after = page.next;
      if (!page.more) return out;
    }
  }

  before(async () => {
    server = await startTestServer('sqlite', { logCapBytes: CAP_BYTES });
    user = await server.user();
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.killNode()));
    await server.close();
  });

  it("a job's stdout and stderr reach the coordinator in order, and drover logs prints them (stderr to stderr)", async () => {
    const group = 'g-logs';
    const job = await chatty(group, { LINES: '60', EVERY_MS: '10', STDERR_EVERY: '3' });
    worker(group);
    await waitFor('the job completed', async () => (await user.client.getJob(job.id)).status === 'completed', 30_000);
    const page = await user.client.jobLogs(job.id);
    assert.equal(page.attempt, 1);
    assert.equal(page.done, true);
    assert.equal(page.truncated, false);
    assert.equal(page.lines.length, 61);
    assert.deepEqual(page.lines.map((l) => l.seq), Array.from({ length: 61 }, (_, i) => i));
    // each stream in its own order (the worker reads the two pipes separately)
    const of = (stream: string) => page.lines.filter((l) => l.stream === stream).map((l) => Number(/^tick (\d+)/.exec(l.text)?.[1] ?? 1e9));
    assert.deepEqual(of('stderr'), Array.from({ length: 20 }, (_, i) => i * 3 + 2));
    assert.deepEqual(of('stdout').slice(0, -1), Array.from({ length: 60 }, (_, i) => i).filter((i) => i % 3 !== 2));

    const cli = await drover(['logs', job.id, '--api-url', server.url, '--api-key', user.token]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout.split('\n').filter((l) => l.startsWith('tick')).length, 40);
    assert.match(cli.stdout, /done\n$/);
    assert.equal(cli.stderr.split('\n').filter((l) => l.startsWith('tick')).length, 20);
    const json = await drover(['logs', job.id, '--tail', '2', '--json', '--api-url', server.url, '--api-key', user.token]);
    assert.deepEqual(json.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number; attempt: number }).seq), [59, 60]);
    const missing = await drover(['logs', '00000000-0000-4000-8000-000000000000', '--api-url', server.url, '--api-key', user.token]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^drover logs: job 00000000-0000-4000-8000-000000000000 not found\n$/);
    const usage = await drover(['logs', 'not-a-job', '--api-url', server.url, '--api-key', user.token]);
    assert.equal(usage.code, 2);
  });

  it('kill -9 of the node loses at most its last second of output; drover logs -f follows the job through the next attempt to its end', async () => {
    const group = 'g-logs-kill';
    const witness = join(tmp('drover-witness-'), 'printed.txt');
    const job = await chatty(group, { LINES: '400', EVERY_MS: '25', WITNESS: witness });
    const a = worker(group);
    const follow = droverSpawn(['logs', job.id, '-f', '--api-url', server.url, '--api-key', user.token]);
    await waitFor('3 s of output printed', () => existsSync(witness) && readFileSync(witness, 'utf8').split('\n').length > 120, 20_000);
    await a.killNode();
    const killedAt = Date.now();
    const printed = readFileSync(witness, 'utf8').split('\n').filter(Boolean);
    // Give a shipment that was in flight at the kill time to land, then look.
    await new Promise((r) => setTimeout(r, 300));
    const stored = await allLines(job.id, 1);
    assert.ok(stored.length > 0, 'lines of attempt 1 were shipped before the kill');
    // What was stored is exactly what the job printed, from its first line, without a gap.
    assert.deepEqual(stored.map((l) => l.text), printed.slice(0, stored.length));
    const lost = printed.slice(stored.length);
    const oldestLost = lost.length ? Number(/ at (\d+)/.exec(lost[0]!)![1]) : killedAt;
    assert.ok(killedAt - oldestLost <= LOSS_BOUND_MS, `lost ${lost.length} lines, the oldest printed ${killedAt - oldestLost} ms before the kill`);

    // Another node takes the job over (the app starts counting again: it keeps no checkpoint).
    worker(group);
    await waitFor('the job completed', async () => (await user.client.getJob(job.id)).status === 'completed', 60_000);
    const second = await user.client.jobLogs(job.id, { tail: 1 });
    assert.equal(second.attempt, 2);
    assert.equal(second.lines[0]?.text, 'done');
    assert.equal(await Promise.race([follow.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))]), 0, follow.stderr());
    assert.match(follow.stderr(), /── attempt 1 on .*\n[\s\S]*── attempt 2 on /);
    const out = follow.stdout().split('\n');
    assert.equal(out.filter((l) => l.startsWith('tick 0 at')).length, 2, 'both attempts printed from their first line');
    assert.equal(out.filter((l) => l === 'done').length, 1);
  });

  it("the app's first progress of an attempt goes out as soon as it is written (where a handover resumed), not at the next heartbeat", async () => {
    const group = 'g-first-progress';
    // heartbeats every 10 s; the app writes its progress after its 10th line, 0.2 s in
    const job = await user.client.createJob({
      command: process.execPath,
      arguments: [CHATTY],
      environment: { LINES: '2000', EVERY_MS: '20' },
      container_group_id: group,
      heartbeat_interval: 10,
      sync: {},
    });
    const w = worker(group);
    await w.waitForLog('the job started', (l) => l.job === job.id && l.msg === 'job process started');
    const started = Date.now();
    await waitFor('the first progress at the coordinator', async () => (await user.client.getJob(job.id)).progress !== null, 20_000);
    assert.ok(Date.now() - started < 5000, `progress arrived ${Date.now() - started} ms after the start, a heartbeat is 10 s`);
    await user.client.cancelJob(job.id);
  });

  it("an attempt's output stops at the coordinator's cap, and the log and the worker say so", async () => {
    const group = 'g-logs-cap';
    // ~1 KiB a line: the 32 KiB cap holds about 31 of 200 lines
    const job = await chatty(group, { LINES: '200', EVERY_MS: '2', PAD: '1000' });
    const w = worker(group);
    await waitFor('the job completed', async () => (await user.client.getJob(job.id)).status === 'completed', 30_000);
    const page = await user.client.jobLogs(job.id);
    assert.equal(page.truncated, true);
    assert.equal(page.cap_bytes, CAP_BYTES);
    assert.ok(page.stored_bytes <= CAP_BYTES && page.stored_bytes > CAP_BYTES - 1100, `stored ${page.stored_bytes} bytes`);
    assert.ok(page.lines.length >= 25 && page.lines.length < 40, `${page.lines.length} lines kept`);
    assert.deepEqual(page.lines.map((l) => l.seq), Array.from({ length: page.lines.length }, (_, i) => i), 'the first lines, without a gap');
    assert.ok(page.dropped_lines > 0 && page.dropped_lines <= 201 - page.lines.length, `dropped ${page.dropped_lines}`);
    await w.waitForLog('the worker stopped shipping', (l) => l.job === job.id && /reached the coordinator's cap of 32768 bytes/.test(l.msg));
    const cli = await drover(['logs', job.id, '--api-url', server.url, '--api-key', user.token]);
    assert.match(cli.stderr, /output cut at the coordinator's cap of 32\.0 KiB/);
  });
});
