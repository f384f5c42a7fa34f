// The heartbeat of one job: every heartbeat_interval seconds, renew the lease and send the app's
// progress. An answer other than `running` (canceled, another machine holds the job, finished,
// deleted) calls onLost once. A failed beat (coordinator down, timeouts) is logged and the next
// one goes out on schedule: the job keeps running, and the lease lapses only if the coordinator
// stays unreachable for lease_factor beats.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Machine } from '@drover/sdk';
import { DroverApiError, type DroverClient } from '@drover/sdk';
import type { Logger } from 'pino';
import { readProgressFile } from './progress.js';

export interface HeartbeatOptions {
  client: DroverClient;
  jobId: string;
  machine: Machine;
  intervalMs: number;
  /** Read before each beat; its progress is sent along. */
  progressFile?: string;
  log: Logger;
  /** The coordinator no longer wants this worker to run the job; `status` is what it said. */
  onLost: (status: string) => void;
}

export class Heartbeat {
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;
  private lost = false;
  /** Beats answered `running`, and beats that failed in a row. */
  beats = 0;
  failuresInARow = 0;

  constructor(private readonly o: HeartbeatOptions) {}

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  /** Stops beating; resolves when no beat is in flight. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    while (!signal.aborted) {
      try {
        await sleep(this.o.intervalMs, undefined, { signal });
      } catch {
        return;
      }
      await this.beat();
    }
  }

  private async beat(): Promise<void> {
    const { client, jobId, machine, log } = this.o;
    try {
      const progress = this.o.progressFile ? await readProgressFile(this.o.progressFile) : undefined;
      const { status } = await client.heartbeat(jobId, machine, progress);
      if (this.failuresInARow > 0) log.info({ job: jobId, failed: this.failuresInARow }, 'heartbeat: coordinator reachable again');
      this.failuresInARow = 0;
      if (status === 'running') {
        this.beats++;
        return;
      }
      this.markLost(status);
    } catch (err) {
      if (err instanceof DroverApiError && err.status === 404) {
        this.markLost('deleted');
        return;
      }
      this.failuresInARow++;
      log.warn({ job: jobId, err: (err as Error).message, failuresInARow: this.failuresInARow }, 'heartbeat failed; the job keeps running and the next beat goes out on schedule');
    }
  }

  private markLost(status: string): void {
    if (this.lost) return;
    this.lost = true;
    this.stopper.abort();
    this.o.onLost(status);
  }
}
