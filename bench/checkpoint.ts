// Checkpointer benchmark: how much a CPU-bound app slows down while the Checkpointer (@drover/checkpointer) saves
// a big state file every second to a loopback S3-protocol server.
//
//   npm run bench:checkpoint -- [--runs 3] [--seconds 20] [--mib 100] [--interval-ms 1000]
//                               [--variants thread,overlap,inline] [--server-nice N] [--json FILE]
//
// The app is a series-sum loop on the main thread (the seeds' demo app: sum of 1/k² in chunks of
// a few milliseconds, yielding to the event loop between chunks). Its amount of work is fixed once
// at the start (calibrated to take about --seconds on this machine) and then timed twice per run:
// alone, and while calling `await checkpointer.save('state.bin')` every --interval-ms on a
// --mib file of random bytes. The order of the two alternates from run to run; the table shows
// medians. Variants (default `thread,overlap`):
//   thread  — uploads in the Checkpointer's worker thread (what fromEnv does); the app awaits
//             save() at once, so it waits for the snapshot copy every time;
//   overlap — the same, but the app awaits each save() only before its next save (the earliest it
//             could write the file again), so the snapshot copy overlaps the computation;
//   inline  — uploads on the app's own thread (a Checkpointer given only a store object).
// The server is fauxqs (in memory) in its own Node process, as in bench/transfer.ts. It stands in
// for a remote S3 service, which takes no CPU from the node; but fauxqs spends about 0.6 CPU
// seconds per 100 MiB received (2-3 times what the client spends), so on a small machine it would
// compete with the app for the cores. By default it runs at nice 19 so that it uses only CPU time
// the app leaves idle; `--server-nice 0` lets it compete fully (the worst case). Saves that
// arrive while the previous upload of the file still runs replace the waiting one (coalescing),
// so "uploads" can be fewer than "saves". Temp data lives under os.tmpdir() and is removed.
import { randomFillSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { MiB, S3Store, type StoreSettings } from '@drover/storage';
import { Checkpointer } from '@drover/checkpointer';
import { withBenchServer } from './lib/s3-server.js';
import { badFlag, wholeFlag } from './lib/flags.js';

const BUCKET = 'bench';
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
/** Terms of the series per chunk: a few milliseconds of arithmetic. */
const TERMS_PER_CHUNK = 200_000;

const VARIANTS = ['thread', 'overlap', 'inline'] as const;
type Mode = (typeof VARIANTS)[number];

interface Arm {
  seconds: number;
  /** CPU seconds of this process during the arm: all threads, the app's (main) thread, the niced upload thread(s). */
  cpuSeconds: number;
  mainCpuSeconds: number;
  /** Time the app's thread was ready to run but waiting for a CPU (Linux schedstat). */
  mainRunqueueSeconds: number;
  uploadThreadCpuSeconds: number;
  /** CPU seconds of the S3 server process during the arm. */
  serverCpuSeconds: number;
  saves: number;
  uploads: number;
  replaced: number;
  errors: number;
  /** Largest time one `await save()` kept the app waiting, ms. */
  maxSaveMs: number;
  /** Total time spent awaiting save(), s. */
  saveSeconds: number;
}

interface Measurement {
  run: number;
  mode: Mode;
  baseline: Arm;
  saving: Arm;
  slowdownPercent: number;
}

/** One chunk of the series sum of 1/k² from k = start: the app's "work". */
function chunk(start: number, terms: number): number {
  let s = 0;
  for (let k = start; k < start + terms; k++) s += 1 / (k * k);
  return s;
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '20' },
      mib: { type: 'string', default: '100' },
      'interval-ms': { type: 'string', default: '1000' },
      variants: { type: 'string', default: 'thread,overlap' },
      'server-nice': { type: 'string', default: '19' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (flags.help) {
    console.log('usage: npm run bench:checkpoint -- [--runs N (3)] [--seconds S (20)] [--mib N (100)] [--interval-ms N (1000)]\n' +
      '                                   [--variants thread,overlap,inline (thread,overlap)] [--server-nice N (19)] [--json FILE]');
    return;
  }
  const opts = {
    runs: wholeFlag('runs', flags.runs),
    seconds: wholeFlag('seconds', flags.seconds),
    bytes: wholeFlag('mib', flags.mib) * MiB,
    intervalMs: wholeFlag('interval-ms', flags['interval-ms']),
  };
  const modes = [...new Set(flags.variants.split(',').map((v) => v.trim()).filter(Boolean))] as Mode[];
  if (modes.length === 0 || modes.some((m) => !VARIANTS.includes(m))) badFlag(`--variants must be a comma-separated list of ${VARIANTS.join(', ')}`);
  const serverNice = Number(flags['server-nice']);
  if (!Number.isInteger(serverNice) || serverNice < 0 || serverNice > 19) throw new Error('--server-nice must be a whole number from 0 to 19');

  await withBenchServer('checkpoint', { nice: serverNice }, async ({ root, server: started }) => {
    const server = started.child;
    const endpoint = started.endpoint;
    const settings: StoreSettings = { storage: 's3', endpoint, region: REGION, ...CREDENTIALS, forcePathStyle: true };
    const admin = new S3Store({ endpoint, region: REGION, credentials: CREDENTIALS, forcePathStyle: true });
    await admin.client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    admin.client.destroy();

    const localDir = path.join(root, 'app');
    await mkdir(localDir, { recursive: true });
    await writeRandom(path.join(localDir, 'state.bin'), opts.bytes);

    // Calibrate the fixed amount of work: chunks that take about --seconds here, alone.
    let sink = 0;
    const t0 = performance.now();
    let calib = 0;
    while (performance.now() - t0 < 2000) sink += chunk(1 + calib++ * TERMS_PER_CHUNK, TERMS_PER_CHUNK);
    const chunks = Math.max(1, Math.round((calib / ((performance.now() - t0) / 1000)) * opts.seconds));
    console.log(`work: ${chunks} chunks of ${TERMS_PER_CHUNK} terms (about ${opts.seconds} s alone); state file ${opts.bytes / MiB} MiB, saved every ${opts.intervalMs} ms`);
    console.log(`server: fauxqs (in memory) in process ${server.pid} at nice ${serverNice}${serverNice > 0 ? ' (stands in for a remote service; --server-nice 0 to let it compete)' : ''}, ${endpoint}; variants: ${modes.join(', ')}`);

    const runArm = async (mode: Mode, saving: boolean, run: number): Promise<Arm> => {
      let uploads = 0;
      let replaced = 0;
      let errors = 0;
      const cp = saving
        ? new Checkpointer({
          store: new S3Store({ endpoint, region: REGION, credentials: CREDENTIALS, forcePathStyle: true }),
          ...(mode === 'inline' ? {} : { storeSettings: settings }),
          bucket: BUCKET, prefix: `${mode}/run${run}`, localDir,
          onEvent: (e) => {
            if (e.type === 'uploaded') uploads++;
            else if (e.type === 'replaced') replaced++;
            else errors++;
          },
        })
        : undefined;
      let saves = 0;
      let maxSaveMs = 0;
      let saveMs = 0;
      const serverCpu0 = processCpuSeconds(server.pid!);
      const cpu0 = process.cpuUsage();
      const threads0 = threadCpu();
      const sched0 = mainSchedstat();
      const start = performance.now();
      let lastSave = start - opts.intervalMs;
      let previous: Promise<void> | undefined;
      const timed = async (p: Promise<void>, since: number): Promise<void> => {
        await p;
        const ms = performance.now() - since;
        saveMs += ms;
        maxSaveMs = Math.max(maxSaveMs, ms);
      };
      for (let i = 0; i < chunks; i++) {
        sink += chunk(1 + i * TERMS_PER_CHUNK, TERMS_PER_CHUNK);
        if (cp && performance.now() - lastSave >= opts.intervalMs) {
          const s = performance.now();
          lastSave = s;
          // overlap: the app may write the file again only once the previous save() resolved.
          if (previous) await timed(previous, s);
          previous = undefined;
          const saved = cp.save('state.bin');
          saved.catch(() => undefined); // awaited below or at the next save; a failure surfaces there
          saves++;
          if (mode === 'overlap') previous = saved;
          else await timed(saved, s);
        }
        await yieldToLoop();
      }
      if (previous) await timed(previous, performance.now());
      const seconds = (performance.now() - start) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const threads = threadCpu();
      const mainRunqueueSeconds = mainSchedstat().waitSeconds - sched0.waitSeconds;
      let mainCpuSeconds = 0;
      let uploadThreadCpuSeconds = 0;
      for (const [tid, t] of threads) {
        const d = t.cpu - (threads0.get(tid)?.cpu ?? 0);
        if (tid === process.pid) mainCpuSeconds += d;
        else if (t.nice > 0) uploadThreadCpuSeconds += d;
      }
      const serverCpuSeconds = processCpuSeconds(server.pid!) - serverCpu0;
      // Outside the timing: let the last uploads finish, then clean up.
      await cp?.close();
      return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, mainCpuSeconds, mainRunqueueSeconds, uploadThreadCpuSeconds, serverCpuSeconds, saves, uploads, replaced, errors, maxSaveMs, saveSeconds: saveMs / 1000 };
    };

    const measurements: Measurement[] = [];
    for (let run = 1; run <= opts.runs; run++) {
      for (const mode of modes) {
        const savingFirst = run % 2 === 0;
        console.log(`run ${run}/${opts.runs} ${mode} (order: ${savingFirst ? 'saving, alone' : 'alone, saving'})`);
        let baseline: Arm | undefined;
        let saving: Arm | undefined;
        for (const withSaves of savingFirst ? [true, false] : [false, true]) {
          const arm = await runArm(mode, withSaves, run);
          if (withSaves) saving = arm;
          else baseline = arm;
          console.log(`  ${withSaves ? 'saving' : 'alone '} ${arm.seconds.toFixed(2)} s` +
            (withSaves ? ` (${arm.saves} saves, ${arm.uploads} uploads, ${arm.replaced} replaced, ${arm.errors} errors; ` +
              `app waited for save() ${arm.saveSeconds.toFixed(2)} s in all, max ${arm.maxSaveMs.toFixed(0)} ms; ` +
              `app thread waited ${arm.mainRunqueueSeconds.toFixed(1)} s for a CPU; ` +
              `CPU s: app process ${arm.cpuSeconds.toFixed(1)} = app thread ${arm.mainCpuSeconds.toFixed(1)} + upload thread ${arm.uploadThreadCpuSeconds.toFixed(1)} ` +
              `+ shared ${(arm.cpuSeconds - arm.mainCpuSeconds - arm.uploadThreadCpuSeconds).toFixed(1)}; server ${arm.serverCpuSeconds.toFixed(1)})`
              : ` (app thread CPU ${arm.mainCpuSeconds.toFixed(1)} s, waited ${arm.mainRunqueueSeconds.toFixed(1)} s for a CPU)`));
        }
        const m: Measurement = { run, mode, baseline: baseline!, saving: saving!, slowdownPercent: (saving!.seconds / baseline!.seconds - 1) * 100 };
        measurements.push(m);
        console.log(`  slowdown ${m.slowdownPercent.toFixed(1)} %`);
      }
    }
    if (sink === 42) console.log(''); // keeps the work from being optimised away

    const command = `npm run bench:checkpoint -- ${process.argv.slice(2).join(' ')}`.trim();
    console.log();
    console.log(`Medians of ${opts.runs} run(s). Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, ` +
      `load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}. Command: \`${command}\``);
    console.log();
    const rows = modes.map((mode) => {
      const ms = measurements.filter((m) => m.mode === mode);
      return {
        mode,
        baselineSeconds: median(ms.map((m) => m.baseline.seconds)),
        savingSeconds: median(ms.map((m) => m.saving.seconds)),
        slowdownPercent: median(ms.map((m) => m.slowdownPercent)),
        slowdownRuns: ms.map((m) => Number(m.slowdownPercent.toFixed(1))),
        saves: median(ms.map((m) => m.saving.saves)),
        uploads: median(ms.map((m) => m.saving.uploads)),
        uploadMBps: median(ms.map((m) => (m.saving.uploads * opts.bytes) / 1e6 / m.saving.seconds)),
        saveWaitMs: median(ms.map((m) => (m.saving.saveSeconds * 1000) / Math.max(1, m.saving.saves))),
        runqueueAlone: median(ms.map((m) => m.baseline.mainRunqueueSeconds)),
        runqueueSaving: median(ms.map((m) => m.saving.mainRunqueueSeconds)),
      };
    });
    console.log('| variant | app alone, s | app saving, s | slowdown (runs) | saves / uploads | uploaded MB/s | app waits per save | app thread waiting for a CPU, s (alone → saving) |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      const label = { thread: 'upload thread, `await save()`', overlap: 'upload thread, save() awaited before the next', inline: 'uploads on the app thread' }[r.mode];
      console.log(`| ${label} | ${r.baselineSeconds.toFixed(2)} | ${r.savingSeconds.toFixed(2)} | ` +
        `**${r.slowdownPercent.toFixed(1)} %** (${r.slowdownRuns.map((x) => x.toFixed(1)).join(', ')}) | ${r.saves} / ${r.uploads} | ` +
        `${r.uploadMBps.toFixed(0)} | ${r.saveWaitMs.toFixed(0)} ms | ${r.runqueueAlone.toFixed(1)} → ${r.runqueueSaving.toFixed(1)} |`);
    }
    if (flags.json) {
      await writeFile(flags.json, JSON.stringify({
        bench: 'checkpoint', date: new Date().toISOString(), node: process.version, cpus: cpus().length,
        server: 'fauxqs 1.9.2, in memory, own process', params: { ...opts, chunks, termsPerChunk: TERMS_PER_CHUNK, variants: modes, serverNice },
        rows, measurements,
      }, null, 2) + '\n');
      console.log(`\nJSON written to ${flags.json}`);
    }
  });
}

async function writeRandom(file: string, size: number): Promise<void> {
  const buf = Buffer.allocUnsafe(16 * MiB);
  const fh = await open(file, 'w');
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(buf.length, size - done);
      randomFillSync(buf, 0, n);
      await fh.write(buf, 0, n);
      done += n;
    }
  } finally {
    await fh.close();
  }
}

/** CPU seconds and niceness of each thread of this process, by thread id, from /proc. */
function threadCpu(): Map<number, { cpu: number; nice: number }> {
  const out = new Map<number, { cpu: number; nice: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), { cpu: (Number(f[11]) + Number(f[12])) / 100, nice: Number(f[16]) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** The main thread's time waiting on a run queue (ready but not running), from /proc/self/schedstat. */
function mainSchedstat(): { waitSeconds: number } {
  try {
    const [, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(' ');
    return { waitSeconds: Number(wait) / 1e9 };
  } catch {
    return { waitSeconds: Number.NaN };
  }
}

/** CPU seconds (user + system) of a live process, from /proc. */
function processCpuSeconds(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (fields 14, 15); USER_HZ 100
  } catch {
    return Number.NaN;
  }
}

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

await main();
