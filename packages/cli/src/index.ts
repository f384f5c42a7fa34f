// The drover command. Each subcommand lives in commands/; errors are one line, never a stack.
// A command's module (and so the coordinator, the worker or the AWS SDK) is loaded only when that
// command runs, so `drover status` does not pay for loading the server.
import { Command, CommanderError } from 'commander';

const COMMAND_GROUPS: { names: readonly string[]; load(): Promise<Command[]> }[] = [
  { names: ['server'], load: async () => [(await import('./commands/server.js')).serverCommand()] },
  { names: ['worker'], load: async () => [(await import('./commands/worker.js')).workerCommand()] },
  { names: ['up', 'demo'], load: async () => (await import('./commands/up.js')).clusterCommands() },
  { names: ['submit', 'status', 'jobs', 'logs', 'users', 'tokens'], load: async () => (await import('./commands/jobs.js')).jobCommands() },
  { names: ['upload', 'download', 'storage'], load: async () => (await import('./commands/storage.js')).storageCommands() },
  { names: ['scaling'], load: async () => (await import('./commands/scaling.js')).scalingCommands() },
  { names: ['salad'], load: async () => (await import('./commands/salad.js')).saladCommands() },
  { names: ['queue'], load: async () => (await import('./commands/queue.js')).queueCommands() },
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
  // A command made on its own and added does not inherit the program's settings: without this its
  // usage errors would exit 1 from inside commander instead of reaching main() (exit 2).
  const throwUsageErrors = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(throwUsageErrors);
  };
  throwUsageErrors(cmd);
  return cmd;
}

/**
 * Under `npx drover …` npm exits on SIGTERM without passing it on, and this process lives on as an
 * orphan (a supervisor that stops `npx drover server` would leave the coordinator running). So when
 * the parent npm started us under goes, act as on SIGTERM: the server drains, a worker releases its job.
 */
function followNpmExecParent(): void {
  if (process.env.npm_command !== 'exec') return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  timer.unref();
}

/**
 * `drover up | tee up.log`, then Ctrl-C: tee exits first and every later write to stdout fails with
 * EPIPE. That must not crash the command (`up` would die before its workers release their jobs):
 * output to a reader that went away is dropped.
 */
function surviveClosedOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    });
  }
}

export async function main(argv: string[]): Promise<void> {
  followNpmExecParent();
  surviveClosedOutput();
  try {
    await (await program(argv)).parseAsync(argv);
  } catch (e) {
    // Commander's own errors (unknown option, missing or invalid argument) are usage errors: exit 2,
    // as every other usage error; help and --version exit 0.
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    throw e;
  }
}
