// `drover upload LOCAL REMOTE` and `drover download REMOTE LOCAL`: a file or a whole folder, both
// through @drover/storage's transfer engine (multipart / parallel ranges, retries, verification).
// The seeds' 1_upload_job_input and 8_download_job_output.
import { mkdir, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import {
  NotFoundError, downloadFile, downloadPrefix, uploadFile, uploadFolder,
  type FolderFile, type ObjectInfo, type ObjectStore, type TransferResult,
} from '@drover/storage';
import { CliError, printJson } from '../../lib/output.js';
import { ProgressBar, formatSummary, mbPerSecond } from '../../lib/progress-bar.js';
import { folderPrefix, formatRemote, parseRemote, type RemotePath } from '../../lib/remote-path.js';
import { storageAction, type RunContext } from './run.js';
import { withStorageOptions } from './settings.js';

const JSON_HELP = 'print a JSON summary (files, bytes, seconds, MB/s and every file) instead of the summary line';

interface Item {
  path: string;
  key: string;
  size: number;
}

async function statOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await stat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new CliError(`cannot read ${p}: ${(err as Error).message}`);
  }
}

/** The first object under `prefix`, if there is one (one list page at most). */
async function firstObject(store: ObjectStore, bucket: string, prefix: string): Promise<ObjectInfo | undefined> {
  for await (const o of store.list(bucket, prefix)) return o;
  return undefined;
}

/** Like cp: into the folder when the remote names one (trailing `/`, bucket root, or existing objects under it). */
async function keyForFile(store: ObjectStore, remote: RemotePath, name: string): Promise<string> {
  if (remote.key === '' || remote.key.endsWith('/')) return remote.key + name;
  if (await firstObject(store, remote.bucket, `${remote.key}/`)) return `${remote.key}/${name}`;
  return remote.key;
}

interface Outcome {
  operation: 'upload' | 'download';
  source: string;
  destination: string;
  files: number;
  bytes: number;
  items: Item[];
}

function report(ctx: RunContext, o: Outcome, started: number): void {
  const seconds = (performance.now() - started) / 1000;
  if (ctx.flags.json) {
    printJson({
      operation: o.operation, source: o.source, destination: o.destination,
      files: o.files, bytes: o.bytes,
      seconds: Number(seconds.toFixed(3)), mb_per_s: Number(mbPerSecond(o.bytes, seconds).toFixed(3)),
      items: [...o.items].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    });
    return;
  }
  const verb = o.operation === 'upload' ? 'uploaded' : 'downloaded';
  process.stdout.write(`${formatSummary({ verb, files: o.files, bytes: o.bytes, seconds, from: o.source, to: o.destination })}\n`);
}

async function upload(ctx: RunContext, local: string, remoteText: string): Promise<void> {
  const { store, kind } = ctx.storage;
  const remote = parseRemote(remoteText, ctx.storage.remoteContext);
  ctx.bucket = remote.bucket;
  const abs = path.resolve(local);
  const info = await statOrUndefined(abs);
  if (!info) throw new CliError(`local path ${local} does not exist`);
  const started = performance.now();
  const items: Item[] = [];
  const bar = new ProgressBar({ label: `upload ${path.basename(abs)}` });
  try {
    if (info.isDirectory()) {
      const prefix = folderPrefix(remote.key);
      const onFileDone = (f: FolderFile, r: TransferResult) => items.push({ path: f.relativePath, key: f.key, size: r.size });
      const res = await uploadFolder(store, abs, remote.bucket, prefix, { signal: ctx.signal, onProgress: (p) => bar.update(p), onFileDone });
      bar.finish();
      if (res.files === 0) process.stderr.write(`drover upload: warning: folder ${local} has no files to upload (symlinks and .drover-* files are skipped)\n`);
      report(ctx, { operation: 'upload', source: local, destination: formatRemote(kind, remote.bucket, prefix), files: res.files, bytes: res.bytes, items }, started);
    } else if (info.isFile()) {
      const key = await keyForFile(store, remote, path.basename(abs));
      const r = await uploadFile(store, abs, remote.bucket, key, { signal: ctx.signal, onProgress: (p) => bar.update(p) });
      bar.finish();
      items.push({ path: path.basename(abs), key, size: r.size });
      report(ctx, { operation: 'upload', source: local, destination: formatRemote(kind, remote.bucket, key), files: 1, bytes: r.size, items }, started);
    } else {
      throw new CliError(`local path ${local} is neither a file nor a folder`);
    }
  } finally {
    bar.finish();
  }
}

