// Delivers the durable webhook outbox: rows are written in the same transaction as the job
// transition that owes them, so a crash between the two is impossible; this loop leases due
// rows, POSTs them signed, and reschedules failures by the one backoff policy (@drover/common).
// It waits by backoffDelay, not retry(): the next try is kept in the row, so it outlives a restart.
import { backoffDelay, type Backoff } from '@drover/common';
import { WEBHOOK_EVENT_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER } from '@drover/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { OutboxRow, Store, UserRow } from '../store/types.js';
import { signWebhook } from './signing.js';
import { refuseResolvedWebhookHost } from './url-guard.js';

export interface WebhookSenderOptions {
  allowPrivate: boolean;
  /** how often to look for due deliveries when idle */
  pollMs?: number;
  /** first retry delay; doubles per attempt */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** after this many failed attempts a delivery is given up ("dead") */
  maxAttempts?: number;
  timeoutMs?: number;
  batch?: number;
}

export interface DeliveryReport {
  id: number;
  ok: boolean;
  status?: number;
  error?: string;
}

export class WebhookSender {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly secrets = new Map<string, UserRow>();
  private readonly opts: Required<WebhookSenderOptions>;
  /** Retries wait base × 2^(n−1), capped, each spread ±25 %. */
  private readonly backoff: Backoff;

  constructor(
    private readonly store: Store,
    private readonly log: FastifyBaseLogger,
    options: WebhookSenderOptions,
    private readonly onResult?: (r: DeliveryReport) => void,
  ) {
    this.opts = {
      pollMs: 1000,
      baseDelayMs: 2000,
      maxDelayMs: 3_600_000,
      maxAttempts: 15,
      timeoutMs: 10_000,
      batch: 20,
      ...options,
    };
    this.backoff = { baseMs: this.opts.baseDelayMs, maxMs: this.opts.maxDelayMs, jitter: 'proportional', spread: 0.25 };
  }

  start(): void {
    this.schedule(0);
  }

  /** Look for due deliveries now (after a local transition owed one). */
  kick(): void {
    if (!this.stopped && !this.running) this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((err: Error) => this.log.error({ err }, 'webhook sender'))
        .finally(() => {
          this.running = undefined;
        });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    const rows = await this.store.takeDueWebhooks(now, this.opts.batch, now + this.opts.timeoutMs * 3);
    await Promise.all(rows.map((row) => this.deliver(row)));
    // A full batch means more may be due: go again at once.
    this.schedule(rows.length === this.opts.batch ? 0 : this.opts.pollMs);
  }

  private async secretFor(userId: string): Promise<string | undefined> {
    let user = this.secrets.get(userId);
    if (!user) {
      user = await this.store.getUser(userId);
      if (user) this.secrets.set(userId, user);
    }
    return user?.webhook_secret;
  }

  private async deliver(row: OutboxRow): Promise<void> {
    const attempts = row.attempts + 1;
    let error: string;
    let status: number | undefined;
    try {
      const refused = await refuseResolvedWebhookHost(row.url, this.opts.allowPrivate);
      if (refused) {
        await this.store.markWebhookFailed(row.id, attempts, `refused: ${row.url} ${refused}`, null);
        this.report({ id: row.id, ok: false, error: refused });
        return;
      }
      const secret = (await this.secretFor(row.user_id)) ?? '';
      const timestamp = Math.floor(Date.now() / 1000);
      // One compact form whichever store wrote the row (PostgreSQL's json_build_object adds spaces).
      const body = JSON.stringify(JSON.parse(row.body));
      const res = await fetch(row.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'drover-webhooks/1',
          [WEBHOOK_EVENT_HEADER]: row.event,
          [WEBHOOK_TIMESTAMP_HEADER]: String(timestamp),
          [WEBHOOK_SIGNATURE_HEADER]: signWebhook(secret, timestamp, body),
          'x-drover-delivery': String(row.id),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      status = res.status;
      if (res.ok) {
        await this.store.markWebhookDelivered(row.id, Date.now());
        this.report({ id: row.id, ok: true, status });
        return;
      }
      error = `HTTP ${res.status}`;
    } catch (err) {
      error = (err as Error).message;
    }
    const giveUp = attempts >= this.opts.maxAttempts;
    const retryAt = giveUp ? null : Date.now() + backoffDelay(this.backoff, attempts);
    await this.store.markWebhookFailed(row.id, attempts, error, retryAt);
    this.log.warn({ delivery: row.id, job: row.job_id, attempts, error, giveUp }, 'webhook delivery failed');
    this.report({ id: row.id, ok: false, error, ...(status !== undefined ? { status } : {}) });
  }

  private report(r: DeliveryReport): void {
    this.onResult?.(r);
  }
}
