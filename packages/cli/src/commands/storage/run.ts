// What every storage command shares: open the store from its flags, turn Ctrl-C into an abort of
// the transfer (a second Ctrl-C quits at once), turn failures into one line, close the store.
import type { Command } from 'commander';
import { CliError, action } from '../../lib/output.js';
import { openStorage, storageFailure, type Storage, type StorageFlags } from './settings.js';

export interface RunContext {
  storage: Storage;
  flags: StorageFlags;
  signal: AbortSignal;
  /** The bucket the command works on, once known (names it in a "bucket does not exist" error). */
  bucket?: string;
}

/**
 * A commander action for a storage command with positional `args` (strings, or undefined for an
 * optional one left out). Commander passes the declared arguments, then the options, then the command.
 */
export function storageAction(name: string, fn: (ctx: RunContext, args: (string | undefined)[]) => Promise<void>): (...args: unknown[]) => Promise<void> {
  return action(name, async (...raw: unknown[]) => {
    const cmd = raw[raw.length - 1] as Command;
    const args = raw.slice(0, -2) as (string | undefined)[];
    const flags = cmd.opts<StorageFlags>();
    const storage = openStorage(flags);
    const controller = new AbortController();
    let interrupts = 0;
    const onSigint = (): void => {
      if (++interrupts > 1) process.exit(130);
      process.stderr.write(`\ndrover ${name}: stopping (Ctrl-C again to quit at once)\n`);
      controller.abort();
    };
    process.on('SIGINT', onSigint);
    const ctx: RunContext = { storage, flags, signal: controller.signal };
    try {
      await fn(ctx, args);
    } catch (err) {
      if (controller.signal.aborted) throw new CliError('interrupted; unfinished downloads were removed and unfinished multipart uploads aborted', 130);
      throw storageFailure(err, storage, ctx.bucket);
    } finally {
      process.off('SIGINT', onSigint);
      storage.close();
    }
  });
}
