// The Fastify application: shared schemas, validation, auth, error shape and metrics are
// registered once; each resource is a plugin under routes/.
import Fastify, {
  LogController,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv, type Options as AjvOptions } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { API_KEY_HEADER, SHARED_SCHEMAS } from '@drover/protocol';
import type { Authenticator } from '../auth/tokens.js';
import type { Metrics } from '../metrics.js';
import type { Autoscaler } from '../scaling/autoscaler.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { Store, UserRow } from '../store/types.js';
import type { WebhookSender } from '../webhooks/sender.js';
import { GroupPolls } from '../scheduler/group-polls.js';
import { HttpError, clientErrorHandler, installErrorHandling } from './errors.js';
import { jobRoutes } from './routes/jobs.js';
import { workRoutes } from './routes/work.js';
import { userRoutes } from './routes/users.js';
import { scalingRuleRoutes } from './routes/scaling-rules.js';
import { systemRoutes } from './routes/system.js';
import { logRoutes } from './routes/logs.js';
import { groupRoutes } from './routes/groups.js';
import { statsRoutes } from './routes/stats.js';
import { DASHBOARD_PREFIX, dashboardRoutes } from './routes/dashboard.js';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

declare module 'fastify' {
  interface FastifyRequest {
    user: UserRow;
  }
  interface FastifyContextConfig {
    /** false: no API key needed (health, metrics, docs) */
    auth?: boolean;
    /** true: only the admin may call it */
    admin?: boolean;
  }
}

export interface AppOptions {
  store: Store;
  auth: Authenticator;
  scheduler: Scheduler;
  metrics: Metrics;
  webhooks?: WebhookSender;
  allowPrivateWebhooks: boolean;
  bodyLimit: number;
  /** Bytes of output kept per attempt of a job (POST /jobs/:id/logs). */
  logCapBytes: number;
  logger?: FastifyServerOptions['logger'];
  version: string;
  /** the autoscaler (it knows which providers this coordinator drives) and the SaladCloud defaults for new rules */
  scaling: { autoscaler: Autoscaler; saladcloud?: { organization?: string; project?: string } };
}

export interface AppContext extends AppOptions {
  now: () => number;
  groupPolls: GroupPolls;
}

function makeAjv(opts: AjvOptions): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: false, useDefaults: true, removeAdditional: false, ...opts });
  addFormats(ajv);
  for (const s of SHARED_SCHEMAS) ajv.addSchema(s);
  return ajv;
}

function isPlainJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function presentedKey(req: FastifyRequest): string | undefined {
  const header = req.headers[API_KEY_HEADER];
  if (typeof header === 'string' && header.length > 0) return header;
  const authz = req.headers.authorization;
  if (authz && /^Bearer\s+/i.test(authz)) return authz.replace(/^Bearer\s+/i, '').trim() || undefined;
  return undefined;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit,
    // Long-polls last up to 60 s; keep-alive connections from workers are long-lived.
    keepAliveTimeout: 72_000,
    requestTimeout: 120_000,
    forceCloseConnections: 'idle',
    // Workers heartbeat all day: one log line per request belongs at debug level (onResponse below).
    logController: new LogController({ disableRequestLogging: true }),
    // Path parameters are checked by their schemas (a container group id may be 256 characters);
    // the router's own limit (100 by default) would answer 414 before validation.
    routerOptions: { maxParamLength: 2048 },
    // Malformed URLs (bad percent-encoding) and over-long parameters get the one error shape too.
    frameworkErrors: (err, _req, reply: FastifyReply) => {
      const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
      void reply.code(tooLong ? 414 : 400).send({ error: tooLong ? 'uri_too_long' : 'bad_request', message: err.message });
    },
    ajv: { customOptions: { strict: false } },
    clientErrorHandler,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are validated without type coercion ("5" is not a number); query strings and path
  // parameters arrive as text and are coerced.
  const bodyAjv = makeAjv({ coerceTypes: false });
  const textAjv = makeAjv({ coerceTypes: true });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? bodyAjv : textAjv).compile(schema as object),
  );
  for (const s of SHARED_SCHEMAS) app.addSchema(s);

  installErrorHandling(app);

  // Many clients send `Content-Type: application/json` on every request, DELETE included: an empty
  // body is no body (a route that needs one then says so). Keys that would poison prototypes are
  // refused with a message that says which.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body.toString();
    if (text.trim() === '') return done(null, undefined);
    parseJson(req, text, (err, value) => {
      if (err && isPlainJson(text)) {
        // valid JSON that the safe parser refused: it carries __proto__ or constructor.prototype
        return done(new HttpError(400, 'bad_request', 'body contains a forbidden key (__proto__ or constructor.prototype)'), undefined);
      }
      done(err, value);
    });
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Drover API',
        description: 'Kelpie-compatible coordination API for long-running jobs on interruptible nodes.',
        version: options.version,
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'X-Kelpie-Key' },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
      security: [{ apiKey: [] }, { bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _base, _frag, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.addHook('onRequest', async (req) => {
    const config = req.routeOptions.config;
    if (config.auth === false || req.url.startsWith('/docs') || req.url.startsWith(DASHBOARD_PREFIX)) return;
    const key = presentedKey(req);
    if (!key) throw new HttpError(401, 'unauthorized', 'missing API key: send it in the X-Kelpie-Key header');
    const user = await options.auth.authenticate(key, Date.now());
    if (!user) throw new HttpError(403, 'forbidden', 'unknown API key');
    if (config.admin && user.admin !== 1) throw new HttpError(403, 'forbidden', 'this route is for the admin only');
    req.user = user;
  });

  app.addHook('onResponse', async (req, reply) => {
    if (req.log.level === 'debug' || req.log.level === 'trace') {
      req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
    }
    options.metrics.requests.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  app.addHook('preClose', async () => {
    options.scheduler.stop();
  });

  const ctx: AppContext = { ...options, now: Date.now, groupPolls: new GroupPolls(options.store, (err) => app.log.warn({ err }, 'could not record a poll')) };
  await app.register(systemRoutes, ctx);
  await app.register(jobRoutes, ctx);
  await app.register(workRoutes, ctx);
  await app.register(userRoutes, ctx);
  await app.register(logRoutes, ctx);
  await app.register(groupRoutes, ctx);
  await app.register(statsRoutes, ctx);
  await app.register(dashboardRoutes, ctx);
  await app.register(scalingRuleRoutes, ctx);
  return app;
}
