// Autoscaling's persistence, on both databases: scaling rules (per user and container group), the
// decisions taken on them, the per-group lease that lets one coordinator act at a time, and the job
// counts a decision is made from. Every write the autoscaler makes is fenced by its lease: a
// coordinator that lost the lease (it stalled, another took over) changes nothing.
import { sql, type ExpressionBuilder, type Insertable, type Kysely, type Transaction } from 'kysely';
import type { Database, ScalingDecisionRow, ScalingDecisionsTable, ScalingRuleRow } from './schema.js';
import { SALAD_GROUP_INDEX } from './migrations.js';

export { SALAD_GROUP_TAKEN_REASON } from './migrations.js';

/** Decisions kept per rule; older ones are dropped as new ones are written. */
export const DECISIONS_KEPT = 1000;

/** A rule as created: every setting decided (defaults applied by the caller). */
export type NewScalingRule = Pick<
  ScalingRuleRow,
  | 'user_id'
  | 'container_group_id'
  | 'min_replicas'
  | 'max_replicas'
  | 'idle_threshold_seconds'
  | 'jobs_per_replica'
  | 'cooldown_seconds'
  | 'provider'
  | 'org_name'
  | 'project_name'
  | 'container_group_name'
> & { enabled: boolean };

/** What a user may change; `disabled_reason` goes with `enabled`. */
export type ScalingRuleChanges = Partial<Omit<NewScalingRule, 'user_id' | 'container_group_id'>> & { disabled_reason?: string | null };

export type RuleUpdate =
  | { kind: 'applied'; rule: ScalingRuleRow }
  | { kind: 'not_found' }
  /** the changes would leave min_replicas above max_replicas (another change came first) */
  | { kind: 'min_above_max'; rule: ScalingRuleRow }
  /** the rule would drive a SaladCloud container group that another user's enabled rule drives */
  | { kind: 'group_taken' };

export type RuleCreation =
  | { kind: 'created'; rule: ScalingRuleRow }
  /** the user has a rule for this group already */
  | { kind: 'exists' }
  | { kind: 'group_taken' };

/** Whether `err` is the refusal of SALAD_GROUP_INDEX (one enabled rule per SaladCloud group), on either database. */
function groupTaken(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string; message?: string };
  if (e.code === '23505') return e.constraint === SALAD_GROUP_INDEX;
  return e.code === 'SQLITE_CONSTRAINT_UNIQUE' && /: scaling_rules\.container_group_id$/.test(e.message ?? '');
}

/** A held lease: who, on which group, and the fence its writes carry. */
export interface ScalingLease {
  userId: string;
  groupId: string;
  holder: string;
  fence: number;
}

export interface GroupJobCounts {
  pending: number;
  running: number;
  /** jobs that ended (completed, failed, canceled) at or after `endedSince` */
  recentlyEnded: number;
  /** the earliest end among those: when it leaves the window the count drops */
  oldestRecentEnd: number | undefined;
}

/** A decision as written: every column but its key and its group (the lease's). */
export type NewScalingDecision = Omit<Insertable<ScalingDecisionsTable>, 'id' | 'user_id' | 'container_group_id'>;

/** The decision's end: its outcome, and what the autoscaler now knows of the group. */
export interface DecisionResult {
  outcome: string;
  to_replicas: number | null;
  reason?: string;
  error?: string | null;
}

/** The autoscaler's view of the group, kept on the rule. */
export interface ScalingRuleState {
  replicas: number | null;
  provider_status: string | null;
  /** when the decision began (absent while it is still pending: it has not answered anything yet) */
  evaluated?: number;
  last_change?: number | null;
  start_attempts?: number;
  last_start?: number | null;
}

/**
 * Changes the autoscaler makes to the rule's settings (the SaladCloud name it found, disabling a
 * rule whose group is gone): applied only if the user has not changed the rule since it was read
 * (`updated`), so they never undo a user's edit.
 */
export interface ScalingRuleAmendment {
  updated: number;
  container_group_name?: string;
  enabled?: false;
  disabled_reason?: string;
}

