// `drover server` as a real child process: admin key bootstrap, migrations at start, graceful
// shutdown on SIGTERM/SIGINT, and the command line itself.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DroverClient, type Job } from '@drover/sdk';
import { DROVER_BIN, STORES, freshDatabase, spawnServer, type ServerProcess } from '@drover/testing/server';
import { waitFor, waitingLongPolls } from '@drover/testing/wait';

const ADMIN_KEY_RE = /drv_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/g;

function client(url: string, key: string): DroverClient {
  return new DroverClient({ url, key, retries: 0 });
}

function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'drover-lifecycle-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Run the drover CLI to completion. */
function drover(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DROVER_BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A POST whose headers the server has received (it answered `100 Continue`) but whose body
 * is held back until `send()`: a request in flight for as long as the test likes.
 */
async function heldRequest(url: string, key: string, path: string, body: unknown) {
  const payload = JSON.stringify(body);
  const req = http.request(`${url}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(payload),
      expect: '100-continue',
      'x-kelpie-key': key,
    },
  });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  await Promise.race([
    once(req, 'continue'),
    response.then((r) => Promise.reject(new Error(`answered before the body was sent: ${r.status} ${r.body}`))),
  ]);
  return {
    send() {
      req.end(payload);
      return response;
    },
  };
}

describe('drover server: the admin key', () => {
  test('a first start without DROVER_ADMIN_KEY prints an admin key once; later starts print none and it keeps working', async () => {
    const tmp = tempDir();
    const database = join(tmp.dir, 'drover.db');
    try {
      const first = await spawnServer({ database });
      const printed = first.output().match(ADMIN_KEY_RE) ?? [];
      assert.equal(printed.length, 1, `one admin key printed, once:\n${first.output()}`);
      const key = printed[0]!;
      const me = await client(first.url, key).me();
      assert.equal(me.admin, true);
      assert.equal(await first.stop(), 0);

      const second = await spawnServer({ database });
      try {
        assert.doesNotMatch(second.output(), ADMIN_KEY_RE, 'a second start prints no key');
        assert.doesNotMatch(second.output(), /Admin API key/);
        const again = await client(second.url, key).me();
        assert.equal(again.admin, true);
        assert.equal(again.id, me.id, 'the same admin as before');
      } finally {
        assert.equal(await second.stop(), 0);
      }
    } finally {
      tmp.cleanup();
    }
  });

  for (const kind of STORES) {
    test(`with DROVER_ADMIN_KEY set, that key is the admin's and none is printed (${kind})`, async () => {
      const db = await freshDatabase(kind);
      const adminKey = `my-own-admin-key-${randomBytes(6).toString('hex')}`;
      const server = await spawnServer({ database: db.database, adminKey });
      try {
        assert.doesNotMatch(server.output(), ADMIN_KEY_RE);
        const me = await client(server.url, adminKey).me();
        assert.equal(me.admin, true);
        // It can do what only the admin may.
        const user = await client(server.url, adminKey).createUser('someone');
        assert.equal(user.username, 'someone');
        await assert.rejects(client(server.url, `${adminKey}-not`).me(), /unknown API key/);
      } finally {
        assert.equal(await server.stop(), 0);
        await db.cleanup();
      }
    });
  }
});

