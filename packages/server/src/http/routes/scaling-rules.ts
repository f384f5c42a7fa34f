// Autoscaling rules as their owner sees them (Kelpie's /scaling-rules: create 201, list {_count,
// rules}, get, patch, delete 204), plus Drover's decision log. Like jobs, every rule belongs to one
// user: another user's rule is 404 on every route.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ContainerGroupParams,
  CreateScalingRuleBody,
  ErrorBody,
  PatchScalingRuleBody,
  SCALING_DEFAULTS,
  ScalingDecisionList,
  ScalingDecisionsQuery,
  ScalingRule,
  ScalingRuleList,
  type ScalingAction,
  type ScalingDecision,
  type ScalingOutcome,
  type ScalingProviderName,
  type ScalingRule as ScalingRuleDoc,
  type ScalingTrigger,
} from '@drover/protocol';
import { runsNothing } from '../../scaling/evaluate.js';
import { SALAD_GROUP_TAKEN_REASON, type ScalingRuleChanges } from '../../store/scaling.js';
import type { ScalingDecisionRow, ScalingRuleRow } from '../../store/schema.js';
import type { AppContext } from '../app.js';
import { HttpError, notFound } from '../errors.js';

const err = Type.Ref(ErrorBody);
const tags = ['scaling-rules'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const bad = (message: string) => new HttpError(400, 'bad_request', message);
const noRule = (groupId: string) => notFound(`scaling rule for container group ${JSON.stringify(groupId)}`);
/** One enabled rule drives a SaladCloud container group: two would resize it against each other. */
const groupTaken = (groupId: string) =>
  new HttpError(409, 'conflict', `body/container_group_id ${JSON.stringify(groupId)}: ${SALAD_GROUP_TAKEN_REASON} (one enabled rule per group); a disabled rule (enabled: false) may be kept`);

export function toScalingRuleDocument(r: ScalingRuleRow): ScalingRuleDoc {
  return {
    container_group_id: r.container_group_id,
    min_replicas: r.min_replicas,
    max_replicas: r.max_replicas,
    idle_threshold_seconds: r.idle_threshold_seconds,
    user_id: r.user_id,
    created: new Date(r.created).toISOString(),
    updated: new Date(r.updated).toISOString(),
    org_name: r.org_name,
    project_name: r.project_name,
    container_group_name: r.container_group_name,
    provider: r.provider as ScalingProviderName,
    jobs_per_replica: r.jobs_per_replica,
    cooldown_seconds: r.cooldown_seconds,
    enabled: r.enabled === 1,
    disabled_reason: r.disabled_reason,
    // Running or coming up: a stopped group keeps its replica setting but runs none.
    replicas: r.replicas === null ? null : r.provider_status !== null && runsNothing(r.provider_status) ? 0 : r.replicas,
    provider_status: r.provider_status,
    evaluated: iso(r.evaluated),
  };
}

export function toScalingDecisionDocument(d: ScalingDecisionRow): ScalingDecision {
  return {
    id: d.id,
    container_group_id: d.container_group_id,
    at: new Date(d.at).toISOString(),
    trigger: d.trigger as ScalingTrigger,
    provider: d.provider as ScalingProviderName,
    pending: d.pending,
    running: d.running,
    recently_ended: d.recently_ended,
    desired: d.desired,
    from: d.from_replicas,
    to: d.to_replicas,
    action: d.action as ScalingAction,
    outcome: d.outcome as ScalingOutcome,
    reason: d.reason,
    error: d.error,
    coordinator: d.coordinator,
  };
}

export const scalingRuleRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  const autoscaler = ctx.scaling.autoscaler;
  const defaults = ctx.scaling.saladcloud ?? {};

  /** The rule's provider settings, checked and completed; `body` is what the request named. */
  const target = (userId: string, body: Partial<CreateScalingRuleBody>, merged: Pick<ScalingRuleRow, 'container_group_id' | 'provider' | 'org_name' | 'project_name' | 'container_group_name'>) => {
    const provider = merged.provider as ScalingProviderName;
    const refused = autoscaler.refuse(provider, userId);
    if (refused) throw bad(`body/provider ${provider}: ${refused}`);
    if (provider !== 'saladcloud') {
      for (const f of ['org_name', 'project_name', 'container_group_name'] as const) {
        if (body[f] !== undefined) throw bad(`body/${f} is for provider saladcloud only (this rule's provider is ${provider})`);
      }
      return { org_name: merged.org_name, project_name: merged.project_name, container_group_name: merged.container_group_name };
    }
    if (!UUID.test(merged.container_group_id)) {
      throw bad(`body/container_group_id must be the SaladCloud container group's id (a UUID) for provider saladcloud, got ${JSON.stringify(merged.container_group_id)}`);
    }
    const org_name = merged.org_name ?? defaults.organization ?? null;
    const project_name = merged.project_name ?? defaults.project ?? null;
    if (org_name === null) throw bad('body/org_name is required for provider saladcloud (or start the coordinator with --salad-organization)');
    if (project_name === null) throw bad('body/project_name is required for provider saladcloud (or start the coordinator with --salad-project)');
    return { org_name, project_name, container_group_name: merged.container_group_name };
  };

  /** `named`: which of the two the request gave; the other is the rule's (or, creating, the default). */
  const minMax = (min: number, max: number, named: { min: boolean; max: boolean }, creating = false) => {
    if (min <= max) return;
    const field = (f: string, v: number, given: boolean) => `${given ? 'body/' : creating ? 'the default ' : "the rule's "}${f} (${v})`;
    throw bad(`${field('min_replicas', min, named.min)} must not be greater than ${field('max_replicas', max, named.max)}`);
  };

  const changed = (userId: string, groupId: string) =>
    void autoscaler.ruleChanged(userId, groupId).catch((e: Error) => app.log.error({ err: e }, 'autoscaler: a rule change was not picked up'));

  app.post(
    '/scaling-rules',
    {
      schema: {
        tags,
        summary: 'Create a scaling rule for a container group',
        description:
          'Kelpie\'s four fields (container_group_id, min_replicas, max_replicas, idle_threshold_seconds) and Drover\'s: the provider, ' +
          'the SaladCloud group (org_name, project_name, container_group_name), jobs_per_replica, cooldown_seconds, enabled. ' +
          '409 if the group has a rule already (PATCH it), or if another user\'s enabled rule drives the same SaladCloud container group.',
        body: Type.Ref(CreateScalingRuleBody),
        response: { 201: Type.Ref(ScalingRule), 400: err, 401: err, 403: err, 409: err },
      },
    },
    async (req, reply) => {
      const body = req.body as CreateScalingRuleBody;
      const provider = body.provider ?? autoscaler.defaultProvider(req.user.id);
      const min = body.min_replicas ?? SCALING_DEFAULTS.min_replicas;
      const max = body.max_replicas ?? SCALING_DEFAULTS.max_replicas;
      minMax(min, max, { min: body.min_replicas !== undefined, max: body.max_replicas !== undefined }, true);
      const where = target(req.user.id, body, {
        container_group_id: body.container_group_id,
        provider,
        org_name: body.org_name ?? null,
        project_name: body.project_name ?? null,
        container_group_name: body.container_group_name ?? null,
      });
      const created = await ctx.store.scaling.createRule(
        {
          user_id: req.user.id,
          container_group_id: body.container_group_id,
          min_replicas: min,
          max_replicas: max,
          idle_threshold_seconds: body.idle_threshold_seconds ?? SCALING_DEFAULTS.idle_threshold_seconds,
          jobs_per_replica: body.jobs_per_replica ?? SCALING_DEFAULTS.jobs_per_replica,
          cooldown_seconds: body.cooldown_seconds ?? SCALING_DEFAULTS.cooldown_seconds,
          provider,
          ...where,
          enabled: body.enabled ?? SCALING_DEFAULTS.enabled,
        },
        ctx.now(),
      );
      if (created.kind === 'exists') {
        throw new HttpError(409, 'conflict', `container group ${JSON.stringify(body.container_group_id)} has a scaling rule already: PATCH /scaling-rules/${encodeURIComponent(body.container_group_id)} to change it`);
      }
      if (created.kind === 'group_taken') throw groupTaken(body.container_group_id);
      changed(req.user.id, created.rule.container_group_id);
      return reply.code(201).send(toScalingRuleDocument(created.rule));
    },
  );

  app.get(
    '/scaling-rules',
    {
      schema: { tags, summary: 'List your scaling rules', response: { 200: Type.Ref(ScalingRuleList), 401: err, 403: err } },
    },
    async (req) => {
      const rows = await ctx.store.scaling.listRules(req.user.id);
      return { _count: rows.length, rules: rows.map(toScalingRuleDocument) };
    },
  );

  app.get(
    '/scaling-rules/:container_group_id',
    {
      schema: {
        tags,
        summary: 'Get the scaling rule of a container group',
        params: ContainerGroupParams,
        response: { 200: Type.Ref(ScalingRule), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const row = await ctx.store.scaling.getRule(req.user.id, req.params.container_group_id);
      if (!row) throw noRule(req.params.container_group_id);
      return toScalingRuleDocument(row);
    },
  );

  app.patch(
    '/scaling-rules/:container_group_id',
    {
      schema: {
        tags,
        summary: 'Change a scaling rule',
        description: 'Only the fields given change. `enabled: true` re-enables a rule the autoscaler disabled (its `disabled_reason` is cleared).',
        params: ContainerGroupParams,
        body: Type.Ref(PatchScalingRuleBody),
        response: { 200: Type.Ref(ScalingRule), 400: err, 401: err, 403: err, 404: err, 409: err },
      },
    },
    async (req) => {
      const groupId = req.params.container_group_id;
      const body = (req.body ?? {}) as PatchScalingRuleBody;
      if (body.container_group_id !== undefined && body.container_group_id !== groupId) {
        throw bad(`body/container_group_id must be the path's (${JSON.stringify(groupId)}): a rule cannot move to another group`);
      }
      const current = await ctx.store.scaling.getRule(req.user.id, groupId);
      if (!current) throw noRule(groupId);
      minMax(body.min_replicas ?? current.min_replicas, body.max_replicas ?? current.max_replicas, {
        min: body.min_replicas !== undefined,
        max: body.max_replicas !== undefined,
      });
      const retarget = (['provider', 'org_name', 'project_name', 'container_group_name'] as const).some((f) => body[f] !== undefined);
      const moved = (body.org_name !== undefined && body.org_name !== current.org_name) || (body.project_name !== undefined && body.project_name !== current.project_name);
      const where = retarget
        ? target(req.user.id, body, {
            container_group_id: groupId,
            provider: body.provider ?? current.provider,
            org_name: body.org_name ?? current.org_name,
            project_name: body.project_name ?? current.project_name,
            // Another organization or project: the name is looked up again, unless given.
            container_group_name: body.container_group_name ?? (moved ? null : current.container_group_name),
          })
        : {};
      const { container_group_id: _id, enabled, ...settings } = body;
      const changes: ScalingRuleChanges = {
        ...settings,
        ...where,
        ...(enabled !== undefined ? { enabled, disabled_reason: null } : {}),
      };
      const result = await ctx.store.scaling.updateRule(req.user.id, groupId, changes, ctx.now());
      if (result.kind === 'not_found') throw noRule(groupId);
      if (result.kind === 'group_taken') throw groupTaken(groupId);
      if (result.kind === 'min_above_max') {
        minMax(body.min_replicas ?? result.rule.min_replicas, body.max_replicas ?? result.rule.max_replicas, {
          min: body.min_replicas !== undefined,
          max: body.max_replicas !== undefined,
        });
      }
      if (result.kind !== 'applied') throw bad('min_replicas must not be greater than max_replicas');
      changed(req.user.id, groupId);
      return toScalingRuleDocument(result.rule);
    },
  );

  app.delete(
    '/scaling-rules/:container_group_id',
    {
      schema: {
        tags,
        summary: 'Delete a scaling rule (and its decisions); the group is left as it is',
        description: '204 also when there was no such rule, as Kelpie answers.',
        params: ContainerGroupParams,
        response: { 204: Type.Null(), 400: err, 401: err, 403: err },
      },
    },
    async (req, reply) => {
      await ctx.store.scaling.deleteRule(req.user.id, req.params.container_group_id);
      changed(req.user.id, req.params.container_group_id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/scaling-rules/:container_group_id/decisions',
    {
      schema: {
        tags,
        summary: '(Drover) The decisions taken on a rule, newest first: inputs, from, to, action, outcome and why',
        params: ContainerGroupParams,
        querystring: ScalingDecisionsQuery,
        response: { 200: Type.Ref(ScalingDecisionList), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const rows = await ctx.store.scaling.listDecisions(req.user.id, req.params.container_group_id, req.query.limit, req.query.before);
      if (!rows) throw noRule(req.params.container_group_id);
      return { _count: rows.length, decisions: rows.map(toScalingDecisionDocument) };
    },
  );

  app.delete(
    '/scaling-rules',
    {
      config: { admin: true },
      schema: { tags, summary: '(admin) Delete every scaling rule of every user', response: { 204: Type.Null(), 401: err, 403: err } },
    },
    async (_req, reply) => {
      await ctx.store.scaling.clearRules();
      return reply.code(204).send(null);
    },
  );
};
