// `drover server` as a child process for benchmarks: like test/helpers/server.ts's spawnServer,
// plus node flags for the server (e.g. --cpu-prof, which NODE_OPTIONS does not allow).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { DROVER_BIN } from '../test/helpers/server.js';

export interface BenchServer {
  url: string;
  pid: number;
  output(): string;
  /** SIGTERM, then wait for the exit (a graceful exit also writes a --cpu-prof profile) */
  stop(): Promise<void>;
}

export async function startBenchServer(args: { database: string; adminKey: string; nodeArgs?: string[] }): Promise<BenchServer> {
  const proc = spawn(
    process.execPath,
    [
      ...(args.nodeArgs ?? []),
      DROVER_BIN,
      'server',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--database',
      args.database,
      '--log-level',
      'warn',
    ],
    { env: { ...process.env, DROVER_ADMIN_KEY: args.adminKey }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(proc, 'exit');
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000);
    proc.stdout.on('data', () => {
      const m = /drover coordinator on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${String(code)}:\n${out}`));
    });
  });
  return {
    url,
    pid: proc.pid!,
    output: () => out,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
