// Starting and stopping a coordinator: store + migrations, admin bootstrap, HTTP, webhooks.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_LOG_CAP_BYTES } from '@drover/protocol';
import { Authenticator } from './auth/tokens.js';
import { buildApp } from './http/app.js';
import { Metrics } from './metrics.js';
import { Autoscaler, type AutoscalerOptions } from './scaling/autoscaler.js';
import type { ScalingProvider } from './scaling/provider.js';
import { LocalProvider, type LocalNodePool } from './scaling/providers/local.js';
import { SaladCloudProvider, type SaladCloudSettings } from './scaling/providers/saladcloud.js';
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
  /** bytes of a job's output kept per attempt (default DEFAULT_LOG_CAP_BYTES, 10 MiB) */
  logCapBytes?: number;
  webhooks?: Partial<WebhookSenderOptions>;
  autoscaling?: AutoscalingOptions;
  /**
   * Also serve GET /metrics without a key on this address (e.g. 127.0.0.1:9464 for a Prometheus on
   * the same host or network); on the API's own port it needs the admin's key.
   */
  metricsListen?: { host: string; port: number };
}

export interface AutoscalingOptions extends AutoscalerOptions {
  /** false: this coordinator serves the rules but never acts on them (default true) */
  enabled?: boolean;
  /** SALAD_API_KEY and where the API is: rules with provider saladcloud are driven by this coordinator */
  saladcloud?: SaladCloudSettings;
  /** `drover up --autoscale`: the local worker processes rules with provider local start and stop */
  localPool?: LocalNodePool;
}

export interface RunningServer {
  app: FastifyInstance;
  store: Store;
  autoscaler: Autoscaler;
  url: string;
  /** set on a first start without DROVER_ADMIN_KEY: shown once, never stored */
  generatedAdminKey?: string;
  /** with metricsListen: where /metrics is served without a key */
  metricsUrl?: string;
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
  const auth = new Authenticator(store);
  const { generatedKey } = await auth.bootstrapAdmin(opts.adminKey, Date.now());
  const scheduler = new Scheduler(store);
  const metrics = new Metrics(store, () => scheduler.waiting);
  const { enabled: autoscale = true, saladcloud, localPool, ...autoscalerOptions } = opts.autoscaling ?? {};
  const log = {
    info: (o: object, m: string) => late.app?.log.info(o, m),
    warn: (o: object, m: string) => late.app?.log.warn(o, m),
    error: (o: object, m: string) => late.app?.log.error(o, m),
  };
  const providers: ScalingProvider[] = [];
  if (saladcloud) {
    const onRetry = saladcloud.onRetry;
    providers.push(
      new SaladCloudProvider(
        {
          ...saladcloud,
          onRetry: (r) => {
            log.warn({ operation: r.operation, status: r.status, attempt: r.attempt, delayMs: r.delayMs, err: r.message }, 'SaladCloud call failed; retrying');
            onRetry?.(r);
          },
        },
        // Which coordinator asked is in the user agent: SaladCloud's side of an incident can be matched to a decision.
        `drover-coordinator/${VERSION} (${hostname()}:${process.pid})`,
      ),
    );
  }
  if (localPool) providers.push(new LocalProvider(localPool, store));
  const autoscaler = new Autoscaler(store, providers, log, autoscalerOptions, metrics.registry);

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
    logCapBytes: opts.logCapBytes ?? DEFAULT_LOG_CAP_BYTES,
    logger,
    version: VERSION,
    scaling: {
      autoscaler,
      saladcloud: { organization: saladcloud?.organization, project: saladcloud?.project },
    },
    get webhooks() {
      return late.webhooks;
    },
  });
  late.app = app;
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

  let metricsServer: Server | undefined;
  try {
    await app.ready();
    // Nodes kept running their jobs while this coordinator was down: their leases must not lapse
    // just because nobody could hear their heartbeats. The grace counts from the moment they can be
    // heard again, just before listening: counted from the process start, a slow start ate it.
    const graced = await store.graceLeasesAfterStart(Date.now());
    if (graced > 0) app.log.info({ leases: graced }, 'started again: running jobs get one lease of grace to heartbeat before others may take them');
    await app.listen({ port: opts.port ?? 8080, host: opts.host ?? '0.0.0.0' });
    if (opts.metricsListen) metricsServer = await serveMetrics(opts.metricsListen, metrics);
    if (autoscale) await autoscaler.start();
  } catch (e) {
    metricsServer?.close();
    await autoscaler.stop();
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
    ...(metricsServer ? { metricsUrl: `http://${opts.metricsListen!.host.includes(':') ? `[${opts.metricsListen!.host}]` : opts.metricsListen!.host}:${(metricsServer.address() as AddressInfo).port}/metrics` } : {}),
    store,
    autoscaler,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ...(generatedKey ? { generatedAdminKey: generatedKey } : {}),
    close() {
      // Stop accepting, answer waiting long-polls, let in-flight requests finish, then close the database.
      closing ??= (async () => {
        // Node closes only the connections idle at close(); one whose response ends later (a
        // long-poll answered by the shutdown, a slow request) would stay open for keepAliveTimeout.
        for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
        await app.close();
        if (metricsServer) await new Promise<void>((r) => metricsServer!.close(() => r()));
        await autoscaler.stop();
        await webhooks.stop();
        await store.close();
      })();
      return closing;
    },
  };
}

/** GET /metrics, and nothing else, on an address of its own: no key, no other route. */
async function serveMetrics(at: { host: string; port: number }, metrics: Metrics): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found","message":"only GET /metrics is served here"}');
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'internal', message: err.message })),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => resolve());
  });
  return server;
}

function redact(database: string): string {
  return database.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
