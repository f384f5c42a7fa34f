// Transfer benchmark: Drover's storage engine (@drover/storage) against rclone, side by side in
// one run, against the same loopback S3-protocol server.
//
//   npm run bench:transfer -- [--runs 4] [--big-mib 1024] [--files 1000] [--file-mib 1]
//                             [--tool both|drover|rclone] [--json FILE]
//                             [--file-concurrency N] [--part-concurrency N]
//
// The server is fauxqs (in memory, every object a Buffer; request bodies capped at 11 MiB, hence
// 10 MiB parts on both sides) in its own Node process, so neither client shares a thread with it;
// a small shim there normalizes rclone's CompleteMultipartUpload XML, which fauxqs misreads (see
// the child-mode code at the end). rclone is configured through RCLONE_CONFIG_BENCH_* variables.
// Four rows: upload one big file, download it, upload a folder of small files, download it.
// Each tool writes under its own fresh prefix per run (rclone would otherwise skip files that are
// already there) and downloads what it uploaded into an empty folder; every downloaded file must
// match its source (size and SHA-256) or the run fails. The order of the two tools alternates from
// run to run, and the default number of runs is even: on these VMs the tool that goes second in a
// step often pays 30–90% more CPU (see docs/benchmarks.md), so each tool must go first as often as
// the other. An untimed warm-up (both tools up and down one tenth of the small files) comes first,
// so the server's own warm-up does not land on run 1's first tool. The table shows medians. MB/s is 10^6 bytes per second of wall time, rclone's
// including its process start. Temp data lives under os.tmpdir() and is removed at the end.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdir, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { withBenchServer } from './lib/s3-server.js';
import { CreateBucketCommand, DeleteObjectsCommand } from '@aws-sdk/client-s3';
import {
  MiB, S3Store, downloadFile, downloadPrefix, uploadFile, uploadFolder,
  type FolderTransferOptions, type TransferOptions,
} from '@drover/storage';
import { wholeFlag } from './lib/flags.js';

const BUCKET = 'bench';
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
// The seeds' demo flags, plus the upload cutoff at Drover's multipart threshold (one part): rclone's
// default (200M) would send anything below it as a single PUT, which fauxqs refuses above 11 MiB.
const RCLONE_FLAGS = ['--s3-chunk-size=10M', '--transfers=10', '--s3-upload-cutoff=10M'];

// ---------------------------------------------------------------------------------------------

type Tool = 'drover' | 'rclone';
type RowId = 'upload-big' | 'download-big' | 'upload-small' | 'download-small';

interface Measurement {
  run: number;
  row: RowId;
  tool: Tool;
  bytes: number;
  files: number;
  seconds: number;
  mbPerSecond: number;
  /** CPU seconds (user + system) of the client (this process for Drover, the rclone process). */
  clientCpuSeconds: number;
  /** CPU seconds of the S3 server process during the measurement. */
  serverCpuSeconds: number;
}

interface SourceFile {
  rel: string;
  size: number;
  sha256: string;
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      runs: { type: 'string', default: '4' },
      'big-mib': { type: 'string', default: '1024' },
      files: { type: 'string', default: '1000' },
      'file-mib': { type: 'string', default: '1' },
      tool: { type: 'string', default: 'both' },
      json: { type: 'string' },
      'file-concurrency': { type: 'string' },
      'part-concurrency': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (flags.help) {
    console.log(
      'usage: npm run bench:transfer -- [--runs N (4)] [--big-mib N (1024)] [--files N (1000)] [--file-mib N (1)]\n' +
        '                                 [--tool both|drover|rclone] [--json FILE]\n' +
        '                                 [--file-concurrency N] [--part-concurrency N]  (Drover options; default: the engine defaults)',
    );
    return;
  }
  const optional = (name: string, v: string | undefined): number | undefined => (v === undefined ? undefined : wholeFlag(name, v));
  const opts = {
    runs: wholeFlag('runs', flags.runs),
    bigBytes: wholeFlag('big-mib', flags['big-mib']) * MiB,
    files: wholeFlag('files', flags.files),
    fileBytes: wholeFlag('file-mib', flags['file-mib']) * MiB,
    fileConcurrency: optional('file-concurrency', flags['file-concurrency']),
    partConcurrency: optional('part-concurrency', flags['part-concurrency']),
  };
  const tools: Tool[] =
    flags.tool === 'both' ? ['drover', 'rclone'] : flags.tool === 'drover' || flags.tool === 'rclone' ? [flags.tool] : [];
  if (tools.length === 0) throw new Error('--tool must be both, drover or rclone');

