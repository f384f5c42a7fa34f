// The drover command. Each subcommand lives in commands/; errors are one line, never a stack.
// A command's module (and so the coordinator, the worker or the AWS SDK) is loaded only when that
// command runs, so `drover status` does not pay for loading the server.
import { Command, CommanderError } from 'commander';

const COMMAND_GROUPS: { names: readonly string[]; load(): Promise<Command[]> }[] = [
  { names: ['server'], load: async () => [(await import('./commands/server.js')).serverCommand()] },
  { names: ['worker'], load: async () => [(await import('./commands/worker.js')).workerCommand()] },
  { names: ['up', 'demo'], load: async () => (await import('./commands/up.js')).clusterCommands() },
  { names: ['submit', 'status', 'jobs', 'users', 'tokens'], load: async () => (await import('./commands/jobs.js')).jobCommands() },
  { names: ['upload', 'download', 'storage'], load: async () => (await import('./commands/storage.js')).storageCommands() },
];

/** The program with the commands `argv` needs: the one it names, or all of them (for help and errors). */
export async function program(argv: readonly string[] = process.argv): Promise<Command> {
  const cmd = new Command('drover')
    .description('Run long jobs to completion on interruptible GPU nodes (Kelpie-compatible).')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  const args = argv.slice(2);
  const named = args.find((a) => !a.startsWith('-'));
  const onlyVersion = named === undefined && args.some((a) => a === '-V' || a === '--version');
  const groups = onlyVersion ? [] : (COMMAND_GROUPS.filter((g) => named !== undefined && g.names.includes(named)) as typeof COMMAND_GROUPS);
  for (const group of groups.length > 0 || onlyVersion ? groups : COMMAND_GROUPS) {
    for (const c of await group.load()) cmd.addCommand(c);
  }
  return cmd;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await (await program(argv)).parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    throw e;
  }
}
