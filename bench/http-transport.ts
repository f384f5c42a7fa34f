// HTTP transport benchmark: the transfer engine's worker-thread GETs (the 1,000 × 1 MiB download
// row of bench:transfer) on raw-http.ts, Drover's minimal HTTP/1.1 client, against the same GETs
// on undici's Pool.request, side by side in one run, in alternating order.
//
//   npm run bench:http-transport -- [--runs 8] [--files 1000] [--file-mib 1] [--json FILE]
//
// Everything but the transport is the engine's own: the objects are uploaded by uploadFolder (so
// they carry their CRC32 metadata); each download is signed on the main thread (s3-direct.ts's
// signer) and run in a piscina pool configured as worker-pool.ts configures it, by pool-worker.ts's
// runGet (BodyCheck's CRC32 check, writes, rename into place), 16 files in flight as downloadPrefix
// has them. Only the function that sends the GET and reports the response differs
// (bench/lib/transport-worker.mjs). The server is the bench:transfer one (fauxqs in its own
// process). CPU is this process's (main thread and worker threads), per file; MB/s is 10^6 bytes
// per second of wall time. Each downloaded file is checked for its size. Medians are shown.
import { randomFillSync } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { Piscina } from 'piscina';
import { MiB, S3Store, uploadFolder, type ObjectInfo } from '@drover/storage';
import { DirectS3 } from '../packages/storage/src/s3-direct.js';
import type { GetResult, GetTask } from '../packages/storage/src/pool-worker.js';
import { poolOptions } from '../packages/storage/src/worker-pool.js';
import { withBenchServer } from './lib/s3-server.js';

const BUCKET = 'bench';
const TRANSPORTS = ['raw-http', 'undici'] as const;
type Transport = (typeof TRANSPORTS)[number];
const IN_FLIGHT = 16; // downloadPrefix's default fileConcurrency

interface Measurement {
  run: number;
  transport: Transport;
  seconds: number;
  mbPerSecond: number;
  cpuMsPerFile: number;
}

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '8' },
    files: { type: 'string', default: '1000' },
    'file-mib': { type: 'string', default: '1' },
    json: { type: 'string' },
  },
});
const runs = Number(args.runs);
const files = Number(args.files);
const fileBytes = Math.round(Number(args['file-mib']) * MiB);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  console.log(`HTTP transports for the worker threads' GETs: ${runs} runs of ${files} × ${fileBytes / MiB} MiB, alternating order`);
  console.log(`machine: ${cpus()[0]?.model ?? '?'}, ${availableParallelism()} cores, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, node ${process.version}`);
  await withBenchServer('http-transport', {}, async ({ root, server }) => {
    const store = new S3Store({ endpoint: server.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
    await store.client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const src = path.join(root, 'src');
    for (let i = 0; i < files; i++) {
      const dir = path.join(src, `d${i % 10}`);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, `f${i}.bin`), randomFillSync(Buffer.allocUnsafe(fileBytes)));
    }
    await uploadFolder(store, src, BUCKET, 'small/');
    const objects: ObjectInfo[] = [];
    for await (const o of store.list(BUCKET, 'small/')) objects.push(o);
    if (objects.length !== files) throw new Error(`listed ${objects.length} objects, uploaded ${files}`);

    const direct = new DirectS3(store.client, new URL(server.endpoint), { requestTimeoutMs: 60_000, connectionTimeoutMs: 10_000 });
    const endpoint = new URL(server.endpoint);
    // As worker-pool.ts configures its pool.
    const pool = new Piscina<{ transport: Transport; task: GetTask }, GetResult>(poolOptions(fileURLToPath(new URL('./lib/transport-worker.mjs', import.meta.url))));

    const download = async (transport: Transport, dir: string): Promise<void> => {
      for (let d = 0; d < 10; d++) await mkdir(path.join(dir, `d${d}`), { recursive: true });
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < objects.length) {
          const o = objects[next++]!;
          const target = path.join(dir, o.key.slice('small/'.length));
          // The signer s3-direct.ts uses for its own getToFile (private there; the same call).
          const signed = await direct['sign']({ method: 'GET', bucket: BUCKET, key: o.key, headers: { 'if-match': `"${o.etag}"` } });
          const r = await pool.run({
            transport,
            task: {
              kind: 'get', protocol: 'http:', hostname: endpoint.hostname, port: Number(endpoint.port), path: signed.path, headers: signed.headers,
              file: `${target}.part`, length: o.size, md5: o.etag, crc32: true, sync: false, renameTo: target,
              requestTimeoutMs: 60_000, connectionTimeoutMs: 10_000,
            },
          });
          if (!r.ok) throw new Error(`${transport} GET ${o.key}: ${r.kind === 'status' ? `HTTP ${r.status}` : r.message}`);
          if (r.verified !== 'crc32') throw new Error(`${transport} GET ${o.key}: checked by ${String(r.verified)}, not CRC32`);
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
      let count = 0;
      for (let d = 0; d < 10; d++) {
        for (const name of await readdir(path.join(dir, `d${d}`))) {
          if ((await stat(path.join(dir, `d${d}`, name))).size !== fileBytes) throw new Error(`${transport}: ${name} has the wrong size`);
          count++;
        }
      }
      if (count !== files) throw new Error(`${transport}: ${count} files downloaded of ${files}`);
    };

    // Untimed warm-up: both transports open their connections and the threads start.
    for (const t of TRANSPORTS) {
      await download(t, path.join(root, `warm-${t}`));
      await rm(path.join(root, `warm-${t}`), { recursive: true, force: true });
    }

    const measurements: Measurement[] = [];
    for (let run = 1; run <= runs; run++) {
      const order = run % 2 === 1 ? TRANSPORTS : [...TRANSPORTS].reverse();
      for (const transport of order) {
        const dir = path.join(root, `run${run}-${transport}`);
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        await download(transport, dir);
        const seconds = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const m: Measurement = { run, transport, seconds, mbPerSecond: (files * fileBytes) / 1e6 / seconds, cpuMsPerFile: (cpu.user + cpu.system) / 1000 / files };
        measurements.push(m);
        console.log(`  run ${run} ${transport.padEnd(8)} ${m.mbPerSecond.toFixed(0).padStart(5)} MB/s  CPU ${m.cpuMsPerFile.toFixed(2)} ms/file  (${seconds.toFixed(2)} s)`);
        await rm(dir, { recursive: true, force: true });
      }
    }
    await pool.destroy();
    direct.destroy();

    const of = (t: Transport) => measurements.filter((m) => m.transport === t);
    const mbps = (t: Transport) => median(of(t).map((m) => m.mbPerSecond));
    const cpu = (t: Transport) => median(of(t).map((m) => m.cpuMsPerFile));
    console.log('\n| transport | MB/s (runs) | CPU ms per file (runs) |\n|---|---|---|');
    for (const t of TRANSPORTS) {
      console.log(`| ${t} | **${mbps(t).toFixed(0)}** (${of(t).map((m) => m.mbPerSecond.toFixed(0)).join(', ')}) | **${cpu(t).toFixed(2)}** (${of(t).map((m) => m.cpuMsPerFile.toFixed(2)).join(', ')}) |`);
    }
    console.log(`\nundici ÷ raw-http: MB/s ${(mbps('undici') / mbps('raw-http')).toFixed(2)}×, CPU per file ${(cpu('undici') / cpu('raw-http')).toFixed(2)}×`);
    if (args.json) await writeFile(args.json, JSON.stringify({ runs, files, fileBytes, measurements }, null, 2));
  });
}

await main();
