// What a newcomer trips on in the first hour, through the real `drover` binary as a user types it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT, startTestServer } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { pidAlive } from '@drover/testing/worker';
import { drover, tmp } from './run.js';

describe('the first hour', () => {
  it('every usage error exits 2, as docs/cli.md says, with commander\'s one-line reason', async () => {
    const cases: [string[], RegExp][] = [
      [['up', '--bogus'], /unknown option '--bogus'/],
      [['demo', '--bogus'], /unknown option '--bogus'/],
      [['server', '--port', 'abc'], /--port must be a whole number/],
      [['worker', '--bogus'], /unknown option '--bogus'/],
      [['upload'], /missing required argument/],
      [['status', '--bogus'], /unknown option '--bogus'/],
    ];
    for (const [args, why] of cases) {
      const r = await drover(args);
      assert.equal(r.code, 2, `drover ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, why, args.join(' '));
    }
    assert.equal((await drover(['--version'])).code, 0);
    assert.equal((await drover(['server', '--help'])).code, 0);
  });

  it('the profile is found in a parent folder, as git finds .git: `drover up` in a project, commands in its sub-folders', async () => {
    const server = await startTestServer('sqlite');
    try {
      const u = await server.user('alice-profile');
      const project = tmp();
      mkdirSync(join(project, '.drover'));
      writeFileSync(join(project, '.drover/profile.json'), JSON.stringify({ api_url: server.url, api_key: u.token }), { mode: 0o600 });
      const deep = join(project, 'examples', 'series-sum');
      mkdirSync(deep, { recursive: true });
      const r = await drover(['users', 'me', '--json'], { cwd: deep });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { username: string }).username, 'alice-profile');
      const none = await drover(['users', 'me'], { cwd: tmp() });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no coordinator URL/);
    } finally {
      await server.close();
    }
  });

  it('--api-url pointed at a web server that is not Drover: one line that says so, not its HTML page', async () => {
    const page = `<!DOCTYPE html>\n<html><head><title>Welcome</title></head>\n<body>${'<p>filler</p>\n'.repeat(50)}</body></html>\n`;
    const web = createServer((req, res) => res.writeHead(req.url?.startsWith('/jobs/') ? 200 : 404, { 'content-type': 'text/html' }).end(page));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
    try {
      for (const args of [['jobs', 'list'], ['jobs', 'get', '8b9c902c-7da6-4af3-be0b-59cd4487895a']]) {
        const r = await drover([...args, '--api-url', url, '--api-key', 'k']);
        assert.equal(r.code, 1, r.stderr);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, /answered (HTTP 404 )?with an HTML page.*is it a Drover \(or Kelpie\) coordinator\?/);
        assert.doesNotMatch(r.stderr, /<html|filler/);
      }
    } finally {
      web.close();
    }
  });

  it('submit refuses a local_path with ".." naming the field, and --dry-run warns about an absolute one', async () => {
    const dir = tmp();
    const file = join(dir, 'job.json');
    const entry = (local_path: string) => ({ bucket: 'b', prefix: 'p/', local_path, direction: 'upload' });
    writeFileSync(file, JSON.stringify({ command: 'python', container_group_id: 'g', sync: { during: [entry('ck/../../etc')] } }));
    const bad = await drover(['submit', file, '--dry-run'], { cwd: dir });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /sync\.during\[0\]\.local_path must not contain "\.\." segments/);
    writeFileSync(file, JSON.stringify({ command: 'python', container_group_id: 'g', sync: { during: [entry('/data/ck')] } }));
    const abs = await drover(['submit', file, '--dry-run'], { cwd: dir });
    assert.equal(abs.code, 0, abs.stderr);
    assert.match(abs.stderr, /warning: sync\.during\[0\]\.local_path "\/data\/ck" is absolute: a worker runs the job only if it lies inside the worker's data root/);
    assert.equal((JSON.parse(abs.stdout) as { sync: { during: { local_path: string }[] } }).sync.during[0]!.local_path, '/data/ck');
  });

  it('an admin revokes a key and deletes a user through the CLI; the errors say what is wrong', async () => {
    const server = await startTestServer('sqlite');
    try {
      const admin = ['--api-url', server.url, '--api-key', server.adminKey];
      const u = await server.user('erin');
      const made = await drover(['users', 'create', 'frank', '--token', ...admin]);
      const [frankId, frankKey] = made.stdout.trim().split('\n') as [string, string];
      const ls = await drover(['tokens', 'ls', frankId, ...admin]);
      assert.equal(ls.code, 0, ls.stderr);
      const tokenId = /^drv_([0-9a-f]{16})_/.exec(frankKey)![1]!;
      assert.match(ls.stdout, new RegExp(`^${tokenId}  \\d{4}-`));
      assert.doesNotMatch(ls.stdout, new RegExp(frankKey.slice(-20)), 'never the secret');
      const revoked = await drover(['tokens', 'revoke', frankKey, ...admin]);
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.match(revoked.stderr, new RegExp(`revoked API key ${tokenId}`));
      assert.equal((await drover(['users', 'me', '--api-url', server.url, '--api-key', frankKey])).code, 1, 'the key no longer works');
      const again = await drover(['tokens', 'revoke', tokenId, ...admin]);
      assert.equal(again.code, 1);
      assert.equal(again.stderr.trim(), `drover tokens revoke: no API key with id ${tokenId}`);
      assert.equal((await drover(['tokens', 'revoke', 'nonsense', ...admin])).code, 2);

      await u.client.createJob({ command: 'x', container_group_id: 'g' });
      const busy = await drover(['users', 'delete', u.id, ...admin]);
      assert.equal(busy.code, 1);
      assert.equal(busy.stderr.trim(), 'drover users delete: the user has 1 pending or running job: cancel them (or purge their groups) first');
      const del = await drover(['users', 'delete', frankId, ...admin]);
      assert.equal(del.code, 0, del.stderr);
      assert.equal((await drover(['users', 'delete', frankId, ...admin])).stderr.trim(), `drover users delete: user ${frankId} not found`);
      const self = await drover(['users', 'delete', (await server.admin.me()).id, ...admin]);
      assert.equal(self.code, 1);
      assert.match(self.stderr, /the admin user cannot be deleted/);
    } finally {
      await server.close();
    }
  });

  it('`npx drover server` stops when npx is told to stop: SIGTERM reaches the server, no orphan is left', async () => {
    const dir = tmp();
    const npx = spawn('npx', ['--prefix', REPO_ROOT, 'drover', 'server', '--port', '0', '--database', join(dir, 'db.sqlite')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', DROVER_ADMIN_KEY: 'admin-npx-test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npx.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    npx.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the server to listen', () => /"pid":(\d+).*Server listening/.test(out), 30_000);
      const serverPid = Number(/"pid":(\d+).*Server listening/.exec(out)![1]);
      assert.notEqual(serverPid, npx.pid, 'npx runs the server as a child process');
      npx.kill('SIGTERM');
      await waitFor(`the server (pid ${serverPid}) to exit`, () => !pidAlive(serverPid), 10_000);
    } finally {
      npx.kill('SIGKILL');
      const m = /"pid":(\d+)/.exec(out);
      if (m && pidAlive(Number(m[1]))) process.kill(Number(m[1]), 'SIGKILL');
    }
  });
});
