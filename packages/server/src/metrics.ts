// Prometheus metrics, served at /metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from './store/types.js';

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Histogram<'method' | 'route' | 'status'>;
  readonly claims: Counter<'result'>;
  readonly transitions: Counter<'transition' | 'outcome'>;
  readonly webhooks: Counter<'result'>;
  /** Jobs taken over by a new attempt, by why the previous attempt ended. */
  readonly handovers: Counter<'cause'>;
  readonly leaseLapses: Counter;
  readonly failures: Counter<'final'>;
  /** Fraction of a job done again after a handover (the previous attempt's last progress − the new one's first). */
  readonly redone: Histogram;
  readonly logLines: Counter<'result'>;

  constructor(store: Store, waiting: () => number) {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Histogram({
      name: 'drover_http_request_duration_seconds',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60],
      registers: [this.registry],
    });
    this.claims = new Counter({
      name: 'drover_claims_total',
      help: 'GET /work answers: a job handed out, or none',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.transitions = new Counter({
      name: 'drover_job_transitions_total',
      help: 'Job transitions by outcome (applied, repeat, not_holder, finished, not_found)',
      labelNames: ['transition', 'outcome'],
      registers: [this.registry],
    });
    this.webhooks = new Counter({
      name: 'drover_webhook_deliveries_total',
      help: 'Webhook delivery attempts by result',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.handovers = new Counter({
      name: 'drover_handovers_total',
      help: 'Jobs claimed by a new attempt after another: cause lease_expired (the node went silent), released, failed_attempt',
      labelNames: ['cause'],
      registers: [this.registry],
    });
    this.leaseLapses = new Counter({
      name: 'drover_lease_lapses_total',
      help: 'Leases that lapsed (no heartbeat for the lease timeout) and were taken over by another claim',
      registers: [this.registry],
    });
    this.failures = new Counter({
      name: 'drover_job_failures_total',
      help: 'Failed attempts reported by workers; final="true" when it failed the job for good (max_failures)',
      labelNames: ['final'],
      registers: [this.registry],
    });
    this.redone = new Histogram({
      name: 'drover_handover_redone_fraction',
      help: 'Fraction of a job done again after a handover: the progress lost between the old attempt\'s last report and the new one\'s first',
      buckets: [0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
      registers: [this.registry],
    });
    this.logLines = new Counter({
      name: 'drover_log_lines_total',
      help: 'Job output lines shipped by workers: stored, or over_cap (dropped at the per-attempt cap)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    // Per-group gauges, read in one query per scrape; a group with no pending or running job drops out.
    type GroupRow = Awaited<ReturnType<Store['groupGauges']>>[number];
    let groupRead: Promise<GroupRow[]> | undefined;
    const groups = () => (groupRead ??= store.groupGauges(Date.now()).finally(() => setImmediate(() => (groupRead = undefined))));
    const perGroup = (name: string, help: string, value: (g: GroupRow, now: number) => number | undefined) =>
      new Gauge({
        name,
        help: `${help}, by container group (whole database)`,
        labelNames: ['container_group_id'],
        registers: [this.registry],
        async collect() {
          this.reset();
          const now = Date.now();
          for (const g of await groups()) {
            const v = value(g, now);
            if (v !== undefined) this.set({ container_group_id: g.container_group_id }, v);
          }
        },
      });
    perGroup('drover_queue_depth', 'Jobs a machine could claim now (pending, or running with no live lease)', (g) => g.queue_depth);
    perGroup('drover_running_jobs', 'Jobs held by a machine with a live lease', (g) => g.running);
    perGroup(
      'drover_heartbeat_lag_seconds',
      'Seconds since the stalest heartbeat among live leases (a node about to be given up on shows here first)',
      (g, now) => (g.oldest_heartbeat === null ? undefined : Math.max(0, (now - g.oldest_heartbeat) / 1000)),
    );
    new Gauge({
      name: 'drover_webhook_backlog',
      help: 'Webhook deliveries owed and not yet delivered (whole database)',
      registers: [this.registry],
      async collect() {
        this.set(await store.webhookBacklog());
      },
    });
    new Gauge({
      name: 'drover_longpoll_waiting',
      help: 'GET /work long-polls waiting in this process',
      registers: [this.registry],
      collect() {
        this.set(waiting());
      },
    });
    new Gauge({
      name: 'drover_jobs',
      help: 'Jobs by status (whole database)',
      labelNames: ['status'],
      registers: [this.registry],
      async collect() {
        const counts = await store.countJobsByStatus();
        for (const s of ['pending', 'running', 'completed', 'canceled', 'failed']) this.set({ status: s }, counts[s] ?? 0);
      },
    });
  }
}
