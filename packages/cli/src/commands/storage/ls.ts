// `drover storage ls [REMOTE]`: what is in storage, as a tree with sizes and per-folder totals
// (the seeds' 0_cloud_storage_check); `--json` gives the flat list of objects.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { CliError, printJson } from '../../lib/output.js';
import { USAGE_EXIT, formatRemote, parseRemote, selects, type RemotePath } from '../../lib/remote-path.js';
import { storageAction, type RunContext } from './run.js';
import { withStorageOptions } from './settings.js';
import { buildTree, renderTree } from './tree.js';

export interface ListedObject {
  bucket: string;
  key: string;
  size: number;
  lastModified: Date;
  etag?: string;
}

/** Every object a remote path selects: the object it names and everything in its folder, in key order. */
export async function selectObjects(ctx: RunContext, remote: RemotePath): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const o of ctx.storage.store.list(remote.bucket, remote.key)) {
    if (ctx.signal.aborted) break;
    if (selects(remote.key, o.key)) out.push({ bucket: remote.bucket, ...o });
  }
  return out;
}

/** The bucket folders of a local storage folder (none when it does not exist yet). */
async function localBuckets(root: string): Promise<string[]> {
  try {
    const entries = await readdir(root, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** On local storage, a bucket is a folder: a missing one is an error, as on S3. */
export async function checkLocalBucket(ctx: RunContext, bucket: string): Promise<void> {
  const root = ctx.storage.root;
  if (root !== undefined && !(await localBuckets(root)).includes(bucket)) {
    throw new CliError(`bucket ${JSON.stringify(bucket)} does not exist in the local storage folder ${root}`);
  }
}

async function ls(ctx: RunContext, text: string | undefined): Promise<void> {
  const { kind, root } = ctx.storage;
  let remote: RemotePath;
  if (text === undefined) {
    if (root === undefined) throw new CliError('name what to list, e.g. `drover storage ls s3://bucket/prefix` (S3 buckets are not listed)', USAGE_EXIT);
    remote = { bucket: '', key: '' };
  } else {
    remote = parseRemote(text, ctx.storage.remoteContext, { allowStoreRoot: true });
  }
  ctx.bucket = remote.bucket;

  let objects: ListedObject[];
  let base: string;
  let title: string;
  if (remote.bucket === '') {
    objects = [];
    for (const bucket of await localBuckets(root as string)) objects.push(...(await selectObjects(ctx, { bucket, key: '' })));
    base = '';
    title = `${root}${path.sep}`;
  } else {
    await checkLocalBucket(ctx, remote.bucket);
    objects = await selectObjects(ctx, remote);
    // Names are shown relative to the folder the path is in: `run-1/out` lists `out` and `out/...`.
    base = remote.key.slice(0, remote.key.lastIndexOf('/') + 1);
    title = formatRemote(kind, remote.bucket, base);
    if (objects.length === 0 && remote.key !== '') throw new CliError(`no object ${formatRemote(kind, remote.bucket, remote.key)} and no objects under it`);
  }
  const bytes = objects.reduce((a, o) => a + o.size, 0);
  if (ctx.flags.json) {
    printJson({
      storage: ctx.storage.description,
      remote: remote.bucket === '' ? title : formatRemote(kind, remote.bucket, remote.key),
      files: objects.length,
      bytes,
      objects: objects.map((o) => ({ bucket: o.bucket, key: o.key, size: o.size, last_modified: o.lastModified.toISOString(), ...(o.etag ? { etag: o.etag } : {}) })),
    });
    return;
  }
  if (objects.length === 0) {
    process.stdout.write(`${title}: no objects\n`);
    return;
  }
  const tree = buildTree(objects.map((o) => ({ path: remote.bucket === '' ? `${o.bucket}/${o.key}` : o.key.slice(base.length), size: o.size })));
  process.stdout.write(renderTree(tree, title));
}

export function lsCommand(): Command {
  const cmd = new Command('ls')
    .description('List objects as a tree with sizes and per-folder totals. Without REMOTE on local storage: every bucket.')
    .argument('[remote]', 's3://bucket/prefix: the object of that name and everything under name/');
  withStorageOptions(cmd, 'print {files, bytes, objects: [{bucket, key, size, last_modified, etag}]} instead of the tree').addHelpText(
    'after',
    '\nExample:\n  drover storage ls s3://jobs/run-1\n',
  );
  cmd.action(storageAction('storage ls', (ctx, [remote]) => ls(ctx, remote)));
  return cmd;
}
