#!/usr/bin/env node
// Builds `drover-worker`: the worker as one executable file that needs no Node.js, no node_modules
// and no compiler in the image it is added to (npm run build:worker-binary; docs/saladcloud.md).
//
// 1. esbuild bundles packages/cli/dist/worker-binary/main.js (the `drover worker` command alone)
//    into one CommonJS file (Node 20's single executable applications run CommonJS), and the two
//    files the transfer engine's worker threads load from disk (piscina's thread script and
//    @drover/storage's pool-worker.js) into one file each. The bundle's `import.meta.url` and
//    `__dirname` become globals that worker-binary/unpack.ts sets to where it unpacks those files.
//    The build fails if the bundle holds the coordinator or a database driver, or if esbuild warns
//    (a new `import.meta` use, an unresolved import: something that would break only at run time).
// 2. node --experimental-sea-config makes the blob (the bundle, its code cache, the two files as assets).
// 3. This machine's node executable is copied, stripped of its symbols (-12 MiB; the binary runs the
//    same), and the blob is injected with postject under Node's sentinel fuse.
//
// Usage: node scripts/build-worker-binary.mjs [--out FILE] [--no-strip] [--no-code-cache] [--quiet]
// (run `npm run build` first; `npm run build:worker-binary` does both). Linux; the binary is for
// this machine's platform and architecture (process.platform, process.arch) and needs glibc >= 2.28.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, chmodSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = path.join(ROOT, 'packages/cli/dist/worker-binary/main.js');
const POOL_WORKER = path.join(ROOT, 'packages/storage/dist/pool-worker.js');
// piscina starts its threads on its own script, dist/worker.js beside its main file (not an export).
const PISCINA_WORKER = path.join(path.dirname(createRequire(path.join(ROOT, 'packages/storage/package.json')).resolve('piscina')), 'worker.js');
const POSTJECT = createRequire(import.meta.url).resolve('postject/dist/cli.js');
/** Node's SEA fuse (the string postject flips; Node's docs give it). */
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** What the worker must never carry: the coordinator, its web framework and database drivers. */
const FORBIDDEN = [/node_modules\/better-sqlite3\//, /node_modules\/pg\//, /node_modules\/fastify\//, /node_modules\/kysely\//, /packages\/server\//];

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string', default: path.join(ROOT, 'dist/drover-worker') },
    strip: { type: 'boolean', default: true },
    'no-strip': { type: 'boolean', default: false },
    'code-cache': { type: 'boolean', default: true },
    'no-code-cache': { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
  },
});
const strip = opts.strip && !opts['no-strip'];
const codeCache = opts['code-cache'] && !opts['no-code-cache'];
const say = (line) => opts.quiet || process.stdout.write(`${line}\n`);
const fail = (why) => {
  process.stderr.write(`build-worker-binary: ${why}\n`);
  process.exit(1);
};

if (process.platform !== 'linux') fail(`builds on Linux only (this is ${process.platform})`);
if (!existsSync(ENTRY) || !existsSync(POOL_WORKER)) fail(`${path.relative(ROOT, ENTRY)} is missing: run npm run build first`);

const started = performance.now();
const out = path.resolve(opts.out);
const work = path.join(path.dirname(out), '.drover-worker-build');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

const common = { bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'silent', legalComments: 'none' };
const results = await Promise.all([
  build({
    ...common,
    entryPoints: [ENTRY],
    outfile: path.join(work, 'main.cjs'),
    metafile: true,
    define: { 'import.meta.url': 'globalThis.__droverBundleUrl', __dirname: 'globalThis.__droverBundleDir' },
  }),
  // @napi-rs/nice (native) is piscina's optional way to renice a thread: loaded only for a
  // niceIncrement, which the storage pool does not set, and its absence is caught.
  build({ ...common, entryPoints: [PISCINA_WORKER], outfile: path.join(work, 'worker.js'), external: ['@napi-rs/nice'] }),
  build({ ...common, entryPoints: [POOL_WORKER], outfile: path.join(work, 'pool-worker.js') }),
]);
const warnings = results.flatMap((r) => r.warnings);
if (warnings.length > 0) fail(`esbuild warned:\n${warnings.map((w) => `  ${w.text} (${w.location?.file}:${w.location?.line})`).join('\n')}`);
const inputs = Object.keys(results[0].metafile.inputs);
const forbidden = inputs.filter((i) => FORBIDDEN.some((re) => re.test(i)));
if (forbidden.length > 0) fail(`the worker bundle must not hold the coordinator or a database driver, but has:\n  ${forbidden.join('\n  ')}`);
// The unpacked files are CommonJS whatever package.json lies above the temp folder.
writeFileSync(path.join(work, 'package.json'), '{"type": "commonjs"}\n');
const bundled = performance.now();

const blob = path.join(work, 'sea-prep.blob');
writeFileSync(
  path.join(work, 'sea-config.json'),
  JSON.stringify({
    main: path.join(work, 'main.cjs'),
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: codeCache,
    assets: Object.fromEntries(['package.json', 'worker.js', 'pool-worker.js'].map((f) => [f, path.join(work, f)])),
  }),
);
execFileSync(process.execPath, ['--experimental-sea-config', path.join(work, 'sea-config.json')], { stdio: 'pipe' });

const tmp = `${out}.${process.pid}.tmp`;
copyFileSync(process.execPath, tmp);
chmodSync(tmp, 0o755);
let stripped = false;
if (strip) {
  const r = spawnSync('strip', ['--strip-all', tmp], { stdio: 'pipe' });
  if (r.error || r.status !== 0) say(`(strip ${r.error ? 'not found' : 'failed'}: the binary keeps node's symbols)`);
  else stripped = true;
}
// In a child process: postject (LIEF) prints progress and warnings about node's ELF notes, shown only if it fails.
const injected = spawnSync(process.execPath, [POSTJECT, tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SENTINEL_FUSE], { encoding: 'utf8' });
if (injected.status !== 0) fail(`postject failed:\n${injected.stdout}${injected.stderr}`);
renameSync(tmp, out);
const blobSize = statSync(blob).size;
rmSync(work, { recursive: true, force: true });

const mib = (n) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const ms = (n) => `${Math.round(n)} ms`;
say(
  `${path.relative(process.cwd(), out) || out}: ${mib(statSync(out).size)} (node ${process.version} ${process.platform}-${process.arch}` +
    `${stripped ? ', stripped' : ''}${codeCache ? ', code cache' : ''}; bundle ${mib(blobSize)}) ` +
    `in ${ms(performance.now() - started)} (bundle ${ms(bundled - started)})`,
);