async function download(ctx: RunContext, remoteText: string, local: string): Promise<void> {
  const { store, kind } = ctx.storage;
  const remote = parseRemote(remoteText, ctx.storage.remoteContext);
  ctx.bucket = remote.bucket;
  const dest = path.resolve(local);
  let single: ObjectInfo | undefined;
  if (remote.key !== '' && !remote.key.endsWith('/')) {
    try {
      single = await store.head(remote.bucket, remote.key);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  const started = performance.now();
  const items: Item[] = [];
  const bar = new ProgressBar({ label: `download ${path.posix.basename(remote.key) || remote.bucket}` });
  try {
    if (single) {
      const destInfo = await statOrUndefined(dest);
      const target = destInfo?.isDirectory() || /[/\\]$/.test(local) ? path.join(dest, path.posix.basename(remote.key)) : dest;
      await mkdir(path.dirname(target), { recursive: true });
      const r = await downloadFile(store, remote.bucket, remote.key, target, { signal: ctx.signal, onProgress: (p) => bar.update(p) });
      bar.finish();
      items.push({ path: target, key: remote.key, size: r.size });
      report(ctx, { operation: 'download', source: formatRemote(kind, remote.bucket, remote.key), destination: path.relative(process.cwd(), target) || '.', files: 1, bytes: r.size, items }, started);
      return;
    }
    const prefix = folderPrefix(remote.key);
    // Nothing there: say so before touching the local disk.
    if (!(await firstObject(store, remote.bucket, prefix))) {
      if (remote.key === '') throw new CliError(`bucket ${formatRemote(kind, remote.bucket)} has no objects`);
      throw new CliError(`no object ${formatRemote(kind, remote.bucket, remote.key)} and no objects under ${formatRemote(kind, remote.bucket, prefix)}`);
    }
    const destInfo = await statOrUndefined(dest);
    if (destInfo && !destInfo.isDirectory()) throw new CliError(`${local} is a file; a folder download needs a folder (or a new path) there`);
    const onFileDone = (f: FolderFile, r: TransferResult) => items.push({ path: f.relativePath, key: f.key, size: r.size });
    const res = await downloadPrefix(store, remote.bucket, prefix, dest, { signal: ctx.signal, onProgress: (p) => bar.update(p), onFileDone });
    bar.finish();
    report(ctx, { operation: 'download', source: formatRemote(kind, remote.bucket, prefix), destination: local, files: res.files, bytes: res.bytes, items }, started);
  } finally {
    bar.finish();
  }
}

export function uploadCommand(): Command {
  const cmd = new Command('upload')
    .description('Upload a file, or a folder and everything below it, to object storage. A folder\'s contents go under the prefix.')
    .argument('<local>', 'a file or a folder')
    .argument('<remote>', 's3://bucket/prefix (with local storage also bucket/prefix, or a path inside the storage folder)');
  withStorageOptions(cmd, JSON_HELP).addHelpText(
    'after',
    '\nExamples:\n  drover upload ./inputs s3://jobs/run-1/input        # inputs/a.txt -> s3://jobs/run-1/input/a.txt\n' +
      '  drover upload model.bin s3://jobs/run-1/            # -> s3://jobs/run-1/model.bin\n',
  );
  cmd.action(storageAction('upload', (ctx, [local, remote]) => upload(ctx, local as string, remote as string)));
  return cmd;
}

export function downloadCommand(): Command {
  const cmd = new Command('download')
    .description('Download one object, or every object under a prefix (into a folder, keeping the layout), from object storage.')
    .argument('<remote>', 's3://bucket/key-or-prefix: the object of that name, else every object under name/')
    .argument('<local>', 'file or folder to write (folders are created)');
  withStorageOptions(cmd, JSON_HELP).addHelpText(
    'after',
    '\nExamples:\n  drover download s3://jobs/run-1/output ./output     # s3://jobs/run-1/output/x -> ./output/x\n' +
      '  drover download s3://jobs/run-1/output/result.csv .\n',
  );
  cmd.action(storageAction('download', (ctx, [remote, local]) => download(ctx, remote as string, local as string)));
  return cmd;
}
