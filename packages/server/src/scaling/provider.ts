// What the autoscaler drives. A provider reports a group's state and carries out the plan's steps;
// the decision itself (evaluate.ts) and its record are the autoscaler's.
import type { ScalingProviderName } from '@drover/protocol';
import type { ScalingRuleRow } from '../store/schema.js';
import type { GroupState } from './evaluate.js';

export type Observation =
  | {
      kind: 'found';
      state: GroupState;
      /** SaladCloud: the group's name, found by its id (kept on the rule) */
      containerGroupName?: string;
    }
  /** the group does not exist (any more): the rule is disabled with this reason */
  | { kind: 'gone'; reason: string };

/** A step failed because the group no longer exists. */
export class GroupGoneError extends Error {
  override readonly name = 'GroupGoneError';
}

export interface ScalingProvider {
  readonly name: ScalingProviderName;
  /** Why this user's rules cannot use the provider here, if they cannot. */
  refuse?(userId: string): string | undefined;
  observe(rule: ScalingRuleRow, signal: AbortSignal): Promise<Observation>;
  resize(rule: ScalingRuleRow, replicas: number, signal: AbortSignal): Promise<void>;
  start(rule: ScalingRuleRow, signal: AbortSignal): Promise<void>;
  stop(rule: ScalingRuleRow, signal: AbortSignal): Promise<void>;
}

/** `none`: decisions are made and recorded, nothing is changed; the group is what the last decision made it. */
export class RecordOnlyProvider implements ScalingProvider {
  readonly name = 'none' as const;

  async observe(rule: ScalingRuleRow): Promise<Observation> {
    const replicas = rule.replicas ?? 0;
    return { kind: 'found', state: { status: rule.provider_status === 'running' ? 'running' : 'stopped', replicas } };
  }
  async resize(): Promise<void> {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}
