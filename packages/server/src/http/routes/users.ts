// Accounts: who am I; (admin) create users and their tokens.
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateUserBody, ErrorBody, Me, TokenResponse, User, UserIdParams } from '@drover/protocol';
import { newWebhookSecret } from '../../auth/tokens.js';
import type { AppContext } from '../app.js';
import { HttpError, notFound } from '../errors.js';

const err = Type.Ref(ErrorBody);
const tags = ['users'];

export const userRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  app.get(
    '/users/me',
    { schema: { tags, summary: 'The user the key belongs to', response: { 200: Type.Ref(Me), 401: err, 403: err } } },
    async (req) => ({
      id: req.user.id,
      username: req.user.username,
      created: new Date(req.user.created).toISOString(),
      admin: req.user.admin === 1,
      webhook_secret: req.user.webhook_secret,
    }),
  );

  app.post(
    '/users',
    {
      config: { admin: true },
      schema: {
        tags,
        summary: '(admin) Create a user',
        body: CreateUserBody,
        response: { 201: Type.Ref(User), 400: err, 401: err, 403: err },
      },
    },
    async (req, reply) => {
      const { username } = req.body;
      if (await ctx.store.getUserByName(username)) {
        throw new HttpError(400, 'user_exists', `body/username "${username}" is taken`);
      }
      const user = { id: randomUUID(), username, created: ctx.now(), admin: 0, webhook_secret: newWebhookSecret() };
      try {
        await ctx.store.createUser(user);
      } catch {
        // lost a race with a concurrent create of the same name (unique index)
        throw new HttpError(400, 'user_exists', `body/username "${username}" is taken`);
      }
      return reply.code(201).send({ id: user.id, username, created: new Date(user.created).toISOString() });
    },
  );

  app.post(
    '/users/:id/token',
    {
      config: { admin: true },
      schema: {
        tags,
        summary: '(admin) Issue an API key for a user; it is shown once and only its hash is kept',
        params: UserIdParams,
        // Kelpie's clients send {org_name, project_name}; accepted and not needed here.
        body: Type.Optional(
          Type.Object({ org_name: Type.Optional(Type.String()), project_name: Type.Optional(Type.String()) }),
        ),
        response: { 201: Type.Ref(TokenResponse), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req, reply) => {
      const user = await ctx.store.getUser(req.params.id);
      if (!user) throw notFound('user');
      const token = await ctx.auth.issueToken(user.id, ctx.now());
      return reply.code(201).send({ token });
    },
  );
};
