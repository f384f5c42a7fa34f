import { Command, Option } from 'commander';
import { WORKER_SETTINGS, Worker, WorkerConfigError, resolveWorkerConfig, settingDescription } from '@drover/worker';

export function workerCommand(): Command {
  const cmd = new Command('worker').summary('Run a worker on this node (Kelpie-compatible settings)').description(
    'Run a worker on this node: claim jobs from the coordinator, sync their data with object storage, run them and report back. ' +
      "Configured like Kelpie's worker, by environment or flags.",
  );
  for (const spec of WORKER_SETTINGS) cmd.addOption(new Option(spec.flag, settingDescription(spec)));
  cmd.addHelpText(
    'after',
    '\nA flag wins over its environment variables, which are read in the order listed.\n' +
      'Signals: SIGTERM or SIGINT stop the job (SIGTERM, then SIGKILL after --kill-grace), upload its last checkpoint,\n' +
      'release it to another node, and exit 0.\n',
  );
  cmd.action(async (flags: Record<string, unknown>) => {
    // (the channel may already be closed: the parent can die while this process loads)
    let parentGone = process.send !== undefined && !process.connected;
    process.once('disconnect', () => (parentGone = true));
    let worker: Worker;
    try {
      worker = await Worker.create(resolveWorkerConfig(flags));
    } catch (err) {
      if (err instanceof WorkerConfigError) {
        process.stderr.write(`drover worker: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals >= 3) {
        process.stderr.write(`drover worker: ${signal} received 3 times: exiting now\n`);
        process.exit(1);
      }
      worker.shutdown(signal);
    };
    // A bug in one code path must not take the node's job down with it: log it and carry on.
    process.on('unhandledRejection', (reason) => {
      process.stderr.write(`drover worker: unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`);
    });
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // Started by `drover up` with an IPC channel: if that parent dies (even by kill -9), shut down
    // like on SIGTERM rather than live on as an orphan. It may have died while the worker started.
    if (process.send) {
      if (parentGone) worker.shutdown('parent exited');
      else process.on('disconnect', () => worker.shutdown('parent exited'));
    }
    const code = await worker.run();
    if (worker.fatalError !== undefined) process.stderr.write(`drover worker: ${worker.fatalError}\n`);
    process.exit(code);
  });
  return cmd;
}
