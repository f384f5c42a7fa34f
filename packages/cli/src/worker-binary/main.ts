// The entry of the single-file `drover-worker` (scripts/build-worker-binary.mjs bundles it and
// makes a Node.js single executable application of it): `drover worker` and nothing else, so the
// bundle holds the worker, the SDK and the storage engine but no coordinator, database driver or
// other command. Flags, environment, signals and exit codes are `drover worker`'s.
import './unpack.js'; // first: the bundled modules' files must be in place before they load
import { CommanderError } from 'commander';
import { workerCommand } from '../commands/worker.js';

const cmd = workerCommand()
  .name('drover-worker')
  .version(`drover-worker 0.1.0 (Node.js ${process.version} ${process.platform}-${process.arch})`)
  .showHelpAfterError()
  .exitOverride();

cmd.parseAsync(process.argv).catch((err: unknown) => {
  // Usage errors exit 2, as `drover worker`'s do; help and --version exit 0.
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  process.stderr.write(`drover-worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
