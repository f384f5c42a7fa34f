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
    const claimOnce = async () => {
      const job = await this.store.claimJob({ userId, machineId, groupId, now: this.now() });
      // Other waiters of the group may sleep past this new lease: have them look when it lapses.
      if (job) this.signals.leaseSet(userId, groupId, Number(job.lease_expires_at) + EXPIRY_SLACK_MS - this.now());
      return job;
    };
    if (args.waitSeconds <= 0) return claimOnce();

    const deadline = this.now() + args.waitSeconds * 1000;
    const abort = AbortSignal.any([args.abort, this.stopping.signal]);
    // Register before the first attempt so a job submitted during it is not missed.
    const { waiter, dispose } = this.signals.register(userId, groupId);
    let answered = waiter.version; // wake-ups up to this version have been answered by a claim
    try {
      for (;;) {
        const seen = waiter.version;
        const job = await claimOnce();
        const woken = seen !== answered;
        answered = seen;
        if (job) return job;
        // Woken for work, none of it ours (e.g. this machine is banned from the job): if the
        // group still has claimable work, let another waiter try for it.
        if (woken && (await this.store.hasClaimableWork(userId, groupId, this.now()))) {
          this.signals.handOff(userId, groupId, waiter);
        }
        if (abort.aborted || this.now() >= deadline) return undefined;
        if (waiter.version !== seen) continue;
        const nextExpiry = await this.store.nextLeaseExpiry(userId, groupId, this.now());
        if (waiter.version !== seen) continue;
        const wakeAt = Math.min(deadline, nextExpiry === undefined ? Infinity : nextExpiry + EXPIRY_SLACK_MS);
        await waiter.sleep(wakeAt - this.now(), abort);
      }
    } finally {
      // A wake-up that came after our last claim began was meant for a job we never tried for.
      if (waiter.version !== answered) this.signals.handOff(userId, groupId, waiter);
      dispose();
    }
  }

  /** Answer every waiting long-poll now (with no job), so a shutdown is not held up by them. */
  stop(): void {
    this.stopping.abort();
    this.unsubscribe();
  }
}
