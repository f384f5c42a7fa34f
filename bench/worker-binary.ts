// The single-file drover-worker against `drover worker` from the repository, side by side in one run.
//
//   npm run bench:worker-binary -- [--runs 10] [--builds 3] [--download-mib 256]
//
// - build: wall time of scripts/build-worker-binary.mjs (after `npm run build`), and the size of
//   what it makes, with and without the code cache;
// - start: wall time of `--help` (loads every module the worker has, prints, exits) for each;
// - first claim: a coordinator in this process (SQLite) with one job waiting; t0 just before the
//   spawn, then the first log line, and the worker's `claimed a job` line, as they reach this process;
// - transfer threads: a before-sync of --download-mib MiB (8 MiB files) from a loopback S3 server, from
//   `claimed a job` to `inputs downloaded`: the binary with its threads, the binary whose TMPDIR
//   cannot be written (the main-thread fallback), and `drover worker`.
// Runs are interleaved (A B C A B C …) so the machine's noise falls on all alike.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DROVER_BIN, REPO_ROOT, startTestServer, type TestUser } from '@drover/testing/server';
import { spawnWorker, type TestWorker } from '@drover/testing/worker';
import { startBackend, type Backend } from '@drover/testing/storage';
import { wholeFlag } from './lib/flags.js';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    builds: { type: 'string', default: '3' },
    'download-mib': { type: 'string', default: '256' },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log('usage: npm run bench:worker-binary -- [--runs N (10)] [--builds N (3)] [--download-mib N (256)]');
  process.exit(0);
}
const runs = wholeFlag('runs', flags.runs, 1);
const builds = wholeFlag('builds', flags.builds, 1);
const downloadMiB = wholeFlag('download-mib', flags['download-mib'], 4);

const dir = mkdtempSync(join(tmpdir(), 'drover-bench-binary-'));
const BUILD = join(REPO_ROOT, 'scripts/build-worker-binary.mjs');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const ms = (n: number) => `${Math.round(n)} ms`;

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

// Build.
const binary = join(dir, 'drover-worker');
const noCache = join(dir, 'drover-worker-no-code-cache');
const progress = (line: string) => process.stderr.write(`${line}\n`);
progress('building the binary…');
const buildTimes = Array.from({ length: builds }, () => timed(() => execFileSync(process.execPath, [BUILD, '--out', binary, '--quiet'])));
const noCacheTime = timed(() => execFileSync(process.execPath, [BUILD, '--out', noCache, '--no-code-cache', '--quiet']));
const unstripped = join(dir, 'drover-worker-unstripped');
execFileSync(process.execPath, [BUILD, '--out', unstripped, '--no-strip', '--quiet']);

interface Variant {
  name: string;
  file: string;
  args: string[];
  env?: Record<string, string>;
}
const REPO: Variant = { name: 'drover worker (repository)', file: process.execPath, args: [DROVER_BIN, 'worker'] };
const BINARY: Variant = { name: 'drover-worker (binary)', file: binary, args: [] };
const NO_CACHE: Variant = { name: 'drover-worker, no code cache', file: noCache, args: [] };
writeFileSync(join(dir, 'a-file'), '');
const FALLBACK: Variant = { name: 'drover-worker, no transfer threads', file: binary, args: [], env: { TMPDIR: join(dir, 'a-file', 'tmp') } };

