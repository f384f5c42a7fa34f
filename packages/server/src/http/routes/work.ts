// The worker's side: claim work (optionally long-polling), heartbeat, report the outcome, release.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ErrorBody,
  FailedBody,
  HeartbeatBody,
  JobArray,
  JobIdParams,
  MachineBody,
  MessageResponse,
  StatusResponse,
  WorkQuery,
  type JobStatus,
} from '@drover/protocol';
import type { AppContext } from '../app.js';
import { notFound } from '../errors.js';
import { toJobDocument } from '../job-document.js';
import { requireApplied } from './jobs.js';

const err = Type.Ref(ErrorBody);
const tags = ['work'];

export const workRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  app.get(
    '/work',
    {
      schema: {
        tags,
        summary: 'Claim a job: an array of zero or one job',
        description:
          'Orphaned running jobs (lease lapsed or released) come first, then pending ones, oldest first; never a job ' +
          'this machine has failed. With `wait` (Drover) the answer comes as soon as a job is claimable, or `[]` after ' +
          '`wait` seconds.',
        querystring: WorkQuery,
        response: { 200: Type.Ref(JobArray), 400: err, 401: err, 403: err },
      },
      // A claim changes state: HEAD, which answers without the body, would lease a job no one sees.
      exposeHeadRoute: false,
    },
    async (req) => {
      const gone = new AbortController();
      const onClose = () => gone.abort();
      req.raw.once('close', onClose);
      try {
        const job = await ctx.scheduler.claim({
          userId: req.user.id,
          machineId: req.query.machine_id,
          groupId: req.query.container_group_id,
          waitSeconds: req.query.wait ?? 0,
          abort: gone.signal,
        });
        ctx.metrics.claims.inc({ result: job ? 'job' : 'none' });
        if (job?.webhook) ctx.webhooks?.kick();
        return job ? [toJobDocument(job, ctx.store.leaseFactor)] : [];
      } finally {
        req.raw.off('close', onClose);
      }
    },
  );

  app.post(
    '/jobs/:id/heartbeat',
    {
      schema: {
        tags,
        summary: 'Heartbeat: renews the lease of the machine holding the job',
        description:
          'Answers `running` to the holder, `canceled` to any other machine (stop the process and ask for new work), ' +
          'and the final status of a finished job. Drover: carries the app\'s `progress`.',
        params: JobIdParams,
        body: Type.Ref(HeartbeatBody),
        response: { 200: Type.Ref(StatusResponse), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const { machine_id, progress } = req.body as { machine_id: string; progress?: { fraction: number; message?: string } };
      const outcome = await ctx.store.heartbeat({
        userId: req.user.id,
        jobId: req.params.id,
        machineId: machine_id,
        now: ctx.now(),
        ...(progress ? { progress } : {}),
      });
      ctx.metrics.transitions.inc({ transition: 'heartbeat', outcome: outcome.kind });
      switch (outcome.kind) {
        case 'not_found':
          throw notFound();
        case 'applied':
          return { status: 'running' as JobStatus };
        case 'finished':
          return { status: outcome.job.status as JobStatus };
        default:
          return { status: 'canceled' as JobStatus };
      }
    },
  );

  const transition = (
    path: string,
    summary: string,
    code: 200 | 202,
    message: string,
    run: (ref: { userId: string; jobId: string; machineId: string; now: number; reason?: string }) => ReturnType<AppContext['store']['completeJob']>,
    conflict: (status: string) => string,
    body: typeof MachineBody | typeof FailedBody = MachineBody,
  ) =>
    app.post(
      path,
      {
        schema: {
          tags,
          summary,
          params: JobIdParams,
          body: Type.Ref(body),
          response: { [code]: Type.Ref(MessageResponse), 400: err, 401: err, 403: err, 404: err, 409: err },
        },
      },
      async (req, reply) => {
        const { machine_id, reason } = req.body as { machine_id: string; reason?: string };
        const outcome = await run({ userId: req.user.id, jobId: req.params.id, machineId: machine_id, now: ctx.now(), reason });
        ctx.metrics.transitions.inc({ transition: path.split('/').pop()!, outcome: outcome.kind });
        requireApplied(outcome, conflict);
        if (outcome.kind === 'applied' && outcome.job.webhook) ctx.webhooks?.kick();
        return reply.code(code).send({ message });
      },
    );

  const heldElsewhere = (status: string) =>
    status === 'running' || status === 'pending'
      ? 'this machine does not hold the job'
      : `job is already ${status}`;

  transition(
    '/jobs/:id/completed',
    'Report the job completed (only the machine holding it may)',
    200,
    'Completed reported',
    (r) => ctx.store.completeJob(r),
    heldElsewhere,
  );
  transition(
    '/jobs/:id/failed',
    'Report a failed attempt: the machine is banned from the job; at max_failures the job is failed. ' +
      'Drover: `reason` says why; it is kept in the job\'s events',
    202,
    'Failure reported',
    (r) => ctx.store.failJob(r),
    heldElsewhere,
    FailedBody,
  );
  transition(
    '/jobs/:id/release',
    '(Drover) Hand the job back without counting a failure, e.g. when the node is shutting down',
    202,
    'Job released',
    (r) => ctx.store.releaseJob(r),
    heldElsewhere,
  );
};
