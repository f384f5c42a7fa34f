#!/usr/bin/env node
// Runs every *.test.ts under test/ with node's test runner (TypeScript through tsx), then prints
// the one plain summary line CI reads: "N passed, N failed[, N skipped]". Exit code: non-zero on
// any failure. Pass file paths or substrings to run a subset.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'node_modules' ? [] : find(p);
    return name.endsWith('.test.ts') ? [p] : [];
  });
}

const files = find(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

// Test files run this many at a time (DROVER_TEST_CONCURRENCY; default 3, so the suite takes about
// 8 minutes instead of 17 on two cores). Most files wait on leases, long-polls and child processes
// rather than compute; set 1 to run them one by one.
const concurrency = Math.max(1, Number(process.env.DROVER_TEST_CONCURRENCY ?? 3) || 1);
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, ...files],
  { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } },
);
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('exit', (code) => {
  const count = (label) => Number(new RegExp(`^ℹ ${label} (\\d+)$`, 'm').exec(out)?.[1] ?? 0);
  const passed = count('pass');
  const failed = count('fail') + count('cancelled');
  const skipped = count('skipped') + count('todo');
  const ranNothing = passed + failed === 0;
  const failures = failed + (code !== 0 && failed === 0 ? 1 : 0) + (ranNothing ? 1 : 0);
  console.log(`${passed} passed, ${failures} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failures > 0 || skipped > 0 ? 1 : 0);
});
