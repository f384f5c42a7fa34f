// The KELPIE_STATE_FILE: the exact shape of seed 003 item 13, rewritten atomically on every change.
import { StateFile } from '@drover/worker';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

describe('worker state file', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'drover-state-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A clock that moves one second per reading, from a fixed start. */
  function fakeClock() {
    let t = Date.parse('2024-12-04T23:03:57.947Z');
    return () => new Date((t += 1000) - 1000);
  }

  const read = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));

  it('a new state file lists the worker start and no jobs', async () => {
    const file = path.join(dir, 'new.json');
    await StateFile.create(file, { now: fakeClock() });
    assert.deepEqual(read(file), { start: '2024-12-04T23:03:57.947Z', jobs: [] });
  });

  it('after a sequence of updates the file has exactly the seed shape', async () => {
    const file = path.join(dir, 'shape.json');
    const state = await StateFile.create(file, { now: fakeClock() });
    const a = '38ea1dbc-4b96-4224-83e0-a057924c0247';
    const b = '58701c81-eb7f-4356-a735-0979397a94bc';
    await state.addJob(a);
    await state.downloadStarted(a, '/app/data/input/in.bin');
    assert.deepEqual((read(file) as { jobs: { activeDownloads: string[] }[] }).jobs[0]?.activeDownloads, ['/app/data/input/in.bin']);
    await state.downloadDone(a, '/app/data/input/in.bin');
    await state.uploadStarted(a, `/app/data/output-${a}/output_200MB.file`);
    await state.uploadStarted(a, `/app/data/output-${a}/output_200MB.file`);
    await state.setExit(a, 0);
    await state.addJob(b);
    await state.uploadStarted(b, '/app/data/state/state_200MB.file');
    await state.uploadStarted(b, '/app/data/state/other.file');
    await state.uploadDone(b, '/app/data/state/other.file');
    assert.deepEqual(read(file), {
      start: '2024-12-04T23:03:57.947Z',
      jobs: [
        {
          id: a,
          status: 'running',
          start: '2024-12-04T23:03:58.947Z',
          activeUploads: [`/app/data/output-${a}/output_200MB.file`],
          activeDownloads: [],
          exitTime: '2024-12-04T23:03:59.947Z',
          exitCode: 0,
        },
        {
          id: b,
          status: 'running',
          start: '2024-12-04T23:04:00.947Z',
          activeUploads: ['/app/data/state/state_200MB.file'],
          activeDownloads: [],
          exitTime: null,
          exitCode: null,
        },
      ],
    });
    // Key order matches the seed's example too.
    const firstJob = (read(file) as { jobs: object[] }).jobs[0] ?? {};
    assert.deepEqual(Object.keys(firstJob), ['id', 'status', 'start', 'activeUploads', 'activeDownloads', 'exitTime', 'exitCode']);
    assert.deepEqual(read(file), state.snapshot());

    await state.uploadDone(a, `/app/data/output-${a}/output_200MB.file`);
    await state.setStatus(a, 'completed');
    await state.setExit(b, null);
    await state.setStatus(b, 'failed');
    await state.addJob('c');
    await state.dropFinished();
    const after = read(file) as { jobs: { id: string }[] };
    assert.deepEqual(
      after.jobs.map((j) => j.id),
      ['c'],
    );
    await state.removeJob('c');
    assert.deepEqual(read(file), { start: '2024-12-04T23:03:57.947Z', jobs: [] });
  });

  it('an update for an unknown or duplicate job is refused and leaves the file as it was', async () => {
    const file = path.join(dir, 'refuse.json');
    const state = await StateFile.create(file, { now: fakeClock() });
    await state.addJob('x');
    const before = readFileSync(file, 'utf8');
    await assert.rejects(state.uploadStarted('nope', '/a'), /no job nope/);
    await assert.rejects(state.addJob('x'), /already listed/);
    await state.flush();
    assert.equal(readFileSync(file, 'utf8'), before);
    await state.setStatus('x', 'completed');
    assert.equal((read(file) as { jobs: { status: string }[] }).jobs[0]?.status, 'completed');
  });

  it('concurrent updates are applied in call order and none is lost', async () => {
    const file = path.join(dir, 'concurrent.json');
    const state = await StateFile.create(file);
    await state.addJob('j');
    const files = Array.from({ length: 50 }, (_, i) => `/data/f${i}`);
    await Promise.all(files.map((f) => state.uploadStarted('j', f)));
    await Promise.all(files.filter((_, i) => i % 2 === 0).map((f) => state.uploadDone('j', f)));
    const job = (read(file) as { jobs: { activeUploads: string[] }[] }).jobs[0];
    assert.deepEqual(
      job?.activeUploads,
      files.filter((_, i) => i % 2 === 1),
    );
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.concurrent.json')), [], 'no temp files left behind');
  });

  it('a reader polling during 200 rapid updates always parses a complete file', async () => {
    const file = path.join(dir, 'atomic.json');
    const state = await StateFile.create(file);
    await state.addJob('job');
    let writing = true;
    let reads = 0;
    const reader = (async () => {
      while (writing || reads < 20) {
        const text = await readFile(file, 'utf8');
        const parsed = JSON.parse(text) as { jobs: { id: string }[] };
        assert.equal(parsed.jobs[0]?.id, 'job', `torn or wrong file: ${text}`);
        reads++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    // Long paths make each version several kilobytes, so a non-atomic write would be seen half done.
    const updates: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const name = `/data/${'x'.repeat(200)}/${i}`;
      updates.push(i % 2 === 0 ? state.uploadStarted('job', name) : state.downloadStarted('job', name));
    }
    await Promise.all(updates);
    writing = false;
    await reader;
    assert.ok(reads >= 20);
    const final = read(file) as { jobs: { activeUploads: string[]; activeDownloads: string[] }[] };
    assert.equal(final.jobs[0]?.activeUploads.length, 100);
    assert.equal(final.jobs[0]?.activeDownloads.length, 100);
  });
});
