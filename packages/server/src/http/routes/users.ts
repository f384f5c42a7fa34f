// Accounts: who am I; (admin) create, list, revoke and delete users and their tokens.
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateTokenBody, CreateUserBody, ErrorBody, Me, TokenIdParams, TokenList, TokenResponse, User, UserIdParams } from '@drover/protocol';
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
        body: CreateTokenBody,
        response: { 201: Type.Ref(TokenResponse), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req, reply) => {
      const user = await ctx.store.getUser(req.params.id);
      if (!user) throw notFound('user');
      const { token, id } = await ctx.auth.issueToken(user.id, ctx.now());
      return reply.code(201).send({ token, id });
    },
  );

  app.get(
    '/users/:id/tokens',
    {
      config: { admin: true },
      schema: { tags, summary: "(admin) A user's API keys: their ids and when each was issued (never a secret)", params: UserIdParams, response: { 200: Type.Ref(TokenList), 400: err, 401: err, 403: err, 404: err } },
    },
    async (req) => {
      if (!(await ctx.store.getUser(req.params.id))) throw notFound('user');
      const tokens = await ctx.store.listTokens(req.params.id);
      return { tokens: tokens.map((t) => ({ id: t.id, created: new Date(t.created).toISOString() })) };
    },
  );

  app.delete(
    '/tokens/:id',
    {
      config: { admin: true },
      schema: {
        tags,
        summary: '(admin) Revoke an API key by its id; refused at once by this coordinator, by its replicas within 10 s',
        params: TokenIdParams,
        response: { 204: Type.Null(), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req, reply) => {
      if (!(await ctx.store.deleteToken(req.params.id))) throw notFound('token');
      ctx.auth.forgetToken(req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/users/:id',
    {
      config: { admin: true },
      schema: {
        tags,
        summary: '(admin) Delete a user with its keys, finished jobs and scaling rules; refused while it has pending or running jobs',
        params: UserIdParams,
        response: { 204: Type.Null(), 400: err, 401: err, 403: err, 404: err, 409: err },
      },
    },
    async (req, reply) => {
      const out = await ctx.store.deleteUser(req.params.id);
      if (out.kind === 'not_found') throw notFound('user');
      if (out.kind === 'admin') throw new HttpError(400, 'bad_request', 'the admin user cannot be deleted');
      if (out.kind === 'active') {
        throw new HttpError(409, 'conflict', `the user has ${out.jobs} pending or running job${out.jobs === 1 ? '' : 's'}: cancel them (or purge their groups) first`);
      }
      ctx.auth.forgetUser(req.params.id);
      return reply.code(204).send(null);
    },
  );
};
