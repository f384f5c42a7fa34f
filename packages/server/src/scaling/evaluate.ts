// The scaling rule, as a pure function: from a rule, the group's job counts and what the provider
// reports, what to do and why. Kelpie's rule, kept: desired = clamp(pending + running + jobs ended
// within the idle threshold, min, max); 0 stops the group, more starts a stopped one and sets its
// replicas. Drover's additions: jobs_per_replica, a scale-down cooldown, a backoff for starts that
// do not take, and never touching a group that is already on its way (deploying) to the size wanted.
import { backoffDelay, type Backoff } from '@drover/common';
import type { ScalingAction } from '@drover/protocol';
import type { GroupJobCounts } from '../store/scaling.js';
import type { ScalingRuleRow } from '../store/schema.js';

/** SaladCloud's ContainerGroupStatus; the local provider reports running or stopped. */
export type GroupStatus = 'pending' | 'running' | 'stopped' | 'succeeded' | 'failed' | 'deploying';

export interface GroupState {
  status: GroupStatus;
  /** the replica count the group is set to (SaladCloud's `replicas`, also when stopped) */
  replicas: number;
}

/** Statuses in which a group runs no instances and must be started to run any. */
const DOWN: readonly string[] = ['stopped', 'succeeded', 'failed'];
/** Whether a group in this status runs nothing (its replica setting stands, but it must be started). */
export const runsNothing = (status: string) => DOWN.includes(status);
/** Statuses in which a start is already under way. */
const COMING_UP: readonly GroupStatus[] = ['pending', 'deploying'];

export type Step = { kind: 'resize'; replicas: number } | { kind: 'start' } | { kind: 'stop' };

export interface Plan {
  desired: number;
  /** replicas running or coming up now (0 for a stopped group) */
  from: number;
  /** replicas once the steps are done */
  to: number;
  action: ScalingAction;
  steps: Step[];
  reason: string;
  /** when the plan should be looked at again because something it waits for ends (cooldown, start backoff) */
  recheckAt?: number;
}

/** Starts asked for in a row without the group reaching running wait this long before the next: 1 min doubling to 30 min. */
export const START_BACKOFF: Backoff = { baseMs: 60_000, maxMs: 30 * 60_000, jitter: 'none' };

type RuleSettings = Pick<
  ScalingRuleRow,
  'min_replicas' | 'max_replicas' | 'idle_threshold_seconds' | 'jobs_per_replica' | 'cooldown_seconds' | 'last_change' | 'start_attempts' | 'last_start'
>;

export function desiredReplicas(rule: RuleSettings, counts: GroupJobCounts): { desired: number; need: number; jobs: number } {
  const jobs = counts.pending + counts.running + counts.recentlyEnded;
  const need = Math.ceil(jobs / rule.jobs_per_replica);
  return { desired: Math.min(rule.max_replicas, Math.max(rule.min_replicas, need)), need, jobs };
}

/** "10 jobs (10 pending, 0 running, 0 ended in the last 300 s)" */
export function describeCounts(rule: RuleSettings, counts: GroupJobCounts): string {
  const jobs = counts.pending + counts.running + counts.recentlyEnded;
  return `${jobs} job${jobs === 1 ? '' : 's'} (${counts.pending} pending, ${counts.running} running, ${counts.recentlyEnded} ended in the last ${rule.idle_threshold_seconds} s)`;
}

export function plan(rule: RuleSettings, counts: GroupJobCounts, group: GroupState, now: number, startBackoff: Backoff = START_BACKOFF): Plan {
  const { desired, need } = desiredReplicas(rule, counts);
  const down = runsNothing(group.status);
  const from = down ? 0 : group.replicas;
  const why = `${describeCounts(rule, counts)}${rule.jobs_per_replica > 1 ? ` at ${rule.jobs_per_replica} per replica` : ''} need ${need}` +
    (need > rule.max_replicas ? ` (max_replicas ${rule.max_replicas})` : need < rule.min_replicas ? ` (min_replicas ${rule.min_replicas})` : '');
  const none = (reason: string, recheckAt?: number): Plan => ({
    desired,
    from,
    to: from,
    action: 'none',
    steps: [],
    reason: `${why}: ${reason}`,
    ...(recheckAt !== undefined ? { recheckAt } : {}),
  });

  // Scale-downs wait for the cooldown; scale-ups never do.
  const cooldownEnds = rule.last_change === null ? 0 : rule.last_change + rule.cooldown_seconds * 1000;
  const shrinking = desired < from;
  if (shrinking && now < cooldownEnds) {
    return none(`scaling down from ${from} waits for the cooldown (${rule.cooldown_seconds} s after the last change), until ${new Date(cooldownEnds).toISOString()}`, cooldownEnds);
  }

  if (desired === 0) {
    if (down) return none(`the group is ${group.status}`);
    return { desired, from, to: 0, action: 'stop', steps: [{ kind: 'stop' }], reason: `${why}: stop the group` };
  }

  const steps: Step[] = [];
  if (group.replicas !== desired) steps.push({ kind: 'resize', replicas: desired });
  if (down) {
    const wait = rule.start_attempts > 0 && rule.last_start !== null ? backoffDelay(startBackoff, rule.start_attempts) : 0;
    const next = (rule.last_start ?? 0) + wait;
    if (now < next) {
      return none(
        `the group is ${group.status} after ${rule.start_attempts} start${rule.start_attempts === 1 ? '' : 's'} that did not bring it up; the next start waits until ${new Date(next).toISOString()}`,
        next,
      );
    }
    steps.push({ kind: 'start' });
    return {
      desired,
      from,
      to: desired,
      action: 'start',
      steps,
      reason: `${why}: ${steps.length > 1 ? `set ${replicas(desired)} and start the group` : `start the group (${replicas(desired)})`}`,
    };
  }
  if (steps.length === 0) {
    return none(COMING_UP.includes(group.status) ? `the group is ${group.status} with ${replicas(desired)}: waiting for it` : `the group runs ${desired} already`);
  }
  return {
    desired,
    from,
    to: desired,
    action: 'resize',
    steps,
    reason: `${why}: ${desired > from ? 'scale up' : 'scale down'} from ${from} to ${desired}${COMING_UP.includes(group.status) ? ` (the group is ${group.status})` : ''}`,
  };
}

const replicas = (n: number) => `${n} replica${n === 1 ? '' : 's'}`;

/**
 * When the desired count can next change without any new job: the oldest ended job still counted
 * leaves the idle window (an evaluation then sees one job fewer).
 */
export function windowExpiry(rule: Pick<ScalingRuleRow, 'idle_threshold_seconds'>, counts: GroupJobCounts): number | undefined {
  return counts.oldestRecentEnd === undefined ? undefined : counts.oldestRecentEnd + rule.idle_threshold_seconds * 1000;
}
