// The dashboard's charts (Drover): jobs by status over time, and handovers with the work each
// one redid. Scoped to the caller's jobs.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, HandoverList, HandoverQuery, JobHistory, JobHistoryQuery, type Handover } from '@drover/protocol';
import type { HandoverRow } from '../../store/types.js';
import type { AppContext } from '../app.js';

const err = Type.Ref(ErrorBody);
const tags = ['stats'];

export function toHandover(h: HandoverRow): Handover {
  const redone = h.progress_before === null || h.progress_resumed === null ? null : Math.max(0, h.progress_before - h.progress_resumed);
  return {
    job_id: h.job_id,
    container_group_id: h.container_group_id,
    attempt: h.attempt,
    at: new Date(Number(h.at)).toISOString(),
    cause: h.cause as Handover['cause'],
    from_machine: h.from_machine,
    to_machine: h.to_machine,
    progress_before: h.progress_before,
    progress_resumed: h.progress_resumed,
    redone,
  };
}

export const statsRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  app.get(
    '/stats/jobs',
    {
      schema: {
        tags,
        summary: '(Drover) Your jobs in each status over time (the end of each of `buckets` intervals over the last `hours`)',
        querystring: JobHistoryQuery,
        response: { 200: Type.Ref(JobHistory), 400: err, 401: err, 403: err },
      },
    },
    async (req) => {
      const q = req.query;
      const history = await ctx.store.jobHistory(req.user.id, {
        end: ctx.now(),
        stepMs: (q.hours * 3_600_000) / q.buckets,
        buckets: q.buckets,
        ...(q.container_group_id ? { groupId: q.container_group_id } : {}),
      });
      return { times: history.times.map((t) => new Date(t).toISOString()), series: history.series };
    },
  );

  app.get(
    '/stats/handovers',
    {
      schema: {
        tags,
        summary: '(Drover) Jobs taken over by a new attempt, newest first: why, and how much work the new attempt did again',
        description: '`redone` is the progress the previous attempt had reported minus the progress the new one first reported.',
        querystring: HandoverQuery,
        response: { 200: Type.Ref(HandoverList), 400: err, 401: err, 403: err },
      },
    },
    async (req) => {
      const q = req.query;
      const rows = await ctx.store.listHandovers(req.user.id, {
        limit: q.limit,
        ...(q.container_group_id ? { groupId: q.container_group_id } : {}),
        ...(q.job_id ? { jobId: q.job_id } : {}),
      });
      return { handovers: rows.map(toHandover) };
    },
  );
};