  let rcloneVersion = '';
  if (tools.includes('rclone')) {
    const v = spawnSync('rclone', ['version'], { encoding: 'utf8' });
    if (v.error || v.status !== 0) {
      console.error(
        'bench:transfer needs rclone on the PATH to compare against, and could not run it' +
          (v.error ? ` (${(v.error as NodeJS.ErrnoException).code ?? v.error.message})` : '') + '.\n' +
          'Install it, e.g. `sudo apt-get install -y rclone` (Debian/Ubuntu) or see https://rclone.org/install/,\n' +
          'or run only Drover\'s side with `npm run bench:transfer -- --tool drover`.',
      );
      process.exitCode = 1;
      return;
    }
    rcloneVersion = v.stdout.split('\n')[0]!.trim();
  }

  // Drover's options: the engine's defaults unless overridden on the command line. 10 MiB parts
  // are the default and what fauxqs's 11 MiB body cap allows.
  const fileOpts: TransferOptions = {
    partSize: 10 * MiB,
    ...(opts.partConcurrency !== undefined ? { concurrency: opts.partConcurrency } : {}),
  };
  const droverOpts: FolderTransferOptions = {
    ...fileOpts,
    ...(opts.fileConcurrency !== undefined ? { fileConcurrency: opts.fileConcurrency } : {}),
  };

