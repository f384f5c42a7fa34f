// The dashboard (packages/dashboard, built at install) under /ui/ (`/` leads there: routes/system.ts).
// The page and its scripts are public (they hold no data); everything they show comes from the API
// with the user's key, as every client's does.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppContext } from '../app.js';

export const DASHBOARD_PREFIX = '/ui/';

/** The built dashboard's folder, or undefined when it was not built (or not installed). */
export function dashboardRoot(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('@drover/dashboard/package.json');
    const dist = join(dirname(pkg), 'dist');
    return existsSync(join(dist, 'index.html')) ? dist : undefined;
  } catch {
    return undefined;
  }
}

export const dashboardRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app) => {
  const root = dashboardRoot();

  app.get('/ui', { config: { auth: false }, schema: { hide: true } }, async (_req, reply) => reply.redirect(DASHBOARD_PREFIX, 301));

  if (!root) {
    app.get(`${DASHBOARD_PREFIX}*`, { config: { auth: false }, schema: { hide: true } }, async (_req, reply) =>
      reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .send('The dashboard is not built: run `npm run build` (npm ci runs it) in the Drover checkout.\n'),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: DASHBOARD_PREFIX,
    decorateReply: false,
    cacheControl: false,
    // Vite names every asset after its content: cache those for good, never the page that names them.
    setHeaders(res, path) {
      res.setHeader('cache-control', path.includes(`${join('dist', 'assets')}`) ? 'public, max-age=31536000, immutable' : 'no-cache');
      res.setHeader('x-content-type-options', 'nosniff');
    },
  });
};
