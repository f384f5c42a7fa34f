// Container groups as their owner's dashboard sees them (Drover): queue depth, running machines,
// banned machines. A group exists for a user once one of their jobs names it.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ContainerGroupDetail, ContainerGroupList, ContainerGroupParams, ErrorBody, type ContainerGroupSummary } from '@drover/protocol';
import type { GroupSummaryRow } from '../../store/types.js';
import type { AppContext } from '../app.js';
import { notFound } from '../errors.js';

const err = Type.Ref(ErrorBody);
const tags = ['container groups'];
/** Most machines (running, banned) listed for one group. */
const LIST_MAX = 200;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function toGroupSummary(g: GroupSummaryRow, now: number): ContainerGroupSummary {
  return {
    container_group_id: g.container_group_id,
    jobs: g.jobs,
    queue_depth: g.queue_depth,
    running_machines: g.running_machines,
    banned_machines: g.banned_machines,
    oldest_heartbeat_age_s: g.oldest_heartbeat === null ? null : Math.max(0, (now - g.oldest_heartbeat) / 1000),
  };
}

export const groupRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  app.get(
    '/container-groups',
    {
      schema: {
        tags,
        summary: '(Drover) Your container groups: jobs by status, queue depth, running and banned machines',
        response: { 200: Type.Ref(ContainerGroupList), 401: err, 403: err },
      },
    },
    async (req) => {
      const now = ctx.now();
      const groups = await ctx.store.groupSummaries(req.user.id, now);
      return { groups: groups.map((g) => toGroupSummary(g, now)) };
    },
  );

  app.get(
    '/container-groups/:container_group_id',
    {
      schema: {
        tags,
        summary: '(Drover) One container group: its summary, the machines running its jobs, the machines banned from them',
        params: ContainerGroupParams,
        response: { 200: Type.Ref(ContainerGroupDetail), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const now = ctx.now();
      const id = req.params.container_group_id;
      const [summary] = await ctx.store.groupSummaries(req.user.id, now, id);
      if (!summary) throw notFound('container group');
      const [machines, banned] = await Promise.all([
        ctx.store.groupMachines(req.user.id, id, now, LIST_MAX),
        ctx.store.bannedMachines(req.user.id, id, LIST_MAX),
      ]);
      return {
        summary: toGroupSummary(summary, now),
        machines: machines.map((m) => ({ ...m, heartbeat: iso(m.heartbeat) })),
        banned: banned.map((b) => ({ ...b, last: new Date(b.last).toISOString() })),
      };
    },
  );
};
