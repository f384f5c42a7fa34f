// `drover worker` processes on this machine (`drover up --autoscale`). The pool (the CLI's local
// cluster) starts and stops the processes; this provider decides which: a scale-down stops idle
// workers first and a worker holding a job only when no idle one is left (by SIGTERM, so it hands
// its job back). Which workers hold a job is the store's answer (running jobs' machine_id), not a
// guess from their logs.
import type { Store } from '../../store/types.js';
import type { ScalingRuleRow } from '../../store/schema.js';
import type { Observation, ScalingProvider } from '../provider.js';

export interface LocalNode {
  /** the worker's machine id (SALAD_MACHINE_ID) */
  machineId: string;
}

export interface LocalNodePool {
  /** the user whose key the workers run with: only that user's rules can have local workers */
  readonly userId: string;
  /** the group's workers that are up and not being stopped */
  nodes(groupId: string): LocalNode[];
  /** starts one worker for the group */
  start(groupId: string): LocalNode;
  /** SIGTERM: the worker releases its job, if any, and exits; resolves once it has exited */
  stop(node: LocalNode): Promise<void>;
}

export class LocalProvider implements ScalingProvider {
  readonly name = 'local' as const;

  constructor(
    private readonly pool: LocalNodePool,
    private readonly store: Store,
  ) {}

  refuse(userId: string): string | undefined {
    return userId === this.pool.userId ? undefined : "this coordinator's local workers run with another user's key: only that user's rules can use them";
  }

  async observe(rule: ScalingRuleRow): Promise<Observation> {
    this.check(rule);
    const n = this.pool.nodes(rule.container_group_id).length;
    return { kind: 'found', state: { status: n > 0 ? 'running' : 'stopped', replicas: n } };
  }

  async resize(rule: ScalingRuleRow, replicas: number): Promise<void> {
    this.check(rule);
    const nodes = this.pool.nodes(rule.container_group_id);
    for (let i = nodes.length; i < replicas; i++) this.pool.start(rule.container_group_id);
    if (replicas >= nodes.length) return;
    const busy = await this.busyMachines(rule);
    // Idle workers first (newest first: the oldest have warmed up), then busy ones.
    const order = [...nodes].reverse().sort((a, b) => Number(busy.has(a.machineId)) - Number(busy.has(b.machineId)));
    // Stopping is not awaited: a busy worker takes up to its kill grace to hand its job back, and
    // the decision is done once the worker is told (it no longer counts as a replica).
    for (const node of order.slice(0, nodes.length - replicas)) void this.pool.stop(node);
  }

  async start(): Promise<void> {
    // resize has started the workers already; a local group has no separate start
  }

  async stop(rule: ScalingRuleRow): Promise<void> {
    await this.resize(rule, 0);
  }

  /** The machines of the group holding a running job. */
  private async busyMachines(rule: ScalingRuleRow): Promise<Set<string>> {
    const busy = new Set<string>();
    for (let page = 0; ; page++) {
      const jobs = await this.store.listJobs({ userId: rule.user_id, status: 'running', groupId: rule.container_group_id, limit: 1000, offset: page * 1000, asc: true });
      for (const j of jobs) if (j.machine_id) busy.add(j.machine_id);
      if (jobs.length < 1000) return busy;
    }
  }

  private check(rule: ScalingRuleRow): void {
    const why = this.refuse(rule.user_id);
    if (why) throw new Error(why);
  }
}