function exitTime(v: Variant): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(v.file, [...v.args, '--help'], { stdio: 'ignore', env: { PATH: '/usr/bin:/bin', HOME: dir, TMPDIR: join(dir, 'tmp') } });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${v.name} --help exited ${code}`))));
  });
}

async function main(): Promise<void> {
  mkdirSync(join(dir, 'tmp'));
  const startVariants = [REPO, BINARY, NO_CACHE];
  const help = new Map<string, number[]>(startVariants.map((v) => [v.name, []]));
  progress('start: --help…');
  for (const v of startVariants) await exitTime(v); // warm the page cache
  for (let i = 0; i < runs; i++) for (const v of startVariants) help.get(v.name)!.push(await exitTime(v));

  const server = await startTestServer('sqlite');
  const user = await server.user();
  const s3 = await startBackend('s3');
  try {
    progress('start: first claim…');
    // First log line and first claim.
    const claim = new Map<string, { first: number[]; claimed: number[]; rss: number[] }>(startVariants.map((v) => [v.name, { first: [], claimed: [], rss: [] }]));
    let n = 0;
    for (let i = 0; i < runs; i++) {
      for (const v of startVariants) {
        const group = `start-${++n}`;
        await user.client.createJob({ command: 'true', container_group_id: group, sync: {} });
        const t0 = performance.now();
        const w = worker(v, server.url, user, group, s3);
        let first = 0;
        const firstLine = new Promise<void>((resolve) => w.proc.stdout!.once('data', () => ((first = performance.now() - t0), resolve())));
        await w.waitForLog('the claim', (l) => l.msg === 'claimed a job', 30_000);
        const claimed = performance.now() - t0;
        await firstLine;
        await w.waitForLog('the job done', (l) => l.msg === 'job process exited', 30_000);
        claim.get(v.name)!.rss.push(rssOf(w.pid));
        await w.killNode();
        claim.get(v.name)!.first.push(first);
        claim.get(v.name)!.claimed.push(claimed);
      }
    }

    progress('transfer threads: before-sync downloads…');
    // Before-sync downloads with and without the transfer threads.
    // 8 MiB files: the loopback S3 server takes at most 11 MiB in one request.
    const files = Math.ceil(downloadMiB / 8);
    const each = Math.floor((downloadMiB * 1024 * 1024) / files);
    for (let f = 0; f < files; f++) await s3.store.put(s3.bucket, `bench/in/part-${f}.bin`, randomBytes(each));
    const transferVariants = [REPO, BINARY, FALLBACK];
    const download = new Map<string, number[]>(transferVariants.map((v) => [v.name, []]));
    const transferRuns = Math.max(3, Math.ceil(runs / 3));
    for (let i = 0; i < transferRuns; i++) {
      for (const v of transferVariants) {
        const group = `dl-${++n}`;
        await user.client.createJob({
          command: 'true',
          container_group_id: group,
          sync: { before: [{ bucket: s3.bucket, prefix: 'bench/in/', local_path: 'in', direction: 'download' }] },
        });
        const w = worker(v, server.url, user, group, s3);
        await w.waitForLog('the claim', (l) => l.msg === 'claimed a job', 30_000);
        const t0 = performance.now();
        await w.waitForLog('the inputs', (l) => l.msg === 'inputs downloaded', 120_000);
        download.get(v.name)!.push(performance.now() - t0);
        progress(`  ${v.name}: ${ms(performance.now() - t0)}`);
        await w.killNode();
        rmSync(w.dataRoot, { recursive: true, force: true });
      }
    }

    const repoHelp = median(help.get(REPO.name)!);
    const repoClaim = median(claim.get(REPO.name)!.claimed);
    const repoDownload = median(download.get(REPO.name)!);
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    console.log(`\nworker binary benchmark — ${cpus().length} × ${cpu}, Node ${process.version}; ${runs} runs each, interleaved\n`);
    console.log(`build (scripts/build-worker-binary.mjs, after npm run build): median ${ms(median(buildTimes))} of ${builds}; without code cache ${ms(noCacheTime)}`);
    console.log(`size: ${mib(statSync(binary).size)} (unstripped ${mib(statSync(unstripped).size)}; node itself ${mib(statSync(process.execPath).size)})\n`);
    console.log('| variant | --help, exec to exit | exec to first log line | exec to first claim | memory (RSS) after a job |');
    console.log('|---|---|---|---|---|');
    for (const v of startVariants) {
      const h = median(help.get(v.name)!);
      const c = claim.get(v.name)!;
      const cl = median(c.claimed);
      console.log(`| ${v.name} | ${ms(h)} (${(h / repoHelp).toFixed(2)}×) | ${ms(median(c.first))} | ${ms(cl)} (${(cl / repoClaim).toFixed(2)}×) | ${mib(median(c.rss))} |`);
    }
    console.log(`\nbefore-sync of ${downloadMiB} MiB in ${files} files from loopback S3, claim to inputs downloaded (median of ${transferRuns}):\n`);
    console.log('| variant | time | vs repository |');
    console.log('|---|---|---|');
    for (const v of transferVariants) {
      const d = median(download.get(v.name)!);
      console.log(`| ${v.name} | ${ms(d)} | ${(d / repoDownload).toFixed(2)}× |`);
    }
  } finally {
    await s3.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Resident memory of a process, in bytes (Linux /proc). */
function rssOf(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}

function worker(v: Variant, url: string, user: TestUser, group: string, s3: Backend): TestWorker {
  return spawnWorker({
    ...(v.file === process.execPath ? {} : { bin: v.file }),
    url,
    key: user.token,
    group,
    storageEnv: s3.env,
    env: { TMPDIR: join(dir, 'tmp'), DROVER_LOG_LEVEL: 'info', DROVER_IMDS_URL: 'off', ...v.env },
  });
}

await main();
