// The real built `drover` CLI as a child process (execFile, no shell), with a clean environment:
// the test's own KELPIE_* or colour settings never leak into it.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DROVER_BIN } from '@drover/testing/server';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: Record<string, string>;
}

function childEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env };
}

export function drover(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args],
      { cwd: opts.cwd ?? tmp(), env: childEnv(opts.env), timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** A long-running CLI process (e.g. status --watch) whose output is collected as it comes. */
export function droverSpawn(args: string[], opts: CliOptions = {}): { proc: ChildProcess; stdout(): string; stderr(): string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [DROVER_BIN, ...args], { cwd: opts.cwd ?? tmp(), env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  return { proc, stdout: () => out, stderr: () => err, exited };
}

export function tmp(prefix = 'drover-cli-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The ids a command printed, one per line. */
export function ids(stdout: string): string[] {
  return stdout.split('\n').filter((l) => /^[0-9a-f-]{36}$/.test(l));
}
