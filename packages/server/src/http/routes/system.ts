// Unauthenticated operational routes: health, metrics, OpenAPI document.
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

  app.get('/metrics', { config: { auth: false }, schema: { hide: true } }, async (_req, reply) => {
    const body = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(body);
  });

  app.get('/openapi.json', { config: { auth: false }, schema: { hide: true } }, async () => app.swagger());
};
