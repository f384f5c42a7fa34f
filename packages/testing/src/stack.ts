// The end-to-end tests' common ground: a real coordinator (SQLite), a user, a loopback S3 bucket
// and the worker processes a describe block starts, every one killed (kill -9) when it ends.
import { after, before } from 'node:test';
import { startBackend, type Backend } from './storage.js';
import { startTestServer, type TestServer, type TestUser } from './server.js';
import { spawnWorker, type TestWorker, type WorkerSpec } from './worker.js';

export interface WorkerStack {
  readonly server: TestServer;
  readonly user: TestUser;
  readonly s3: Backend;
  /** Every worker started through this stack, in order. */
  readonly workers: TestWorker[];
  /** A `drover worker` for `group` against this coordinator (as this user, unless `extra.key`) and this bucket. */
  worker(group: string, extra?: Partial<WorkerSpec>): TestWorker;
}

/** Registers before/after hooks in the calling describe block; use the stack inside tests. */
export function workerStack(): WorkerStack {
  let parts: { server: TestServer; user: TestUser; s3: Backend } | undefined;
  const workers: TestWorker[] = [];
  const started = () => {
    if (!parts) throw new Error('workerStack: the stack starts in before(); use it inside a test');
    return parts;
  };
  before(async () => {
    const server = await startTestServer('sqlite');
    const s3 = await startBackend('s3');
    parts = { server, user: await server.user(), s3 };
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.killNode()));
    await parts?.s3.close();
    await parts?.server.close();
  });
  return {
    get server() {
      return started().server;
    },
    get user() {
      return started().user;
    },
    get s3() {
      return started().s3;
    },
    workers,
    worker: (group, extra = {}) => {
      const { server, user, s3 } = started();
      const w = spawnWorker({ url: server.url, key: user.token, group, storageEnv: s3.env, ...extra });
      workers.push(w);
      return w;
    },
  };
}
