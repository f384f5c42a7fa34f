// SaladCloud container groups, through @drover/saladcloud. Kelpie's container_group_id is the
// group's id, while the public API addresses a group by organization, project and name: a rule
// without a name has it found by id in the project's list (once; it is kept on the rule), and a
// named group whose id is not the rule's is refused rather than scaled by another group's queue.
import { SaladCloudClient, SaladCloudError, type ContainerGroupRef } from '@drover/saladcloud';
import type { ScalingRuleRow } from '../../store/schema.js';
import { GroupGoneError, type Observation, type ScalingProvider } from '../provider.js';

export interface SaladCloudSettings {
  /** SALAD_API_KEY: used in the API's header only, never logged, never stored, never answered */
  apiKey: string;
  /** default https://api.salad.com/api/public */
  baseUrl?: string;
  /** defaults for rules that name none */
  organization?: string;
  project?: string;
  requestsPerMinute?: number;
  /** told of every retry (429, 5xx): for the log; never carries the key */
  onRetry?: (info: { operation: string; attempt: number; delayMs: number; status: number; message: string }) => void;
}

export class SaladCloudProvider implements ScalingProvider {
  readonly name = 'saladcloud' as const;
  private readonly client: SaladCloudClient;

  constructor(settings: SaladCloudSettings, userAgent: string) {
    this.client = new SaladCloudClient({
      apiKey: settings.apiKey,
      ...(settings.baseUrl ? { baseUrl: settings.baseUrl } : {}),
      ...(settings.requestsPerMinute ? { requestsPerMinute: settings.requestsPerMinute } : {}),
      userAgent,
      onRetry: (r) => settings.onRetry?.({ operation: r.operation, attempt: r.attempt, delayMs: r.delayMs, status: r.error.status, message: r.error.message }),
    });
  }

  async observe(rule: ScalingRuleRow, signal: AbortSignal): Promise<Observation> {
    const { org, project } = where(rule);
    if (rule.container_group_name === null) {
      const found = await this.client.findContainerGroupById(org, project, rule.container_group_id, signal);
      if (!found) return { kind: 'gone', reason: `SaladCloud has no container group with id ${rule.container_group_id} in ${org}/${project}` };
      return { kind: 'found', state: { status: found.current_state.status, replicas: found.replicas }, containerGroupName: found.name };
    }
    try {
      const g = await this.client.getContainerGroup(ref(rule), signal);
      if (g.id !== rule.container_group_id) {
        return {
          kind: 'gone',
          reason: `SaladCloud container group ${org}/${project}/${g.name} has id ${g.id}, not the rule's container_group_id ${rule.container_group_id}`,
        };
      }
      return { kind: 'found', state: { status: g.current_state.status, replicas: g.replicas } };
    } catch (e) {
      if (e instanceof SaladCloudError && e.notFound) {
        return { kind: 'gone', reason: `SaladCloud container group ${org}/${project}/${rule.container_group_name} answers 404 (deleted?)` };
      }
      throw e;
    }
  }

  resize(rule: ScalingRuleRow, replicas: number, signal: AbortSignal): Promise<void> {
    return this.act(rule, () => this.client.setReplicas(ref(rule), replicas, signal));
  }
  start(rule: ScalingRuleRow, signal: AbortSignal): Promise<void> {
    return this.act(rule, () => this.client.startContainerGroup(ref(rule), signal));
  }
  stop(rule: ScalingRuleRow, signal: AbortSignal): Promise<void> {
    return this.act(rule, () => this.client.stopContainerGroup(ref(rule), signal));
  }

  private async act(rule: ScalingRuleRow, call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (e) {
      if (e instanceof SaladCloudError && e.notFound) {
        throw new GroupGoneError(`SaladCloud container group ${ref(rule).organization_name}/${ref(rule).project_name}/${rule.container_group_name} answers 404 (deleted?)`);
      }
      throw e;
    }
  }
}

function where(rule: ScalingRuleRow): { org: string; project: string } {
  if (!rule.org_name || !rule.project_name) throw new Error('the rule names no SaladCloud organization and project');
  return { org: rule.org_name, project: rule.project_name };
}

function ref(rule: ScalingRuleRow): ContainerGroupRef {
  const { org, project } = where(rule);
  if (!rule.container_group_name) throw new Error('the SaladCloud container group name is not known yet');
  return { organization_name: org, project_name: project, container_group_name: rule.container_group_name };
}
