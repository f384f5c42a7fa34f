// The worker's side: claim work (optionally long-polling), heartbeat, report the outcome, release.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ErrorBody,
  FailedBody,
  HeartbeatBody,
  JobArray,
  JobIdParams,
  CompletedBody,
  MachineBody,
  MessageResponse,
  StatusResponse,
  WorkQuery,
  type JobStatus,
} from '@drover/protocol';
import type { JobRow, MachineRef, Outcome } from '../../store/types.js';
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
      ctx.groupPolls.seen(req.user.id, req.query.container_group_id, ctx.now());
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
        if (job && job.attempt > 1) await noteHandover(job);
        return job ? [toJobDocument(job, ctx.store.leaseFactor)] : [];
      } finally {
        req.raw.off('close', onClose);
      }
    },
  );

  /** A claim took over a job from an earlier attempt: count it and keep it for the dashboard's chart. */
  const noteHandover = async (job: JobRow): Promise<void> => {
    try {
      const handover = await ctx.store.recordHandover(job, ctx.now());
      if (!handover) return;
      ctx.metrics.handovers.inc({ cause: handover.cause });
      if (handover.cause === 'lease_expired') ctx.metrics.leaseLapses.inc();
    } catch (e) {
      // Statistics only: the claim itself is committed and answered either way.
      app.log.warn({ err: (e as Error).message, job: job.id }, 'could not record a handover');
    }
  };

  /** (job, attempt) whose first progress after a handover is already recorded: one write per attempt, not per heartbeat. */
  const resumed = new Set<string>();
  const noteResume = async (jobId: string, attempt: number, fraction: number): Promise<void> => {
    const key = `${jobId}#${attempt}`;
    if (resumed.has(key)) return;
    if (resumed.size >= 100_000) resumed.clear();
    resumed.add(key);
    try {
      const redone = await ctx.store.recordResume(jobId, attempt, fraction);
      if (redone !== undefined) ctx.metrics.redone.observe(redone);
    } catch (e) {
      resumed.delete(key);
      app.log.warn({ err: (e as Error).message, job: jobId }, 'could not record where a job resumed');
    }
  };

  /** The reporting machine and its job, as the store's transitions take them. */
  const holder = (req: { user: { id: string }; params: { id: string }; body: MachineBody }): MachineRef => ({
    userId: req.user.id,
    jobId: req.params.id,
    machineId: req.body.machine_id,
    now: ctx.now(),
  });

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
      const { progress } = req.body;
      const outcome = await ctx.store.heartbeat({ ...holder(req), ...(progress ? { progress } : {}) });
      ctx.metrics.transitions.inc({ transition: 'heartbeat', outcome: outcome.kind });
      switch (outcome.kind) {
        case 'not_found':
          throw notFound();
        case 'applied':
          if (progress && outcome.job.attempt > 1) await noteResume(outcome.job.id, outcome.job.attempt, progress.fraction);
          return { status: 'running' as JobStatus };
        case 'finished':
          return { status: outcome.job.status as JobStatus };
        default:
          return { status: 'canceled' as JobStatus };
      }
    },
  );

  // Completed, failed and release: holder-only transitions sharing their schema and their answer.
  const reportSchema = <B extends typeof MachineBody | typeof CompletedBody | typeof FailedBody>(summary: string, code: 200 | 202, body: B) => ({
    tags,
    summary,
    params: JobIdParams,
    body: Type.Ref(body),
    response: { [code]: Type.Ref(MessageResponse), 400: err, 401: err, 403: err, 404: err, 409: err },
  });

  /** Count the outcome, refuse with 404/409 unless it applied (or repeated), send the webhooks it owes. */
  const settle = (transition: 'completed' | 'failed' | 'release', outcome: Outcome, userId: string): void => {
    ctx.metrics.transitions.inc({ transition, outcome: outcome.kind });
    requireApplied(outcome, (status) =>
      status === 'running' || status === 'pending' ? 'this machine does not hold the job' : `job is already ${status}`,
    );
    if (outcome.kind === 'applied' && outcome.job.webhook) ctx.webhooks?.kick();
    // A job that ended starts its idle window: the autoscaler times the scale-down from it.
    if (outcome.kind === 'applied') ctx.scaling.autoscaler.poke(userId, outcome.job.container_group_id);
  };

  app.post(
    '/jobs/:id/completed',
    { schema: reportSchema("Report the job completed (only the machine holding it may). Drover: may carry the app's last `progress`", 200, CompletedBody) },
    async (req, reply) => {
      const { progress } = req.body;
      settle('completed', await ctx.store.completeJob({ ...holder(req), ...(progress ? { progress } : {}) }), req.user.id);
      return reply.code(200).send({ message: 'Completed reported' });
    },
  );

  app.post(
    '/jobs/:id/failed',
    {
      schema: reportSchema(
        'Report a failed attempt: the machine is banned from the job; at max_failures the job is failed. ' +
          'Drover: `reason` says why; it is kept in the job\'s events',
        202,
        FailedBody,
      ),
    },
    async (req, reply) => {
      const outcome = await ctx.store.failJob({ ...holder(req), reason: req.body.reason });
      settle('failed', outcome, req.user.id);
      if (outcome.kind === 'applied') ctx.metrics.failures.inc({ final: String(outcome.job.status === 'failed') });
      return reply.code(202).send({ message: 'Failure reported' });
    },
  );

  app.post(
    '/jobs/:id/release',
    { schema: reportSchema('(Drover) Hand the job back without counting a failure, e.g. when the node is shutting down', 202, MachineBody) },
    async (req, reply) => {
      settle('release', await ctx.store.releaseJob(holder(req)), req.user.id);
      return reply.code(202).send({ message: 'Job released' });
    },
  );
};
