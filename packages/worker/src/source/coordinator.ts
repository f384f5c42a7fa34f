// The coordinator's HTTP API as a job source: Kelpie's protocol (GET /work, heartbeat, completed,
// failed) through the SDK client, with Drover's additions where the coordinator has them (a
// long-poll claim, `reason` on failed, release) and a fallback where it does not (a Kelpie
// coordinator refuses `wait=` and `reason`, and has no release).
import { performance } from 'node:perf_hooks';
import type { Job, Progress } from '@drover/protocol';
import { DroverApiError, type DroverClient, type Machine } from '@drover/sdk';
import type { Logger } from 'pino';
import type { LogBatchResponse } from '@drover/protocol';
import { AccessDeniedError, ReportRefusedError, type ClaimOptions, type JobLease, type JobSource, type LogShipment } from './job-source.js';

/** A 4xx answer is final: the report was refused, not lost. */
function refusedFor(err: unknown): unknown {
  return err instanceof DroverApiError && err.status >= 400 && err.status < 500 ? new ReportRefusedError(`${err.status}: ${err.message}`) : err;
}

/** Drover's additions to Kelpie's reports. */
type DroverField = 'progress' | 'reason';

class CoordinatorLease implements JobLease {
  readonly leaseMs: number;

  constructor(
    private readonly source: CoordinatorSource,
    readonly job: Job,
    readonly claimedAt: number,
  ) {
    // A Kelpie coordinator does not say: its lease is 2 × heartbeat_interval.
    this.leaseMs = (job.lease_timeout ?? 2 * job.heartbeat_interval) * 1000;
  }

  async heartbeat(progress?: Progress): Promise<string> {
    try {
      return (await this.source.client.heartbeat(this.job.id, this.source.machine, progress)).status;
    } catch (err) {
      if (err instanceof DroverApiError && err.status === 404) return 'deleted';
      throw err;
    }
  }

  complete(progress?: Progress): Promise<void> {
    return this.withDroverField('progress', progress !== undefined, (send) => this.source.client.completeJob(this.job.id, this.source.machine, send ? progress : undefined));
  }

  fail(reason?: string): Promise<void> {
    return this.withDroverField('reason', reason !== undefined, (send) => this.source.client.failJob(this.job.id, this.source.machine, send ? reason : undefined));
  }

  /**
   * A report with one of Drover's fields (`progress` on completed, `reason` on failed): a Kelpie
   * coordinator may refuse it (400), and then it is sent without, by this source from then on.
   */
  private async withDroverField(field: DroverField, has: boolean, report: (sendField: boolean) => Promise<unknown>): Promise<void> {
    const send = has && this.source.sends[field];
    try {
      await report(send);
    } catch (err) {
      if (send && err instanceof DroverApiError && err.status === 400) {
        this.source.sends[field] = false;
        return this.withDroverField(field, has, report);
      }
      throw refusedFor(err);
    }
  }

  async release(): Promise<void> {
    await this.source.client.releaseJob(this.job.id, this.source.machine).catch((err: unknown) => Promise.reject(refusedFor(err)));
  }

  /** Drover's POST /jobs/:id/logs (a Kelpie coordinator answers 404: refused, and no more is sent). */
  async shipLogs(batch: LogShipment): Promise<LogBatchResponse> {
    return this.source.client.shipLogs(this.job.id, { ...this.source.machine, ...batch }).catch((err: unknown) => Promise.reject(refusedFor(err)));
  }
}

export class CoordinatorSource implements JobSource {
  readonly description: string;
  /** Long-poll claims; turned off for good when the coordinator refuses `wait=` (Kelpie). */
  private longPollS: number;
  /** Drover's fields of the reports: each off once a coordinator refuses it. */
  readonly sends: Record<DroverField, boolean> = { progress: true, reason: true };
  private readonly log: Logger;

  constructor(
    readonly client: DroverClient,
    readonly machine: Machine,
    o: { url: string; longPollS: number; log: Logger },
  ) {
    this.description = o.url;
    this.longPollS = o.longPollS;
    this.log = o.log;
  }

  get waits(): boolean {
    return this.longPollS > 0;
  }

  async claim({ waitS, signal }: ClaimOptions): Promise<JobLease | undefined> {
    const sentAt = performance.now();
    try {
      const job = await this.client.claimWork(this.machine, this.waits ? Math.min(this.longPollS, waitS) : undefined, { signal });
      return job ? new CoordinatorLease(this, job, sentAt) : undefined;
    } catch (err) {
      if (this.waits && err instanceof DroverApiError && err.status === 400 && !signal.aborted) {
        this.log.warn({ err: err.message }, 'the coordinator refused a long-poll claim: polling without long-poll');
        this.longPollS = 0;
        return undefined;
      }
      if (err instanceof DroverApiError && (err.status === 401 || err.status === 403)) {
        throw new AccessDeniedError(`the coordinator at ${this.description} refuses the API key (${err.status} ${err.message}): check KELPIE_API_KEY (--api-key)`);
      }
      throw err;
    }
  }
}
