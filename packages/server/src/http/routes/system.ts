// Operational routes: health, the OpenAPI document and a landing page (no key needed), metrics (the admin's key).
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, HealthResponse } from '@drover/protocol';
import type { AppContext } from '../app.js';
import { HttpError } from '../errors.js';

export const systemRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  app.get(
    '/healthz',
    {
      config: { auth: false },
      schema: {
        tags: ['system'],
        summary: 'Liveness and database reachability',
        response: { 200: Type.Ref(HealthResponse), 503: Type.Ref(ErrorBody) },
      },
    },
    async () => {
      try {
        await ctx.store.ping();
      } catch (e) {
        throw new HttpError(503, 'unavailable', `database unreachable: ${(e as Error).message}`);
      }
      return { status: 'ok' as const, store: ctx.store.kind };
    },
  );

  // Job counts of every user: the admin's key only (or a listener of its own: ServerOptions.metricsListen).
  app.get('/metrics', { config: { admin: true }, schema: { hide: true } }, async (_req, reply) => {
    const body = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(body);
  });

  app.get('/openapi.json', { config: { auth: false }, schema: { hide: true } }, async () => app.swagger());

  // A browser pointed at the coordinator lands somewhere useful: a page that leads to the dashboard
  // (a page, not a redirect: an API client asking for / gets a plain answer), and links the API's docs.
  app.get('/', { config: { auth: false }, schema: { hide: true } }, async (_req, reply) =>
    reply.type('text/html; charset=utf-8').send(
      '<!doctype html><html><head><meta charset="utf-8"><title>Drover coordinator</title>' +
        '<meta http-equiv="refresh" content="0; url=/ui/"></head>' +
        '<body><p>Drover coordinator (Kelpie-compatible API). <a href="/ui/">Dashboard</a> · <a href="/docs">API documentation</a> · <a href="/openapi.json">OpenAPI</a></p></body></html>',
    ));
};
