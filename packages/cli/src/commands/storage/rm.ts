// `drover storage rm REMOTE`: remove one object, or (with --recursive) everything under a prefix,
// or (with --recursive --yes) everything in a bucket. The seeds' 0_cloud_storage_remove.
// Safe by default: anything beyond the one object named needs --recursive, a whole bucket also
// --yes, and a refusal removes nothing. `rm s3://b/run-1` never touches s3://b/run-10/.
import { Command, Option } from 'commander';
import { CliError, formatBytes, printJson } from '../../lib/output.js';
import { USAGE_EXIT, folderPrefix, formatRemote, parseRemote } from '../../lib/remote-path.js';
import { checkLocalBucket, selectObjects, type ListedObject } from './ls.js';
import { storageAction, type RunContext } from './run.js';
import { withStorageOptions } from './settings.js';

interface RmFlags {
  recursive?: boolean;
  yes?: boolean;
  dryRun?: boolean;
}

const DELETE_CONCURRENCY = 16;
const objects = (n: number) => `${n} object${n === 1 ? '' : 's'}`;

async function rm(ctx: RunContext, text: string): Promise<void> {
  const flags = ctx.flags as RunContext['flags'] & RmFlags;
  const { kind, store } = ctx.storage;
  const remote = parseRemote(text, ctx.storage.remoteContext);
  ctx.bucket = remote.bucket;
  await checkLocalBucket(ctx, remote.bucket);
  const shown = formatRemote(kind, remote.bucket, remote.key);
  const selected = await selectObjects(ctx, remote);
  if (selected.length === 0) throw new CliError(`nothing to remove: no object ${shown} and no objects under it`);
  const bytes = selected.reduce((a, o) => a + o.size, 0);
  const single = selected.length === 1 && selected[0]?.key === remote.key;
  const amount = `${objects(selected.length)}, ${formatBytes(bytes)}`;
  if (remote.key === '' && !(flags.recursive && flags.yes)) {
    throw new CliError(`this would empty the whole bucket ${formatRemote(kind, remote.bucket)} (${amount}); pass --recursive --yes to do that. Nothing was removed.`, USAGE_EXIT);
  }
  if (!single && !flags.recursive) {
    throw new CliError(`${shown} is more than one object (${amount} under ${formatRemote(kind, remote.bucket, folderPrefix(remote.key))}); pass --recursive to remove them all. Nothing was removed.`, USAGE_EXIT);
  }

  const removed: ListedObject[] = [];
  const say = (line: string) => {
    if (!flags.json) process.stdout.write(`${line}\n`);
  };
  if (flags.dryRun) {
    for (const o of selected) say(`would remove ${formatRemote(kind, o.bucket, o.key)}  (${formatBytes(o.size)})`);
  } else {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < selected.length) {
        ctx.signal.throwIfAborted();
        const o = selected[next++] as ListedObject;
        await store.delete(o.bucket, o.key);
        removed.push(o);
        say(`removed ${formatRemote(kind, o.bucket, o.key)}  (${formatBytes(o.size)})`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, selected.length) }, lane));
  }
  const list = flags.dryRun ? selected : removed;
  if (flags.json) {
    printJson({
      remote: shown,
      dry_run: Boolean(flags.dryRun),
      files: list.length,
      bytes: list.reduce((a, o) => a + o.size, 0),
      removed: flags.dryRun ? [] : removed.map((o) => ({ bucket: o.bucket, key: o.key, size: o.size })).sort((a, b) => (a.key < b.key ? -1 : 1)),
      ...(flags.dryRun ? { would_remove: selected.map((o) => ({ bucket: o.bucket, key: o.key, size: o.size })) } : {}),
    });
    return;
  }
  say(`${flags.dryRun ? 'would remove' : 'removed'} ${amount}`);
}

export function rmCommand(): Command {
  const cmd = new Command('rm')
    .description('Remove an object, or with --recursive every object under a prefix. A whole bucket also needs --yes.')
    .argument('<remote>', 's3://bucket/key-or-prefix: the object of that name and (with --recursive) everything under name/')
    .addOption(new Option('-r, --recursive', 'remove every object under the prefix, not just one object'))
    .addOption(new Option('-y, --yes', 'confirm emptying a whole bucket (with --recursive)'))
    .addOption(new Option('-n, --dry-run', 'print what would be removed, remove nothing'));
  withStorageOptions(cmd, 'print {files, bytes, removed: [{bucket, key, size}]} instead of one line per object').addHelpText(
    'after',
    '\nExamples:\n  drover storage rm s3://jobs/run-1/input/a.txt\n  drover storage rm --recursive s3://jobs/run-1       # run-1/..., never run-10/...\n',
  );
  cmd.action(storageAction('storage rm', (ctx, [remote]) => rm(ctx, remote as string)));
  return cmd;
}
