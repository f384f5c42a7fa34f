// At most `limit` requests in any `windowMs`: SaladCloud allows 240 a minute per API key, and a
// burst of decisions (many groups, many submissions) must queue here rather than earn 429s.
import { setTimeout as sleep } from 'node:timers/promises';

export class RateLimiter {
  /** start times of the requests in the current window, oldest first */
  private readonly sent: number[] = [];
  private queue: Promise<void> = Promise.resolve();
  /** no request before this (a 429 said so) */
  private pausedUntil = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Resolves when one more request may go; callers are served in order. */
  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(() => this.wait(signal));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** The server said to wait (429 Retry-After): every request waits, not only the one refused. */
  pauseUntil(at: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, at);
  }

  private async wait(signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const now = this.now();
      if (now < this.pausedUntil) {
        await sleep(this.pausedUntil - now, undefined, signal ? { signal } : undefined);
        continue;
      }
      while (this.sent.length > 0 && this.sent[0]! <= now - this.windowMs) this.sent.shift();
      if (this.sent.length < this.limit) {
        this.sent.push(now);
        return;
      }
      await sleep(this.sent[0]! + this.windowMs - now, undefined, signal ? { signal } : undefined);
    }
  }
}
