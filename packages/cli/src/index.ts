// The drover command. Each subcommand lives in commands/; errors are one line, never a stack.
import { Command, CommanderError } from 'commander';
import { jobCommands } from './commands/jobs.js';
import { serverCommand } from './commands/server.js';
import { storageCommands } from './commands/storage.js';
import { clusterCommands } from './commands/up.js';
import { workerCommand } from './commands/worker.js';

export function program(): Command {
  const cmd = new Command('drover')
    .description('Run long jobs to completion on interruptible GPU nodes (Kelpie-compatible).')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  cmd.addCommand(serverCommand());
  cmd.addCommand(workerCommand());
  for (const c of [...clusterCommands(), ...jobCommands(), ...storageCommands()]) cmd.addCommand(c);
  return cmd;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    throw e;
  }
}