  await withBenchServer('transfer', { rcloneShim: true }, async ({ root, server: started }) => {
    // ---- the server ------------------------------------------------------------------------
    const server = started.child;
    const endpoint = started.endpoint;
    const admin = newStore(endpoint);
    await admin.client.send(new CreateBucketCommand({ Bucket: BUCKET }));

    const rcloneConf = path.join(root, 'rclone.conf');
    await writeFile(rcloneConf, '');
    // The user's own AWS_* and RCLONE_* settings stay out (AWS_CA_BUNDLE, for one, breaks rclone's
    // plain-HTTP transport).
    const rcloneEnv = {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS|RCLONE)_/.test(k))),
      RCLONE_CONFIG: rcloneConf,
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ENV_AUTH: 'false',
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      RCLONE_CONFIG_BENCH_REGION: REGION,
      RCLONE_CONFIG_BENCH_ENDPOINT: endpoint,
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    };

    // ---- the data --------------------------------------------------------------------------
    const t0 = performance.now();
    const bigDir = path.join(root, 'src-big');
    const smallDir = path.join(root, 'src-small');
    const big = await makeFiles(bigDir, [{ rel: 'big.bin', size: opts.bigBytes }]);
    const small = await makeFiles(
      smallDir,
      Array.from({ length: opts.files }, (_, i) => ({ rel: `d${String(i % 10)}/f${String(i).padStart(5, '0')}.bin`, size: opts.fileBytes })),
    );
    console.log(
      `data: 1 × ${fmtMiB(opts.bigBytes)} and ${opts.files} × ${fmtMiB(opts.fileBytes)} of random bytes in ${root} ` +
        `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    console.log(`server: fauxqs (in memory) in process ${server.pid}, ${endpoint}; ${tools.join(' vs ')}` +
      (rcloneVersion ? ` (${rcloneVersion}; flags ${RCLONE_FLAGS.join(' ')})` : ''));
    console.log(`drover options: ${JSON.stringify(droverOpts)} (unset = engine default)`);

    // ---- the runs --------------------------------------------------------------------------
    const measurements: Measurement[] = [];
    const measure = async (run: number, row: RowId, tool: Tool, bytes: number, files: number, fn: () => Promise<void>): Promise<void> => {
      // Untimed: write back whatever the previous step left dirty in the page cache (rclone does
      // not fsync what it downloads), so no step pays for the one before it.
      spawnSync('sync');
      const serverCpu0 = processCpuSeconds(server.pid!);
      const own0 = process.cpuUsage();
      const children0 = childrenCpuSeconds();
      const start = performance.now();
      await fn();
      const seconds = (performance.now() - start) / 1000;
      const own = process.cpuUsage(own0);
      const m: Measurement = {
        run, row, tool, bytes, files, seconds,
        mbPerSecond: bytes / 1e6 / seconds,
        clientCpuSeconds: tool === 'drover' ? (own.user + own.system) / 1e6 : childrenCpuSeconds() - children0,
        serverCpuSeconds: processCpuSeconds(server.pid!) - serverCpu0,
      };
      measurements.push(m);
      console.log(
        `  run ${run} ${row.padEnd(14)} ${tool.padEnd(6)} ${m.mbPerSecond.toFixed(1).padStart(7)} MB/s ` +
          `(${seconds.toFixed(2)} s; CPU s client ${m.clientCpuSeconds.toFixed(2)}, server ${m.serverCpuSeconds.toFixed(2)})`,
      );
    };

    const rclone = async (args: string[]): Promise<void> => {
      const child = spawn('rclone', [...args, ...RCLONE_FLAGS, '--log-level', 'ERROR'], { env: rcloneEnv, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c) => resolve(c));
      });
      if (code !== 0) throw new Error(`rclone ${args.join(' ')} exited with ${code}:\n${stderr}`);
    };

    if (tools.length === 2 && opts.runs % 2 === 1) {
      console.log(`note: ${opts.runs} runs is odd, so ${tools[0]} goes first in one run more than ${tools[1]}; use an even --runs for a fair comparison`);
    }
    // ---- warm-up (untimed): the server's JIT and heap growth, each tool's first connections.
    {
      const sub = path.join(smallDir, 'd0');
      const prefix = (tool: Tool): string => `${tool}/warmup/`;
      const dest = (tool: Tool): string => path.join(root, `dl-${tool}-warmup`);
      for (const tool of tools) {
        if (tool === 'rclone') {
          await rclone(['copy', sub, `bench:${BUCKET}/${prefix(tool)}`]);
          await rclone(['copy', `bench:${BUCKET}/${prefix(tool)}`, dest(tool)]);
        } else {
          const store = newStore(endpoint);
          try {
            await uploadFolder(store, sub, BUCKET, prefix(tool), droverOpts);
            await downloadPrefix(store, BUCKET, prefix(tool), dest(tool), droverOpts);
          } finally {
            store.client.destroy();
          }
        }
        await rm(dest(tool), { recursive: true, force: true });
        await deletePrefix(admin, prefix(tool));
      }
      console.log(`warm-up: both tools up and down ${small.filter((f) => f.rel.startsWith('d0/')).length} files (untimed)`);
    }

    for (let run = 1; run <= opts.runs; run++) {
      const order = run % 2 === 1 ? tools : [...tools].reverse();
      console.log(`run ${run}/${opts.runs} (order: ${order.join(', ')})`);
      for (const set of [
        { name: 'big', src: bigDir, files: big, up: 'upload-big', down: 'download-big' },
        { name: 'small', src: smallDir, files: small, up: 'upload-small', down: 'download-small' },
      ] as const) {
        const bytes = set.files.reduce((a, f) => a + f.size, 0);
        const prefix = (tool: Tool): string => `${tool}/run${run}/${set.name}/`;
        const dest = (tool: Tool): string => path.join(root, `dl-${tool}-${run}-${set.name}`);
        for (const tool of order) {
          await measure(run, set.up, tool, bytes, set.files.length, async () => {
            if (tool === 'rclone') return rclone(['copy', set.src, `bench:${BUCKET}/${prefix(tool)}`]);
            const store = newStore(endpoint);
            try {
              if (set.name === 'big') await uploadFile(store, path.join(set.src, 'big.bin'), BUCKET, `${prefix(tool)}big.bin`, fileOpts);
              else await uploadFolder(store, set.src, BUCKET, prefix(tool), droverOpts);
            } finally {
              store.client.destroy();
            }
          });
        }
        for (const tool of order) {
          await mkdir(dest(tool), { recursive: true });
          await measure(run, set.down, tool, bytes, set.files.length, async () => {
            if (tool === 'rclone') return rclone(['copy', `bench:${BUCKET}/${prefix(tool)}`, dest(tool)]);
            const store = newStore(endpoint);
            try {
              if (set.name === 'big') await downloadFile(store, BUCKET, `${prefix(tool)}big.bin`, path.join(dest(tool), 'big.bin'), fileOpts);
              else await downloadPrefix(store, BUCKET, prefix(tool), dest(tool), droverOpts);
            } finally {
              store.client.destroy();
            }
          });
        }
        // Outside the timings: every byte must have made the round trip, then clean up so the
        // server's memory and the disk hold one run's data at a time.
        for (const tool of order) {
          await verify(dest(tool), set.files, `${tool} run ${run} ${set.name}`);
          await rm(dest(tool), { recursive: true, force: true });
          await deletePrefix(admin, prefix(tool));
        }
      }
    }
    admin.client.destroy();
    const serverPeakMiB = peakRssMiB(server.pid!);

    // ---- the report ------------------------------------------------------------------------
    const result = summarize(measurements, tools, opts);
    console.log();
    console.log(
      `Medians of ${opts.runs} run(s); MB/s = 10^6 bytes/s of wall time; all downloads verified (size + SHA-256). ` +
        `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
        `fauxqs peak RSS ${serverPeakMiB.toFixed(0)} MiB.`,
    );
    console.log();
    console.log(result.table);
    if (flags.json) {
      await writeFile(flags.json, JSON.stringify({
        bench: 'transfer',
        date: new Date().toISOString(),
        node: process.version,
        cpus: cpus().length,
        rclone: rcloneVersion || null,
        rcloneFlags: RCLONE_FLAGS,
        droverOptions: droverOpts,
        server: 'fauxqs 1.9.2, in memory, own process',
        serverPeakRssMiB: Math.round(serverPeakMiB),
        params: opts,
        rows: result.rows,
        measurements,
      }, null, 2) + '\n');
      console.log(`\nJSON written to ${flags.json}`);
    }
  });
}

