// The heartbeat of one job: every heartbeat_interval seconds, renew the lease and send the app's
// progress. An answer other than `running` (canceled, another machine holds the job, finished,
// deleted) calls onLost once. A failed beat (coordinator down, timeouts) is logged and the next
// one goes out on schedule: the job keeps running, and the lease lapses only if the coordinator
// stays unreachable for lease_factor beats.
//
// It is also the worker's fence (issue 5): a beat answered `running` proves the lease was held
// when it was sent, so until lease_timeout after that send no other machine can hold the job. Every
// upload asks `fence()` just before its object lands; if the proof is too old (the worker was
// frozen, or the coordinator is unreachable), it beats at once and waits for a fresh `running`
// rather than write over what the job's next holder may already have written.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { readProgressFile } from './progress.js';
import type { JobLease } from './source/job-source.js';

/** How often, and how long after the start, the progress file is watched for the app's first report. */
const PROGRESS_WATCH_MS = 250;
const PROGRESS_WATCH_MAX_MS = 10 * 60_000;

export interface HeartbeatOptions {
  /** The lease to renew (it says how long it lasts and when it was claimed). */
  lease: JobLease;
  intervalMs: number;
  /** Read before each beat; its progress is sent along. */
  progressFile?: string;
  /** The job's logger (it carries the job's id). */
  log: Logger;
  /** The coordinator no longer wants this worker to run the job; `status` is what it said. */
  onLost: (status: string) => void;
  /** A beat was answered `running`; `beats` counts them. */
  onRunning?: (beats: number) => void;
}

/** An upload refused because this worker no longer holds the job (fencing). */
export class LeaseLostError extends Error {
  constructor(jobId: string, status: string) {
    super(`job ${jobId} is no longer held by this worker (coordinator says ${status}): not writing`);
    this.name = 'LeaseLostError';
  }
}

export class Heartbeat {
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;
  private lost = false;
  private lostStatus = '';
  /** performance.now() when the newest request answered `running` (or the claim) was sent. */
  private confirmedAt: number;
  private inFlight: Promise<void> | undefined;
  /** Beats answered `running`, and beats that failed in a row. */
  beats = 0;
  failuresInARow = 0;
  /** A beat answered `running` carried the app's progress. */
  private sentProgress = false;

  constructor(private readonly o: HeartbeatOptions) {
    this.confirmedAt = o.lease.claimedAt;
  }

  /**
   * True while no other machine can hold the job: a `running` answer is younger than the lease,
   * less a quarter of it kept for the write itself to land.
   */
  holds(): boolean {
    return !this.lost && performance.now() - this.confirmedAt < this.o.lease.leaseMs * 0.75;
  }

  /**
   * Resolves once this worker provably holds the job; rejects with LeaseLostError once the
   * coordinator says it does not (or the heartbeat stopped). While the coordinator cannot be
   * reached it waits, beating every second: writing then could overwrite the next holder's data.
   */
  async fence(signal?: AbortSignal): Promise<void> {
    for (let waited = false; ; waited = true) {
      if (this.lost || this.stopper.signal.aborted) throw new LeaseLostError(this.o.lease.job.id, this.lostStatus || 'stopped');
      if (this.holds()) return;
      if (!waited) this.o.log.warn({ sinceConfirmedMs: Math.round(performance.now() - this.confirmedAt) }, 'lease not confirmed lately: confirming before writing');
      await this.beatNow();
      if (this.lost || this.holds()) continue;
      await sleep(1000, undefined, { signal });
    }
  }

  start(): this {
    this.loop ??= this.run();
    if (this.o.progressFile) void this.firstProgressSoon(this.o.progressFile);
    return this;
  }

  /**
   * The app's first progress of the attempt goes out as soon as the app writes it, not at the next
   * beat: it says where the attempt resumed (the coordinator's measure of work redone after a
   * handover). Looks every PROGRESS_WATCH_MS for up to PROGRESS_WATCH_MAX_MS, then leaves it to the beats.
   */
  private async firstProgressSoon(file: string): Promise<void> {
    const signal = this.stopper.signal;
    const until = performance.now() + PROGRESS_WATCH_MAX_MS;
    while (!signal.aborted && !this.sentProgress && performance.now() < until) {
      try {
        await sleep(PROGRESS_WATCH_MS, undefined, { signal });
      } catch {
        return;
      }
      if (!this.sentProgress && (await readProgressFile(file)) !== undefined) await this.beatNow();
    }
  }

  /** Stops beating; resolves when no beat is in flight. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    await this.inFlight;
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    while (!signal.aborted) {
      try {
        await sleep(this.o.intervalMs, undefined, { signal });
      } catch {
        return;
      }
      await this.beatNow();
    }
  }

  /** One beat now, or the one already in flight. */
  private beatNow(): Promise<void> {
    this.inFlight ??= this.beat().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async beat(): Promise<void> {
    const { lease, log } = this.o;
    try {
      const progress = this.o.progressFile ? await readProgressFile(this.o.progressFile) : undefined;
      const sentAt = performance.now();
      const status = await lease.heartbeat(progress);
      if (this.failuresInARow > 0) log.info({ failed: this.failuresInARow }, 'heartbeat: coordinator reachable again');
      this.failuresInARow = 0;
      if (status === 'running') {
        this.beats++;
        if (progress) this.sentProgress = true;
        this.confirmedAt = Math.max(this.confirmedAt, sentAt);
        this.o.onRunning?.(this.beats);
        return;
      }
      this.markLost(status);
    } catch (err) {
      this.failuresInARow++;
      log.warn({ err: (err as Error).message, failuresInARow: this.failuresInARow }, 'heartbeat failed; the job keeps running and the next beat goes out on schedule');
    }
  }

  private markLost(status: string): void {
    if (this.lost) return;
    this.lost = true;
    this.lostStatus = status;
    this.stopper.abort();
    this.o.onLost(status);
  }
}
