// Long-poll waiters, keyed by (user, container group). A waiter sleeps on a promise that a
// work signal (from this process or, on PostgreSQL, any process) or a timer resolves: waiting
// costs no database queries in a loop.
//
// A signal wakes as many waiters as jobs became claimable, longest waiting first, not all of
// them: with 64 idle workers, waking everyone for one job runs 64 claims that only one can win.
// A waiter that was woken but did not take the job for itself (its machine is banned from it,
// it was already returning another job, its poll ended) hands the wake-up on to a waiter that
// has not been woken for this round yet (see Scheduler.claim).
import type { WorkSignal } from '../store/types.js';

export class Waiter {
  /** bumped by every wake-up of this waiter; compared to detect one that raced a claim */
  version = 0;
  /** the round (per-key signal counter) this waiter was last woken for */
  round = 0;
  private wake: (() => void) | undefined;
  /** while sleeping: when the timer fires (Date.now() ms), and how to move it earlier */
  private due = Infinity;
  private retime: ((ms: number) => void) | undefined;

  get sleeping(): boolean {
    return this.wake !== undefined;
  }

  signal(): void {
    this.version++;
    this.wake?.();
  }

  /** If sleeping longer than `ms`, wake after `ms` instead (not a work signal: no version bump). */
  wakeWithin(ms: number): void {
    if (this.retime && Date.now() + ms < this.due) this.retime(ms);
  }

  /** Resolve on the next signal, after `ms`, or when `abort` fires. */
  sleep(ms: number, abort: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        abort.removeEventListener('abort', done);
        this.wake = undefined;
        this.retime = undefined;
        this.due = Infinity;
        resolve();
      };
      let timer = setTimeout(done, Math.max(0, ms));
      this.due = Date.now() + Math.max(0, ms);
      abort.addEventListener('abort', done, { once: true });
      this.wake = done;
      this.retime = (next) => {
        clearTimeout(timer);
        timer = setTimeout(done, Math.max(0, next));
        this.due = Date.now() + Math.max(0, next);
      };
      if (abort.aborted) done();
    });
  }
}

interface Queue {
  /** in order of waiting: the first has waited longest */
  waiters: Set<Waiter>;
  round: number;
}

export class WorkSignals {
  private readonly queues = new Map<string, Queue>();
  private count = 0;

  static key(userId: string, groupId: string): string {
    return `${userId}\u0000${groupId}`;
  }

  get size(): number {
    return this.count;
  }

  register(userId: string, groupId: string): { waiter: Waiter; dispose: () => void } {
    const key = WorkSignals.key(userId, groupId);
    let queue = this.queues.get(key);
    if (!queue) this.queues.set(key, (queue = { waiters: new Set(), round: 0 }));
    const waiter = new Waiter();
    waiter.round = queue.round;
    queue.waiters.add(waiter);
    this.count++;
    const q = queue;
    return {
      waiter,
      dispose: () => {
        if (q.waiters.delete(waiter)) this.count--;
        if (q.waiters.size === 0 && this.queues.get(key) === q) this.queues.delete(key);
      },
    };
  }

  publish(signal: WorkSignal): void {
    const queue = this.queues.get(WorkSignals.key(signal.userId, signal.groupId));
    if (!queue) return;
    queue.round++;
    let n = signal.count ?? Infinity;
    // Sleeping waiters first; a waiter in the middle of a claim may miss the new job, so it is
    // only woken (made to claim again) when there are more jobs than sleepers.
    for (const pass of [true, false]) {
      for (const w of [...queue.waiters]) {
        if (n <= 0) return;
        if (w.sleeping !== pass || w.round === queue.round) continue;
        this.wakeOne(queue, w);
        n--;
      }
    }
  }

  /**
   * A lease in this group lapses `ms` from now (a job was just claimed): waiters that would sleep
   * past it look again then, so a node that dies is replaced within its lease, not at the end of
   * a long-poll that began before the job was running.
   */
  leaseSet(userId: string, groupId: string, ms: number): void {
    const queue = this.queues.get(WorkSignals.key(userId, groupId));
    if (!queue) return;
    for (const w of queue.waiters) w.wakeWithin(ms);
  }

  /** Pass a wake-up on to one waiter not yet woken in this round; false if there is none. */
  handOff(userId: string, groupId: string, from: Waiter): boolean {
    const queue = this.queues.get(WorkSignals.key(userId, groupId));
    if (!queue) return false;
    for (const pass of [true, false]) {
      for (const w of queue.waiters) {
        if (w === from || w.sleeping !== pass || w.round === queue.round) continue;
        this.wakeOne(queue, w);
        return true;
      }
    }
    return false;
  }

  private wakeOne(queue: Queue, w: Waiter): void {
    w.round = queue.round;
    w.signal();
  }
}