function newStore(endpoint: string): S3Store {
  return new S3Store({ endpoint, region: REGION, credentials: CREDENTIALS, forcePathStyle: true });
}

/** Writes random files (in 16 MiB chunks) and returns their sizes and SHA-256 sums. */
async function makeFiles(dir: string, files: { rel: string; size: number }[]): Promise<SourceFile[]> {
  const chunk = Buffer.allocUnsafe(16 * MiB);
  const out: SourceFile[] = [];
  for (const f of files) {
    const file = path.join(dir, ...f.rel.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    const hash = createHash('sha256');
    const fh = await open(file, 'w');
    try {
      for (let done = 0; done < f.size;) {
        const n = Math.min(chunk.length, f.size - done);
        const view = chunk.subarray(0, n);
        randomFillSync(view);
        hash.update(view);
        await fh.write(view, 0, n);
        done += n;
      }
    } finally {
      await fh.close();
    }
    out.push({ rel: f.rel, size: f.size, sha256: hash.digest('hex') });
  }
  return out;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 4 * MiB }), hash);
  return hash.digest('hex');
}

/** Every source file is in `dir` with the same size and SHA-256, and nothing else is. */
async function verify(dir: string, files: SourceFile[], what: string): Promise<void> {
  const found = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  if (found.length !== files.length) {
    throw new Error(`${what}: downloaded ${found.length} files, expected ${files.length}`);
  }
  for (const f of files) {
    const local = path.join(dir, ...f.rel.split('/'));
    const size = (await stat(local).catch(() => undefined))?.size;
    if (size !== f.size) throw new Error(`${what}: ${f.rel} is ${size ?? 'missing'} bytes, expected ${f.size}`);
    if ((await sha256Of(local)) !== f.sha256) throw new Error(`${what}: ${f.rel} does not have the SHA-256 of its source`);
  }
}

