#!/usr/bin/env node
// The series-sum demo app (the seeds' demo apps 1, 2 and 3). `--mode worker`: the worker's sync block
// moves the data and the app only reads and writes local folders (demo app 1). `--mode app`: the job
// has `sync: {}` and the app downloads its input and last state and uploads state, log and output
// itself, with the Checkpointer (@drover/checkpointer): demo app 3 when the job comes from the
// coordinator, demo app 2 when it comes from an SQS queue (`drover worker --queue`; the app cannot
// tell). `--help` lists the settings.
//
// Exit codes: 0 done (also for bad input: the error is in the output); 130/143 stopped by
// SIGINT/SIGTERM after saving the state; 1 a failure another node may not have (storage down,
// uploads failing); 2 bad settings.
import { ConfigError, resolveConfig, usage, wantsHelp } from './config.js';
import { runSeriesSum, WorkerManaged, type DataSide } from './app.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (wantsHelp(argv)) {
    console.log(usage());
    return 0;
  }
  const cfg = resolveConfig(argv, process.env);

  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) return;
    console.log(`series-sum: ${sig} received: saving the state and exiting`);
    stop.abort(sig);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  let side: DataSide;
  let reallocate: ((reason: string) => Promise<void>) | undefined;
  if (cfg.mode === 'worker') {
    side = new WorkerManaged(cfg);
  } else {
    const app = await import('./app-managed.js');
    side = await app.AppManaged.open(cfg);
    reallocate = app.reallocator(cfg);
  }
  try {
    return await runSeriesSum(cfg, side, { stop: stop.signal, ...(reallocate ? { reallocate } : {}) });
  } finally {
    await side.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      console.error(`series-sum: ${err.message}`);
      process.exit(2);
    }
    console.error(`series-sum: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
