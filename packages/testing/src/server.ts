// Coordinators for tests: in-process (real HTTP on a loopback port) or as a real child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { PostgresStore, SqliteStore, startServer, type RunningServer, type ServerOptions } from '@drover/server';
import { DroverClient } from '@drover/sdk';
import { createTestDatabase, type TestDatabase } from './pg.js';

/** A TCP port free on 127.0.0.1 right now (for a server that must come back on the same port). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export const STORES = ['sqlite', 'postgres'] as const;
export type StoreKind = (typeof STORES)[number];

export const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const DROVER_BIN = join(REPO_ROOT, 'packages/cli/bin/drover.js');

/** A fresh database of the given kind: a SQLite file in a temp dir, or a new PostgreSQL database. */
export async function freshDatabase(kind: StoreKind): Promise<{ database: string; cleanup(): Promise<void> }> {
  if (kind === 'postgres') {
    const db: TestDatabase = await createTestDatabase();
    return { database: db.url, cleanup: () => db.drop() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'drover-test-'));
  return { database: join(dir, 'drover.db'), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestUser {
  id: string;
  username: string;
  token: string;
  client: DroverClient;
}

export interface TestServer {
  kind: StoreKind;
  url: string;
  database: string;
  adminKey: string;
  admin: DroverClient;
  server: RunningServer;
  /** create a user with a fresh key */
  user(name?: string): Promise<TestUser>;
  client(key?: string): DroverClient;
  /** every row of every table, as one string: equal snapshots mean an unchanged database */
  snapshot(): Promise<string>;
  /** stop the server (keeps the database) */
  stop(): Promise<void>;
  /** stop and drop the database */
  close(): Promise<void>;
}

export async function startTestServer(kind: StoreKind, opts: ServerOptions = {}): Promise<TestServer> {
  const db = opts.database ? { database: opts.database, cleanup: async () => {} } : await freshDatabase(kind);
  const adminKey = opts.adminKey ?? `admin-${randomBytes(12).toString('hex')}`;
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    allowPrivateWebhooks: true,
    ...opts,
    database: db.database,
    adminKey,
  });
  const client = (key?: string) => new DroverClient({ url: server.url, ...(key !== undefined ? { key } : {}), retries: 0 });
  const admin = client(adminKey);
  let n = 0;
  return {
    kind,
    url: server.url,
    database: db.database,
    adminKey,
    admin,
    server,
    client,
    async user(name) {
      const username = name ?? `user${++n}-${randomBytes(3).toString('hex')}`;
      const u = await admin.createUser(username);
      const { token } = await admin.createToken(u.id);
      return { id: u.id, username, token, client: client(token) };
    },
    snapshot: () => snapshot(server),
    stop: () => server.close(),
    async close() {
      await server.close();
      await db.cleanup();
    },
  };
}

async function snapshot(server: RunningServer): Promise<string> {
  const store = server.store;
  if (!(store instanceof SqliteStore || store instanceof PostgresStore)) throw new Error('snapshot: not a Kysely store');
  const db = store.db;
  const tables = await Promise.all([
    db.selectFrom('users').selectAll().orderBy('id').execute(),
    db.selectFrom('tokens').selectAll().orderBy('id').execute(),
    db.selectFrom('jobs').selectAll().orderBy('seq').execute(),
    db.selectFrom('job_bans').selectAll().orderBy('job_id').orderBy('machine_id').execute(),
    db.selectFrom('job_events').selectAll().orderBy('id').execute(),
    db.selectFrom('webhook_outbox').selectAll().orderBy('id').execute(),
    db.selectFrom('job_log_attempts').selectAll().orderBy('job_id').orderBy('attempt').execute(),
    db.selectFrom('job_log_lines').selectAll().orderBy('job_id').orderBy('attempt').orderBy('seq').execute(),
    db.selectFrom('job_handovers').selectAll().orderBy('job_id').orderBy('attempt').execute(),
    db.selectFrom('scaling_rules').selectAll().orderBy('user_id').orderBy('container_group_id').execute(),
    db.selectFrom('scaling_decisions').selectAll().orderBy('id').execute(),
  ]);
  return JSON.stringify(tables);
}

export interface ServerProcess {
  url: string;
  /** the admin key it was started with (undefined: a first start generated one) */
  adminKey: string | undefined;
  proc: ChildProcess;
  output: () => string;
  /** send a signal and wait for the exit code */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `drover server` as a real child process; resolves once it listens. */
export async function spawnServer(args: {
  database: string;
  adminKey?: string;
  port?: number;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** flags for node itself, e.g. --cpu-prof (which NODE_OPTIONS does not allow) */
  nodeArgs?: string[];
  logLevel?: string;
}): Promise<ServerProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...args.env };
  if (args.adminKey !== undefined) env.DROVER_ADMIN_KEY = args.adminKey;
  else delete env.DROVER_ADMIN_KEY;
  const proc = spawn(
    process.execPath,
    [
      ...(args.nodeArgs ?? []),
      DROVER_BIN,
      'server',
      '--port',
      String(args.port ?? 0),
      '--host',
      '127.0.0.1',
      '--database',
      args.database,
      '--log-level',
      args.logLevel ?? 'warn',
      '--allow-private-webhooks',
      ...(args.extraArgs ?? []),
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000);
    const check = () => {
      const m = /drover coordinator on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    adminKey: args.adminKey,
    proc,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      const exited = once(proc, 'exit');
      proc.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}
