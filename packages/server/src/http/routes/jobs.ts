// Jobs as their owner sees them: submit, batch, list, get, cancel, purge, events; admin clear.
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  PARENT_SEGMENT_MESSAGE,
  parentSegmentPaths,
  ContainerGroupParams,
  CountResponse,
  ErrorBody,
  JOB_DEFAULTS,
  Job,
  JobArray,
  JobBatch,
  JobDefinition,
  JobEventList,
  JobIdParams,
  JobList,
  ListJobsQuery,
  MessageResponse,
} from '@drover/protocol';
import type { NewJob, Outcome } from '../../store/types.js';
import { refuseWebhookUrl } from '../../webhooks/url-guard.js';
import type { AppContext } from '../app.js';
import { HttpError, notFound } from '../errors.js';
import { toJobDocument } from '../job-document.js';

const err = Type.Ref(ErrorBody);
const tags = ['jobs'];

function normalize(def: JobDefinition, allowPrivate: boolean, index?: number): NewJob {
  const climbing = parentSegmentPaths(def)[0];
  if (climbing !== undefined) throw new HttpError(400, 'bad_request', `body/${index === undefined ? '' : `${index}/`}${climbing} ${PARENT_SEGMENT_MESSAGE}`, index);
  if (def.webhook !== undefined) {
    const why = refuseWebhookUrl(def.webhook, allowPrivate);
    const where = index === undefined ? 'body/webhook' : `body/${index}/webhook`;
    if (why) throw new HttpError(400, 'bad_request', `${where} ${why}`, index);
  }
  return {
    id: randomUUID(),
    definition: {
      ...def,
      arguments: def.arguments ?? [],
      environment: def.environment ?? {},
      max_failures: def.max_failures ?? JOB_DEFAULTS.max_failures,
      heartbeat_interval: def.heartbeat_interval ?? JOB_DEFAULTS.heartbeat_interval,
      compression: def.compression ?? JOB_DEFAULTS.compression,
    },
  };
}

/** Turn a transition outcome into the answer, or throw the 404/409 it calls for. */
export function requireApplied(outcome: Outcome, conflict: (status: string) => string): void {
  switch (outcome.kind) {
    case 'applied':
    case 'repeat':
      return;
    case 'not_found':
      throw notFound();
    case 'finished':
      throw new HttpError(409, 'conflict', conflict(outcome.job.status));
    case 'not_holder':
      throw new HttpError(409, 'conflict', conflict(outcome.job.status));
  }
}

