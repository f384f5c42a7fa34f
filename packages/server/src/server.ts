// Starting and stopping a coordinator: store + migrations, admin bootstrap, HTTP, webhooks.
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { Authenticator } from './auth/tokens.js';
import { buildApp } from './http/app.js';
import { Metrics } from './metrics.js';
import { Scheduler } from './scheduler/scheduler.js';
import { DEFAULT_DATABASE, openStore } from './store/index.js';
import type { Store } from './store/types.js';
import { WebhookSender, type WebhookSenderOptions } from './webhooks/sender.js';

export const VERSION = '0.1.0';

export interface ServerOptions {
  port?: number;
  host?: string;
  /** SQLite file path (default ./.drover/drover.db) or a postgres:// URL */
  database?: string;
  /** DROVER_ADMIN_KEY: the admin's key; unset, a first start generates one */
  adminKey?: string;
  allowPrivateWebhooks?: boolean;
  /** request body limit in bytes (default 1 MiB) */
  bodyLimit?: number;
  /** lease timeout = leaseFactor × heartbeat_interval (default 2) */
  leaseFactor?: number;
  logLevel?: string;
  webhooks?: Partial<WebhookSenderOptions>;
}

export interface RunningServer {
  app: FastifyInstance;
  store: Store;
  url: string;
  /** set on a first start without DROVER_ADMIN_KEY: shown once, never stored */
  generatedAdminKey?: string;
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions = {}): Promise<RunningServer> {
  const logLevel = opts.logLevel ?? 'info';
  const database = opts.database ?? DEFAULT_DATABASE;
  // The store and the app refer to each other's parts (logger, webhook sender): built in order, linked here.
  const late: { app?: FastifyInstance; webhooks?: WebhookSender } = {};
  let store: Store;
  try {
    store = openStore(database, opts.leaseFactor ?? 2, (err) => late.app?.log.error({ err }, 'database'));
  } catch (e) {
    throw new Error(`cannot open database ${redact(database)}: ${(e as Error).message}`);
  }
  try {
    await store.migrate();
  } catch (e) {
    await store.close().catch(() => undefined);
    throw new Error(`cannot open database ${redact(database)}: ${(e as Error).message}`);
  }
  // Nodes kept running their jobs while this coordinator was down: their leases must not lapse
  // just because nobody could hear their heartbeats.
  const graced = await store.graceLeasesAfterStart(Date.now());
  const auth = new Authenticator(store);
  const { generatedKey } = await auth.bootstrapAdmin(opts.adminKey, Date.now());
  const scheduler = new Scheduler(store);
  const metrics = new Metrics(store, () => scheduler.waiting);

  const logger =
    logLevel === 'silent'
      ? false
      : { level: logLevel, redact: ['req.headers["x-kelpie-key"]', 'req.headers.authorization'] };
  const app = await buildApp({
    store,
    auth,
    scheduler,
    metrics,
    allowPrivateWebhooks: opts.allowPrivateWebhooks ?? false,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    logger,
    version: VERSION,
    get webhooks() {
      return late.webhooks;
    },
  });
  late.app = app;
  if (graced > 0) app.log.info({ leases: graced }, 'started again: running jobs get one lease of grace to heartbeat before others may take them');
  // Responses still being worked on, so that a shutdown can close their connections after them.
  const inFlight = new Set<ServerResponse>();
  app.server.on('request', (_req, res: ServerResponse) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
  });
  const webhooks = new WebhookSender(
    store,
    app.log,
    { allowPrivate: opts.allowPrivateWebhooks ?? false, ...opts.webhooks },
    (r) => metrics.webhooks.inc({ result: r.ok ? 'delivered' : 'failed' }),
  );
  late.webhooks = webhooks;
  webhooks.start();

  try {
    await app.listen({ port: opts.port ?? 8080, host: opts.host ?? '0.0.0.0' });
  } catch (e) {
    await webhooks.stop();
    await app.close();
    await store.close();
    throw e;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';
  let closing: Promise<void> | undefined;
  return {
    app,
    store,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ...(generatedKey ? { generatedAdminKey: generatedKey } : {}),
    close() {
      // Stop accepting, answer waiting long-polls, let in-flight requests finish, then close the database.
      closing ??= (async () => {
        // Node closes only the connections idle at close(); one whose response ends later (a
        // long-poll answered by the shutdown, a slow request) would stay open for keepAliveTimeout.
        for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
        await app.close();
        await webhooks.stop();
        await store.close();
      })();
      return closing;
    },
  };
}

function redact(database: string): string {
  return database.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
