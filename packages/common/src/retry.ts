// The one retry/backoff policy of every Drover process: the SDK client, the worker's reports, the
// data sync, the transfer engine, the webhook sender and the PostgreSQL re-listen all wait by it,
// so "how long until the next try" is answered in one place.
import { setTimeout as sleep } from 'node:timers/promises';

export interface Backoff {
  /** Delay before the first retry, in ms; it doubles with every further one. */
  baseMs: number;
  /** The longest delay, in ms. */
  maxMs: number;
  /**
   * How the delay is spread, so many clients failing together do not retry together:
   * - `full` (default): uniform in [0, d] (AWS's "full jitter");
   * - `proportional`: uniform in [d × (1 − spread), d × (1 + spread)), then capped at maxMs;
   * - `none`: exactly d.
   */
  jitter?: 'full' | 'proportional' | 'none';
  /** For `proportional` jitter: how far either way the delay may move, as a fraction of it (default 0.5). */
  spread?: number;
}

/** The delay before retry number `attempt` (1 = the first retry), in whole ms. */
export function backoffDelay(b: Backoff, attempt: number, random: () => number = Math.random): number {
  const d = Math.min(b.maxMs, b.baseMs * 2 ** Math.max(0, attempt - 1));
  switch (b.jitter ?? 'full') {
    case 'none':
      return Math.round(d);
    case 'proportional': {
      const spread = b.spread ?? 0.5;
      return Math.round(Math.min(b.maxMs, d * (1 - spread + 2 * spread * random())));
    }
    default:
      return Math.round(d * random());
  }
}

export interface RetryInfo {
  /** The try that just failed (1 = the first). */
  attempt: number;
  delayMs: number;
  error: unknown;
}

export interface RetryOptions {
  /** Tries in all, the first included (at least 1). */
  attempts: number;
  backoff: Backoff;
  /** Whether an error is worth another try (default: every error is). */
  retryable?: (error: unknown) => boolean;
  /**
   * The wait the failure itself asks for, in ms (e.g. an HTTP 429's Retry-After); undefined: the
   * backoff's. Longer waits than the backoff's are kept, shorter ones raised to it.
   */
  delayFor?: (error: unknown, attempt: number) => number | undefined;
  /** Called before each wait (logs, tests). */
  onRetry?: (info: RetryInfo) => void;
  /** What to throw once the tries run out (default: the last error). */
  giveUp?: (lastError: unknown, attempts: number) => unknown;
  /** Aborting stops at once: the error of the try it interrupted (or the wait's AbortError) is thrown. */
  signal?: AbortSignal;
}

/**
 * Runs `fn` until it succeeds, throws an error that is not retryable, or the tries run out.
 * `fn` gets the number of the try (1 = the first).
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const attempts = Math.max(1, o.attempts);
  for (let attempt = 1; ; attempt++) {
    o.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      if (o.signal?.aborted) throw error;
      if (o.retryable && !o.retryable(error)) throw error;
      if (attempt >= attempts) throw o.giveUp ? o.giveUp(error, attempts) : error;
      const asked = o.delayFor?.(error, attempt);
      const delayMs = Math.max(asked ?? 0, backoffDelay(o.backoff, attempt));
      o.onRetry?.({ attempt, delayMs, error });
      await sleep(delayMs, undefined, o.signal ? { signal: o.signal } : undefined);
    }
  }
}