async function deletePrefix(store: S3Store, prefix: string): Promise<void> {
  const keys: string[] = [];
  for await (const o of store.list(BUCKET, prefix)) keys.push(o.key);
  for (let i = 0; i < keys.length; i += 1000) {
    await store.client.send(new DeleteObjectsCommand({
      Bucket: BUCKET,
      Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
    }));
  }
}

/** Peak resident memory of a live process (VmHWM), from /proc. */
function peakRssMiB(pid: number): number {
  try {
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? Number.NaN : Number(kb) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds (user + system) of a live process, from /proc. */
function processCpuSeconds(pid: number): number {
  return cpuFields(`/proc/${pid}/stat`, 13);
}

/** CPU seconds of this process's children that have exited and been waited for (rclone). */
function childrenCpuSeconds(): number {
  return cpuFields('/proc/self/stat', 15);
}

function cpuFields(file: string, index: number): number {
  try {
    const text = readFileSync(file, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // stat(5) numbers fields from 1 with pid and comm first: utime is 14, stime 15, cutime 16, cstime 17.
    const at = index - 2;
    return (Number(fields[at]) + Number(fields[at + 1])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------------------------------------

const ROWS: { id: RowId; label: (o: { bigBytes: number; files: number; fileBytes: number }) => string }[] = [
  { id: 'upload-big', label: (o) => `upload 1 × ${fmtMiB(o.bigBytes)} file` },
  { id: 'download-big', label: (o) => `download 1 × ${fmtMiB(o.bigBytes)} file` },
  { id: 'upload-small', label: (o) => `upload ${o.files.toLocaleString('en-US')} × ${fmtMiB(o.fileBytes)} files` },
  { id: 'download-small', label: (o) => `download ${o.files.toLocaleString('en-US')} × ${fmtMiB(o.fileBytes)} files` },
];

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmtMiB(bytes: number): string {
  return bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : `${bytes / MiB} MiB`;
}

function summarize(ms: Measurement[], tools: Tool[], o: { bigBytes: number; files: number; fileBytes: number }) {
  const rows = ROWS.map((r) => {
    const of = (tool: Tool) => ms.filter((m) => m.row === r.id && m.tool === tool);
    const stat = (tool: Tool) => {
      const xs = of(tool);
      if (xs.length === 0) return null;
      return {
        mbPerSecond: median(xs.map((m) => m.mbPerSecond)),
        runs: xs.map((m) => Number(m.mbPerSecond.toFixed(1))),
        clientCpuSeconds: median(xs.map((m) => m.clientCpuSeconds)),
        serverCpuSeconds: median(xs.map((m) => m.serverCpuSeconds)),
      };
    };
    const drover = tools.includes('drover') ? stat('drover') : null;
    const rclone = tools.includes('rclone') ? stat('rclone') : null;
    return { row: r.id, label: r.label(o), drover, rclone, ratio: drover && rclone ? drover.mbPerSecond / rclone.mbPerSecond : null };
  });
  const cell = (s: { mbPerSecond: number; runs: number[] } | null): string =>
    s === null ? '–' : `**${s.mbPerSecond.toFixed(0)}**${s.runs.length > 1 ? ` (${s.runs.map((x) => x.toFixed(0)).join(', ')})` : ''}`;
  const cpu = (s: { clientCpuSeconds: number; serverCpuSeconds: number } | null): string =>
    s === null ? '–' : `${s.clientCpuSeconds.toFixed(1)} / ${s.serverCpuSeconds.toFixed(1)}`;
  const lines = [
    '| row | Drover MB/s (runs) | rclone MB/s (runs) | Drover ÷ rclone | CPU s client / server: Drover | rclone |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) =>
      `| ${r.label} | ${cell(r.drover)} | ${cell(r.rclone)} | ${r.ratio === null ? '–' : `**${r.ratio.toFixed(2)}×**`} | ${cpu(r.drover)} | ${cpu(r.rclone)} |`),
  ];
  return { rows, table: lines.join('\n') };
}

await main();
