// Prometheus metrics, served at /metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from './store/types.js';

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Histogram<'method' | 'route' | 'status'>;
  readonly claims: Counter<'result'>;
  readonly transitions: Counter<'transition' | 'outcome'>;
  readonly webhooks: Counter<'result'>;

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
