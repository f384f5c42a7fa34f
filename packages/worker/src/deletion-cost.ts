// This instance's deletion cost, as SaladCloud's scale-in reads it (IMDS PUT /v1/deletion-cost: a
// scale-down deletes the instances with the lowest cost first) and as Kelpie's worker sets it:
//   0            idle: nothing is lost if this node goes;
//   1, then 2+n  a job runs (n = its heartbeats answered `running`): the longer it has run, the
//                later a scale-down picks this node;
//   999 999 999  a finished job's last uploads run: the worst time to lose the node.
// Several jobs can overlap (one uploading its outputs while the next runs): the highest wins. A
// cost is sent only when it changes, one request at a time, the newest last.
import type { ImdsClient } from './imds.js';

export const DELETION_COST = { idle: 0, claimed: 1, finalUpload: 999_999_999 } as const;

export class DeletionCost {
  private readonly running = new Map<string, number>();
  private finalUploads = 0;
  private sent: number | undefined;
  private sending: Promise<unknown> = Promise.resolve();

  constructor(private readonly imds: Pick<ImdsClient, 'setDeletionCost'>) {}

  /** What the cost is now. */
  get value(): number {
    if (this.finalUploads > 0) return DELETION_COST.finalUpload;
    if (this.running.size === 0) return DELETION_COST.idle;
    const beats = Math.max(...this.running.values());
    return beats === 0 ? DELETION_COST.claimed : beats + 2;
  }

  /** The worker is idle (at start): cost 0. */
  idle(): Promise<void> {
    return this.update(true);
  }

  jobStarted(jobId: string): Promise<void> {
    this.running.set(jobId, 0);
    return this.update();
  }

  /** The job's heartbeat number `beats` was answered `running`. */
  beat(jobId: string, beats: number): Promise<void> {
    if (!this.running.has(jobId)) return Promise.resolve();
    this.running.set(jobId, beats);
    return this.update();
  }

  jobEnded(jobId: string): Promise<void> {
    this.running.delete(jobId);
    return this.update();
  }

  /** Runs a finished job's last uploads with the cost at its highest. */
  async duringFinalUpload<T>(fn: () => Promise<T>): Promise<T> {
    this.finalUploads++;
    await this.update();
    try {
      return await fn();
    } finally {
      this.finalUploads--;
      await this.update();
    }
  }

  /** Resolves once every cost decided so far has been sent. */
  settled(): Promise<unknown> {
    return this.sending;
  }

  private update(force = false): Promise<void> {
    const cost = this.value;
    if (!force && cost === this.sent) return this.sending.then(() => {});
    this.sent = cost;
    // One request at a time, in order: the last one sent is the cost that holds.
    this.sending = this.sending.then(() => this.imds.setDeletionCost(cost));
    return this.sending.then(() => {});
  }
}