describe('drover server: shutdown', () => {
  for (const kind of STORES) {
    test(`SIGTERM answers a waiting long-poll with [], finishes a request in flight and exits 0 (${kind})`, async () => {
      const db = await freshDatabase(kind);
      const adminKey = `admin-${randomBytes(8).toString('hex')}`;
      let server: ServerProcess | undefined;
      try {
        server = await spawnServer({ database: db.database, adminKey });
        const admin = client(server.url, adminKey);
        const longPoll = admin
          .request<Job[]>('GET', '/work', { query: { machine_id: 'm', container_group_id: 'g', wait: 30 }, extraTimeoutMs: 30_000 })
          .then((jobs) => ({ jobs, at: Date.now() }));
        await waitFor('the long-poll to be parked', async () => (await waitingLongPolls(server!)) === 1);
        const inFlight = await heldRequest(server.url, adminKey, '/jobs', { command: 'echo', container_group_id: 'g' });

        const exited = once(server.proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
        const signalled = Date.now();
        server.proc.kill('SIGTERM');

        const { jobs, at } = await longPoll;
        assert.deepEqual(jobs, [], 'the long-poll is answered with no job');
        assert.ok(at - signalled < 15_000, `the 30 s long-poll was answered ${at - signalled} ms after SIGTERM`);

        // The shutdown has begun (the long-poll was answered); the held request still completes.
        const { status, body } = await inFlight.send();
        assert.equal(status, 202, body);
        assert.equal((JSON.parse(body) as Job).command, 'echo');

        const [code, signal] = await exited;
        assert.deepEqual({ code, signal }, { code: 0, signal: null }, server.output());
        assert.ok(Date.now() - signalled < 15_000, `exited ${Date.now() - signalled} ms after SIGTERM`);

        // The job the held request created was committed before the process exited.
        server = await spawnServer({ database: db.database, adminKey });
        const { jobs: listed } = await client(server.url, adminKey).listJobs();
        assert.deepEqual(listed.map((j) => j.command), ['echo']);
      } finally {
        await server?.stop();
        await db.cleanup();
      }
    });
  }

  test('SIGINT or SIGTERM sent the moment the server says it is up stops it with exit code 0', async () => {
    // Several at once, so that some child is slow between announcing itself and handling signals.
    const tmp = tempDir();
    try {
      const codes = await Promise.all(
        (['SIGINT', 'SIGTERM', 'SIGINT', 'SIGTERM'] as const).map(async (signal, i) => {
          const server = await spawnServer({ database: join(tmp.dir, `drover-${i}.db`), adminKey: 'k' });
          return { signal, code: await server.stop(signal) };
        }),
      );
      assert.deepEqual(codes.filter((c) => c.code !== 0), [], 'every server exited 0');
    } finally {
      tmp.cleanup();
    }
  });
});

describe('drover server: migrations at start', () => {
  test('a SQLite file in a directory that does not exist yet is created and migrated', async () => {
    const tmp = tempDir();
    const database = join(tmp.dir, 'not', 'there', 'yet', 'drover.db');
    assert.equal(existsSync(dirname(database)), false);
    try {
      const server = await spawnServer({ database, adminKey: 'k' });
      try {
        const job = await client(server.url, 'k').createJob({ command: 'echo', container_group_id: 'g' });
        assert.equal((await client(server.url, 'k').getJob(job.id)).status, 'pending');
      } finally {
        assert.equal(await server.stop(), 0);
      }
      assert.ok(existsSync(database));
    } finally {
      tmp.cleanup();
    }
  });

  test('a brand new PostgreSQL database is migrated at start', async () => {
    const db = await freshDatabase('postgres');
    try {
      const server = await spawnServer({ database: db.database, adminKey: 'k' });
      try {
        const job = await client(server.url, 'k').createJob({ command: 'echo', container_group_id: 'g' });
        assert.equal((await client(server.url, 'k').getJob(job.id)).status, 'pending');
      } finally {
        assert.equal(await server.stop(), 0);
      }
    } finally {
      await db.cleanup();
    }
  });
});

describe('drover command line', () => {
  test('drover --help lists the server command', async () => {
    const { code, stdout } = await drover(['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /Usage: drover/);
    assert.match(stdout, /^\s+server\b/m);
  });

  test('drover server --help lists every option and the admin key variable', async () => {
    const { code, stdout } = await drover(['server', '--help']);
    assert.equal(code, 0);
    for (const option of ['--port', '--host', '--database', '--allow-private-webhooks', '--body-limit', '--lease-factor', '--log-level', 'DROVER_ADMIN_KEY']) {
      assert.ok(stdout.includes(option), `help mentions ${option}:\n${stdout}`);
    }
  });

  const badValues: [string, string][] = [
    ['--port', 'abc'],
    ['--port', '-1'],
    ['--port', '65536'],
    ['--body-limit', '0'],
    ['--lease-factor', '0.5'],
    ['--log-level', 'loud'],
  ];
  for (const [flag, value] of badValues) {
    test(`drover server ${flag} ${value} is refused with a one-line error naming the flag, before touching the database`, async () => {
      const tmp = tempDir();
      const database = join(tmp.dir, 'drover.db');
      try {
        const { code, stdout, stderr } = await drover(['server', '--host', '127.0.0.1', '--port', '0', '--database', database, flag, value]);
        assert.notEqual(code, 0);
        assert.equal(stdout, '');
        const lines = stderr.trim().split('\n');
        assert.equal(lines.length, 1, `one line:\n${stderr}`);
        assert.ok(lines[0]!.includes(flag), `the error names ${flag}: ${lines[0]}`);
        assert.equal(existsSync(database), false, 'no database was created');
      } finally {
        tmp.cleanup();
      }
    });
  }
});