const ended = sql<number | null>`coalesce(completed, failed, canceled)`;

type GroupTable = 'scaling_rules' | 'scaling_decisions' | 'scaling_leases';
/** The rows of one user's group (every scaling table is keyed by both). */
const ofGroup = (userId: string, groupId: string) => (eb: ExpressionBuilder<Database, GroupTable>) =>
  eb.and([eb('user_id', '=', userId), eb('container_group_id', '=', groupId)]);
/** The lease row while `lease` still holds it (same holder, same fence). */
const heldAs = (lease: ScalingLease) => (eb: ExpressionBuilder<Database, 'scaling_leases'>) =>
  eb.and([eb('user_id', '=', lease.userId), eb('container_group_id', '=', lease.groupId), eb('holder', '=', lease.holder), eb('fence', '=', lease.fence)]);

export class ScalingStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: 'sqlite' | 'postgres',
  ) {}

  /** Inserts the rule, unless the user has one for that group or it would drive a SaladCloud group another rule drives. */
  async createRule(rule: NewScalingRule, now: number): Promise<RuleCreation> {
    try {
      const row = await this.db
        .insertInto('scaling_rules')
        .values({ ...rule, enabled: rule.enabled ? 1 : 0, created: now, updated: now, disabled_reason: null, start_attempts: 0 })
        .onConflict((oc) => oc.columns(['user_id', 'container_group_id']).doNothing())
        .returningAll()
        .executeTakeFirst();
      return row ? { kind: 'created', rule: row } : { kind: 'exists' };
    } catch (err) {
      if (groupTaken(err)) return { kind: 'group_taken' };
      throw err;
    }
  }

  getRule(userId: string, groupId: string): Promise<ScalingRuleRow | undefined> {
    return this.db
      .selectFrom('scaling_rules')
      .selectAll()
      .where(ofGroup(userId, groupId))
      .executeTakeFirst();
  }

  listRules(userId: string): Promise<ScalingRuleRow[]> {
    return this.db.selectFrom('scaling_rules').selectAll().where('user_id', '=', userId).orderBy('container_group_id').execute();
  }

  /** Every enabled rule of every user driving one of `providers`: what an autoscaler evaluates. */
  listActiveRules(providers: readonly string[]): Promise<ScalingRuleRow[]> {
    if (providers.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom('scaling_rules')
      .selectAll()
      .where('enabled', '=', 1)
      .where('provider', 'in', providers)
      .orderBy('user_id')
      .orderBy('container_group_id')
      .execute();
  }

  /** One guarded statement: the merged min/max are checked in the UPDATE itself, so concurrent edits cannot cross them. */
  async updateRule(userId: string, groupId: string, changes: ScalingRuleChanges, now: number): Promise<RuleUpdate> {
    const { enabled, ...rest } = changes;
    const set = { ...rest, ...(enabled !== undefined ? { enabled: enabled ? 1 : 0 } : {}), updated: now };
    const min = changes.min_replicas ?? sql.ref('min_replicas');
    const max = changes.max_replicas ?? sql.ref('max_replicas');
    let row: ScalingRuleRow | undefined;
    try {
      row = await this.db
        .updateTable('scaling_rules')
        .set(set)
        .where(ofGroup(userId, groupId))
        .where(sql<boolean>`${min} <= ${max}`)
        .returningAll()
        .executeTakeFirst();
    } catch (err) {
      if (groupTaken(err)) return { kind: 'group_taken' };
      throw err;
    }
    if (row) return { kind: 'applied', rule: row };
    const current = await this.getRule(userId, groupId);
    return current ? { kind: 'min_above_max', rule: current } : { kind: 'not_found' };
  }

  /** Deletes the rule and its decisions; whether there was one. */
  async deleteRule(userId: string, groupId: string): Promise<boolean> {
    const r = await this.db
      .deleteFrom('scaling_rules')
      .where(ofGroup(userId, groupId))
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  /** Admin: every rule of every user. */
  async clearRules(): Promise<void> {
    await this.db.deleteFrom('scaling_rules').execute();
  }

  /** The inputs of a decision: the group's pending and running jobs, and those that ended at or after `endedSince`. */
  async countJobs(userId: string, groupId: string, endedSince: number): Promise<GroupJobCounts> {
    const of = (status: string) => sql<number>`(select count(*) from jobs where user_id = ${userId} and container_group_id = ${groupId} and status = ${status})`;
    const since = sql`user_id = ${userId} and container_group_id = ${groupId} and ${ended} >= ${endedSince}`;
    const { rows } = await sql<{ pending: number; running: number; ended: number; oldest: number | null }>`
      select ${of('pending')} as pending, ${of('running')} as running,
        (select count(*) from jobs where ${since}) as ended,
        (select min(${ended}) from jobs where ${since}) as oldest`.execute(this.db);
    const r = rows[0]!;
    return {
      pending: Number(r.pending),
      running: Number(r.running),
      recentlyEnded: Number(r.ended),
      oldestRecentEnd: r.oldest === null ? undefined : Number(r.oldest),
    };
  }

  /**
   * Takes the group's lease for `ttlMs` if nobody holds it (or the holder's lease lapsed): one
   * upsert whose WHERE is the precondition. Returns the lease (with its new fence) or undefined.
   */
  async acquireLease(userId: string, groupId: string, holder: string, now: number, ttlMs: number): Promise<ScalingLease | undefined> {
    const row = await this.db
      .insertInto('scaling_leases')
      .values({ user_id: userId, container_group_id: groupId, holder, expires_at: now + ttlMs, fence: 1 })
      .onConflict((oc) =>
        oc
          .columns(['user_id', 'container_group_id'])
          .doUpdateSet({
            holder: (eb) => eb.ref('excluded.holder'),
            expires_at: (eb) => eb.ref('excluded.expires_at'),
            fence: sql<number>`scaling_leases.fence + 1`,
          })
          .where('scaling_leases.expires_at', '<=', now),
      )
      .returning('fence')
      .executeTakeFirst();
    return row ? { userId, groupId, holder, fence: Number(row.fence) } : undefined;
  }

  /** Who holds the group's lease and until when (also a lapsed or released one), if anyone ever did. */
  leaseHolder(userId: string, groupId: string): Promise<{ holder: string; expires_at: number } | undefined> {
    return this.db
      .selectFrom('scaling_leases')
      .select(['holder', 'expires_at'])
      .where(ofGroup(userId, groupId))
      .executeTakeFirst();
  }

  /** Extends a lease still held (same fence); false if it was lost. */
  async renewLease(lease: ScalingLease, now: number, ttlMs: number): Promise<boolean> {
    const r = await this.db
      .updateTable('scaling_leases')
      .set({ expires_at: now + ttlMs })
      .where(heldAs(lease))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Gives the lease up at once (the next decision need not wait for it to lapse). */
  async releaseLease(lease: ScalingLease): Promise<void> {
    await this.db
      .updateTable('scaling_leases')
      .set({ expires_at: 0 })
      .where(heldAs(lease))
      .execute();
  }

  /**
   * Writes a decision under the lease, and with it the rule's state; a decision that is still to be
   * carried out has outcome `pending` and is finished by finishDecision. Decisions some earlier
   * holder left `pending` (it died mid-decision) become `interrupted`. Returns the decision's id, or
   * undefined (nothing written) if the lease was lost.
   */
  async recordDecision(
    lease: ScalingLease,
    decision: NewScalingDecision,
    state: ScalingRuleState,
    amendment?: ScalingRuleAmendment,
  ): Promise<number | undefined> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await this.holds(trx, lease))) return undefined;
      await trx
        .updateTable('scaling_decisions')
        .set({ outcome: 'interrupted', error: 'the coordinator deciding stopped before it knew the outcome; the next decision read the group afresh' })
        .where(ofGroup(lease.userId, lease.groupId))
        .where('outcome', '=', 'pending')
        .execute();
      const row = await trx
        .insertInto('scaling_decisions')
        .values({ ...decision, user_id: lease.userId, container_group_id: lease.groupId })
        .returning('id')
        .executeTakeFirstOrThrow();
      await this.writeState(trx, lease, state, amendment);
      await this.prune(trx, lease);
      return Number(row.id);
    });
  }

  /** Sets a pending decision's outcome and the rule's state, under the lease; false if the lease was lost. */
  async finishDecision(lease: ScalingLease, id: number, result: DecisionResult, state: ScalingRuleState, amendment?: ScalingRuleAmendment): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await this.holds(trx, lease))) return false;
      await trx
        .updateTable('scaling_decisions')
        .set({
          outcome: result.outcome,
          to_replicas: result.to_replicas,
          ...(result.reason !== undefined ? { reason: result.reason } : {}),
          ...(result.error !== undefined ? { error: result.error } : {}),
        })
        .where('id', '=', id)
        .where('outcome', '=', 'pending')
        .execute();
      await this.writeState(trx, lease, state, amendment);
      return true;
    });
  }

  /** Only the rule's state (a decision that changed nothing is not recorded again); false if the lease was lost. */
  async updateState(lease: ScalingLease, state: ScalingRuleState): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await this.holds(trx, lease))) return false;
      await this.writeState(trx, lease, state);
      return true;
    });
  }

  /** A rule's decisions, newest first; undefined if the user has no such rule. */
  async listDecisions(userId: string, groupId: string, limit: number, before?: number): Promise<ScalingDecisionRow[] | undefined> {
    if (!(await this.getRule(userId, groupId))) return undefined;
    return this.db
      .selectFrom('scaling_decisions')
      .selectAll()
      .where(ofGroup(userId, groupId))
      .$if(before !== undefined, (qb) => qb.where('id', '<', before!))
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }

  /** The newest decision of a rule. */
  lastDecision(userId: string, groupId: string): Promise<ScalingDecisionRow | undefined> {
    return this.db
      .selectFrom('scaling_decisions')
      .selectAll()
      .where(ofGroup(userId, groupId))
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  private async holds(trx: Transaction<Database>, lease: ScalingLease): Promise<boolean> {
    // PostgreSQL: lock the lease row, so a new holder cannot take it between this check and the writes.
    const row = await trx
      .selectFrom('scaling_leases')
      .select('fence')
      .where(heldAs(lease))
      // (SQLite has one writer: the transaction already excludes everyone else.)
      .$if(this.dialect === 'postgres', (qb) => qb.forUpdate())
      .executeTakeFirst();
    return row !== undefined;
  }

  private async writeState(trx: Transaction<Database>, lease: ScalingLease, state: ScalingRuleState, amendment?: ScalingRuleAmendment): Promise<void> {
    await trx
      .updateTable('scaling_rules')
      .set(state)
      .where(ofGroup(lease.userId, lease.groupId))
      .execute();
    if (!amendment) return;
    const { updated, ...changes } = amendment;
    await trx
      .updateTable('scaling_rules')
      .set({
        ...(changes.container_group_name !== undefined ? { container_group_name: changes.container_group_name } : {}),
        ...(changes.enabled === false ? { enabled: 0, disabled_reason: changes.disabled_reason ?? null } : {}),
      })
      .where(ofGroup(lease.userId, lease.groupId))
      .where('updated', '=', updated)
      .execute();
  }

  private async prune(trx: Transaction<Database>, lease: ScalingLease): Promise<void> {
    const keep = await trx
      .selectFrom('scaling_decisions')
      .select('id')
      .where(ofGroup(lease.userId, lease.groupId))
      .orderBy('id', 'desc')
      .offset(DECISIONS_KEPT - 1)
      .limit(1)
      .executeTakeFirst();
    if (!keep) return;
    await trx
      .deleteFrom('scaling_decisions')
      .where(ofGroup(lease.userId, lease.groupId))
      .where('id', '<', keep.id)
      .execute();
  }
}
