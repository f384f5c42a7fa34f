// Long-poll waiters, keyed by (user, container group). A waiter sleeps on a promise that a
// work signal (from this process or, on PostgreSQL, any process) or a timer resolves: waiting
// costs no database queries in a loop.
import type { WorkSignal } from '../store/types.js';

export class Waiter {
  /** bumped by every signal for this key; compared to detect a signal that raced a claim */
  version = 0;
  private wake: (() => void) | undefined;

  signal(): void {
    this.version++;
    this.wake?.();
  }

  /** Resolve on the next signal, after `ms`, or when `abort` fires. */
  sleep(ms: number, abort: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        abort.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      abort.addEventListener('abort', done, { once: true });
      this.wake = done;
      if (abort.aborted) done();
    });
  }
}

export class WorkSignals {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private count = 0;

  static key(userId: string, groupId: string): string {
    return `${userId}\u0000${groupId}`;
  }

  get size(): number {
    return this.count;
  }

  register(userId: string, groupId: string): { waiter: Waiter; dispose: () => void } {
    const key = WorkSignals.key(userId, groupId);
    const waiter = new Waiter();
    let set = this.waiters.get(key);
    if (!set) this.waiters.set(key, (set = new Set()));
    set.add(waiter);
    this.count++;
    return {
      waiter,
      dispose: () => {
        if (set.delete(waiter)) this.count--;
        if (set.size === 0 && this.waiters.get(key) === set) this.waiters.delete(key);
      },
    };
  }

  publish(signal: WorkSignal): void {
    const set = this.waiters.get(WorkSignals.key(signal.userId, signal.groupId));
    if (set) for (const w of set) w.signal();
  }
}
