// docs/cli.md's examples, run as a user would type them, in the order the page gives them, against
// a real `drover up` started in a project folder. Placeholders (a job id, a user id, a token id)
// stand for things made here first; examples that need what this machine has not (PostgreSQL at
// db-host, SaladCloud, a coordinator at drover.example.com, a terminal for --watch) are listed as
// skipped, by rule, in the test's output. Every other example must exit 0.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DroverClient } from '@drover/sdk';
import { DROVER_BIN, REPO_ROOT } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';

/** The command lines of a page's examples: ```sh blocks, and `$ drover …` lines of transcripts. */
export function exampleCommands(markdown: string): string[] {
  const out: string[] = [];
  let fence: string | null = null;
  let pending = '';
  for (const raw of markdown.split('\n')) {
    const m = /^```(\w*)\s*$/.exec(raw);
    if (m) {
      fence = fence === null ? m[1]! : null;
      continue;
    }
    if (fence === null) continue;
    let line = raw;
    if (fence === 'sh') {
      if (line.trimStart().startsWith('#')) continue;
    } else {
      if (!line.startsWith('$ drover')) continue;
      line = line.slice(2);
    }
    line = pending + line;
    if (line.endsWith('\\')) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    pending = '';
    line = line.replace(/\s{2,}#.*$/, '').trim();
    if (line) out.push(line);
  }
  return out;
}

/** Why an example is not run here, or undefined. */
function skipReason(cmd: string): string | undefined {
  if (/^drover (up|demo)\b/.test(cmd)) return 'starts a cluster (this test runs `drover up` itself)';
  if (/\bdrover (server|worker)\b/.test(cmd)) return 'a coordinator or worker of its own, for another machine';
  if (/--watch\b/.test(cmd)) return 'redraws until Ctrl-C';
  if (/\bdrover salad\b|SALAD_API_KEY=/.test(cmd)) return "SaladCloud's API (test/cli/salad.test.ts runs these against its loopback fake)";
  if (/--queue\b|\bdrover queue\b|DROVER_SQS_/.test(cmd)) return 'an AWS SQS queue (test/cli/queue.test.ts runs these against fauxqs)';
  return undefined;
}

function run(cmd: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('/bin/sh', ['-c', cmd], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe("docs/cli.md's examples", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('each one runs as the page shows it and exits 0', async (t) => {
    const commands = exampleCommands(readFileSync(join(REPO_ROOT, 'docs/cli.md'), 'utf8'));
    assert.ok(commands.length >= 25, `found ${commands.length} examples`);
    const project = mkdtempSync(join(tmpdir(), 'drover-docs-'));
    dirs.push(project);
    // `drover` on PATH, as after `npm install -g` (or npx).
    const bin = join(project, '.bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'drover'), `#!/bin/sh\nexec "${process.execPath}" "${DROVER_BIN}" "$@"\n`);
    chmodSync(join(bin, 'drover'), 0o755);
    writeFileSync(join(project, 'train.py'), 'print("trained")\n');
    mkdirSync(join(project, 'inputs'));
    writeFileSync(join(project, 'inputs', 'a.txt'), 'input a\n');

    const up = spawn(process.execPath, [DROVER_BIN, 'up', '--workers', '2', '--port', '0'], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', DROVER_ADMIN_KEY: '' } });
    let upOut = '';
    up.stdout!.on('data', (d: Buffer) => (upOut += d.toString()));
    up.stderr!.on('data', (d: Buffer) => (upOut += d.toString()));
    t.after(() => up.kill('SIGKILL'));
    await waitFor(`drover up:\n${upOut}`, () => /API key\s+(\S+)/.test(upOut), 30_000);
    const profile = JSON.parse(readFileSync(join(project, '.drover', 'profile.json'), 'utf8')) as { api_url: string; api_key: string; admin_key: string };
    const user = new DroverClient({ url: profile.api_url, key: profile.api_key });
    const admin = new DroverClient({ url: profile.api_url, key: profile.admin_key });

    // What the placeholders stand for.
    const job = await user.createJob({ command: 'python3', arguments: ['train.py'], container_group_id: 'local', sync: {} });
    const dora = await admin.createUser('dora');
    const doraKey = await admin.createToken(dora.id);
    mkdirSync(join(project, '.drover', 'storage', 'jobs', 'run-1', 'output'), { recursive: true });
    writeFileSync(join(project, '.drover', 'storage', 'jobs', 'run-1', 'output', 'result.txt'), 'result\n');
    const placeholders: [string, string][] = [
      ['3f2b9c4e-8a1d-4e5f-9b7a-0c1d2e3f4a5b', job.id],
      ['0f6c3a1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f', dora.id],
      ['3fa85f6457174562', doraKey.id!],
    ];
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, NO_COLOR: '1', DROVER_ADMIN_KEY: profile.admin_key, KELPIE_API_URL: '', KELPIE_API_KEY: '' };

    const skipped: string[] = [];
    for (const example of commands) {
      const why = skipReason(example);
      if (why) {
        skipped.push(`${example}  — ${why}`);
        continue;
      }
      const cmd = placeholders.reduce((c, [from, to]) => c.replaceAll(from, to), example);
      const r = await run(cmd, project, env);
      assert.equal(r.code, 0, `docs/cli.md: \`${example}\` exited ${r.code}:\n${r.out}`);
    }
    t.diagnostic(`not run here:\n${skipped.join('\n')}`);
    assert.ok(skipped.length < commands.length / 2, `most examples run (skipped ${skipped.length} of ${commands.length})`);
    up.kill('SIGINT');
    await new Promise((r) => up.once('exit', r));
  });
});
