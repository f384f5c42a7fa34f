// The loopback S3-protocol server of the storage benchmarks: fauxqs (in memory) alone in its own
// Node process, so it shares no thread with the client being measured. The parent learns its port
// over IPC; the server stops when the parent goes away.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface S3ServerOptions {
  /** Niceness of every thread of the server (Linux), 0–19; default 0. */
  nice?: number;
  /** Rewrite rclone's CompleteMultipartUpload body into the form fauxqs 1.9.2 reads (see s3-server-main.ts). */
  rcloneShim?: boolean;
}

export interface S3ServerProcess {
  child: ChildProcess;
  port: number;
  endpoint: string;
}

export async function startS3ServerProcess(opts: S3ServerOptions = {}): Promise<S3ServerProcess> {
  const main = fileURLToPath(new URL('./s3-server-main.ts', import.meta.url));
  const args = [`--nice=${opts.nice ?? 0}`, ...(opts.rcloneShim ? ['--rclone-shim'] : [])];
  // The child inherits this process's execArgv (`--import tsx`), so it can run TypeScript too.
  const child = fork(main, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the fauxqs process exited early (${code})`)));
  });
  return { child, port, endpoint: `http://127.0.0.1:${port}` };
}

/**
 * Runs a benchmark's `body` with a scratch folder (`drover-bench-NAME-*` under the temp folder)
 * and the server process; both are removed afterwards, on SIGINT/SIGTERM too.
 */
export async function withBenchServer<T>(name: string, opts: S3ServerOptions, body: (ctx: { root: string; server: S3ServerProcess }) => Promise<T>): Promise<T> {
  const root = await mkdtemp(path.join(tmpdir(), `drover-bench-${name}-`));
  let child: ChildProcess | undefined;
  const onSignal = (): void => {
    child?.kill();
    void rm(root, { recursive: true, force: true }).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const server = await startS3ServerProcess(opts);
    child = server.child;
    return await body({ root, server });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    child?.disconnect();
    await rm(root, { recursive: true, force: true });
  }
}