export const jobRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  app.post(
    '/jobs',
    {
      schema: {
        tags,
        summary: 'Queue a job',
        body: Type.Ref(JobDefinition),
        response: { 202: Type.Ref(Job), 400: err, 401: err, 403: err, 413: err },
      },
    },
    async (req, reply) => {
      const now = ctx.now();
      const [row] = await ctx.store.createJobs(req.user.id, [normalize(req.body, ctx.allowPrivateWebhooks)], now);
      const notice = await ctx.groupPolls.notice(req.user.id, row!.container_group_id, now);
      return reply.code(202).send(toJobDocument(row!, ctx.store.leaseFactor, notice));
    },
  );

  app.post(
    '/jobs/batch',
    {
      schema: {
        tags,
        summary: 'Queue several jobs, all or nothing',
        description: 'On a bad item nothing is queued and the answer is 400 with that item\'s `index`.',
        body: Type.Ref(JobBatch),
        response: { 202: Type.Ref(JobArray), 400: err, 401: err, 403: err, 413: err },
      },
    },
    async (req, reply) => {
      const jobs = req.body.map((d, i) => normalize(d, ctx.allowPrivateWebhooks, i));
      const now = ctx.now();
      const rows = await ctx.store.createJobs(req.user.id, jobs, now);
      const notices = new Map<string, string | undefined>();
      for (const g of new Set(rows.map((r) => r.container_group_id))) notices.set(g, await ctx.groupPolls.notice(req.user.id, g, now));
      return reply.code(202).send(rows.map((r) => toJobDocument(r, ctx.store.leaseFactor, notices.get(r.container_group_id))));
    },
  );

  app.get(
    '/jobs',
    {
      schema: {
        tags,
        summary: 'List your jobs',
        querystring: ListJobsQuery,
        response: { 200: Type.Ref(JobList), 400: err, 401: err, 403: err },
      },
    },
    async (req) => {
      const q = req.query;
      const rows = await ctx.store.listJobs({
        userId: req.user.id,
        ...(q.status ? { status: q.status } : {}),
        ...(q.container_group_id ? { groupId: q.container_group_id } : {}),
        limit: q.page_size,
        offset: (q.page - 1) * q.page_size,
        asc: q.asc,
      });
      return { _count: rows.length, jobs: rows.map((r) => toJobDocument(r, ctx.store.leaseFactor)) };
    },
  );

  app.get(
    '/jobs/:id',
    {
      schema: {
        tags,
        summary: 'Get a job',
        params: JobIdParams,
        response: { 200: Type.Ref(Job), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const row = await ctx.store.getJob(req.user.id, req.params.id);
      if (!row) throw notFound();
      const notice = row.status === 'pending' ? await ctx.groupPolls.notice(req.user.id, row.container_group_id, ctx.now()) : undefined;
      return toJobDocument(row, ctx.store.leaseFactor, notice);
    },
  );

  app.get(
    '/jobs/:id/events',
    {
      schema: {
        tags,
        summary: 'A job\'s history: creation, every claim (attempt), lease expiry, release, failure, outcome',
        params: JobIdParams,
        response: { 200: Type.Ref(JobEventList), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const events = await ctx.store.listEvents(req.user.id, req.params.id);
      if (!events) throw notFound();
      return {
        events: events.map((e) => ({
          id: e.id,
          job_id: e.job_id,
          at: new Date(e.at).toISOString(),
          type: e.type as never,
          machine_id: e.machine_id,
          attempt: e.attempt,
          ...(e.reason !== null ? { reason: e.reason } : {}),
        })),
      };
    },
  );

  app.delete(
    '/jobs/:id',
    {
      schema: {
        tags,
        summary: 'Cancel a job',
        description: 'The job becomes `canceled` for good; the machine running it learns so from its next heartbeat.',
        params: JobIdParams,
        response: { 202: Type.Ref(MessageResponse), 400: err, 401: err, 403: err, 404: err, 409: err },
      },
    },
    async (req, reply) => {
      const outcome = await ctx.store.cancelJob(req.user.id, req.params.id, ctx.now());
      ctx.metrics.transitions.inc({ transition: 'cancel', outcome: outcome.kind });
      requireApplied(outcome, (status) => `job is ${status} and can no longer be canceled`);
      if (outcome.kind === 'applied') {
        ctx.webhooks?.kick();
        ctx.scaling.autoscaler.poke(req.user.id, outcome.job.container_group_id);
      }
      return reply.code(202).send({ message: 'Job canceled' });
    },
  );

  app.delete(
    '/jobs/container-groups/:container_group_id',
    {
      schema: {
        tags,
        summary: 'Purge a container group: delete its pending jobs, cancel its running ones',
        params: ContainerGroupParams,
        response: { 200: Type.Ref(CountResponse), 400: err, 401: err, 403: err },
      },
    },
    async (req) => {
      const count = await ctx.store.purgeGroup(req.user.id, req.params.container_group_id, ctx.now());
      if (count > 0) {
        ctx.webhooks?.kick();
        ctx.scaling.autoscaler.poke(req.user.id, req.params.container_group_id);
      }
      return { count };
    },
  );

  app.delete(
    '/jobs',
    {
      config: { admin: true },
      schema: {
        tags,
        summary: '(admin) Delete every job of every user',
        response: { 204: Type.Null(), 401: err, 403: err },
      },
    },
    async (_req, reply) => {
      await ctx.store.clearJobs();
      return reply.code(204).send(null);
    },
  );
};
