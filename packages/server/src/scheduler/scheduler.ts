// Claims, with the Drover long-poll: try to claim; if nothing is claimable, sleep until a
// work signal for this (user, group), the next lease expiry in the group, or the deadline.
import type { Store, JobRow } from '../store/types.js';
import { WorkSignals } from './work-signals.js';

export interface ClaimArgs {
  userId: string;
  machineId: string;
  groupId: string;
  /** seconds to wait for work; 0 answers at once */
  waitSeconds: number;
  /** fires when the client goes away */
  abort: AbortSignal;
}

/** A lapsed lease is claimable at `lease_expires_at`; wake a hair later so the comparison holds. */
const EXPIRY_SLACK_MS = 5;

export class Scheduler {
  readonly signals = new WorkSignals();
  private readonly stopping = new AbortController();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {
    this.unsubscribe = store.onWork((s) => this.signals.publish(s));
  }

  get waiting(): number {
    return this.signals.size;
  }

  async claim(args: ClaimArgs): Promise<JobRow | undefined> {
    const { userId, machineId, groupId } = args;
    const claimOnce = () => this.store.claimJob({ userId, machineId, groupId, now: this.now() });
    if (args.waitSeconds <= 0) return claimOnce();

    const deadline = this.now() + args.waitSeconds * 1000;
    const abort = AbortSignal.any([args.abort, this.stopping.signal]);
    // Register before the first attempt so a job submitted during it is not missed.
    const { waiter, dispose } = this.signals.register(userId, groupId);
    try {
      for (;;) {
        const seen = waiter.version;
        const job = await claimOnce();
        if (job) return job;
        if (abort.aborted || this.now() >= deadline) return undefined;
        if (waiter.version !== seen) continue;
        const nextExpiry = await this.store.nextLeaseExpiry(userId, groupId, this.now());
        if (waiter.version !== seen) continue;
        const wakeAt = Math.min(deadline, nextExpiry === undefined ? Infinity : nextExpiry + EXPIRY_SLACK_MS);
        await waiter.sleep(wakeAt - this.now(), abort);
      }
    } finally {
      dispose();
    }
  }

  /** Answer every waiting long-poll now (with no job), so a shutdown is not held up by them. */
  stop(): void {
    this.stopping.abort();
    this.unsubscribe();
  }
}
