// Ships one attempt's output to its job source (the coordinator's POST /jobs/:id/logs) in batches:
// every second, or sooner once a batch's worth is waiting. Memory is bounded: while the source
// cannot be reached the buffer keeps the newest MAX_BUFFER_BYTES and counts what it had to drop
// (the count goes with the next batch). A batch leaves the buffer only once the source stored it,
// so a node that dies loses at most what was written since the last shipped batch (about a
// second), and a batch sent twice is stored once (lines are numbered per attempt).
import { backoffDelay, retry } from '@drover/common';
import { LOG_BATCH_MAX_LINES, LOG_LINE_MAX, type LogLineIn, type LogStream } from '@drover/protocol';
import { errorMessage } from '@drover/storage';
import type { Logger } from 'pino';
import { ReportRefusedError, type JobLease, type LogShipment } from './source/job-source.js';

export const LOG_FLUSH_INTERVAL_MS = 1000;
/** A batch is sent at once when this much is waiting (or LOG_BATCH_MAX_LINES lines). */
const BATCH_BYTES = 256 * 1024;
/** The most output kept waiting on the node; past it the oldest lines are dropped. */
export const MAX_BUFFER_BYTES = 8 * 1024 * 1024;
/** One flush tries a batch this many times (0.5 s, then 1 s apart); then the lines wait for the next flush. */
const SHIP_TRIES = 3;
const SHIP_BACKOFF = { baseMs: 500, maxMs: 5000, jitter: 'proportional' } as const;
/** After a flush that failed every try, the next waits this long (doubling), not a second. */
const OUTAGE_BACKOFF = { baseMs: 2000, maxMs: 30_000, jitter: 'proportional' } as const;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** A line as the coordinator stores it: control characters (but tab) become spaces, no lone surrogates, at most LOG_LINE_MAX characters. */
export function storableLine(text: string): string {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  const clean = text.replace(/[\u0000-\u0008\u000a-\u001f]/g, ' ').replace(LONE_SURROGATE, '');
  if (clean.length <= LOG_LINE_MAX) return clean;
  let end = LOG_LINE_MAX - 1;
  if (/[\ud800-\udbff]/.test(clean[end - 1]!)) end--; // never split a surrogate pair
  return `${clean.slice(0, end)}…`;
}

export interface LogShipperOptions {
  ship: (batch: LogShipment) => Promise<{ truncated: boolean; cap_bytes: number }>;
  attempt: number;
  log: Logger;
  flushIntervalMs?: number;
  maxBufferBytes?: number;
}

export class LogShipper {
  private buffer: { line: LogLineIn; bytes: number }[] = [];
  private bufferBytes = 0;
  private seq = 0;
  /** lines dropped (buffer full) and not yet told to the source */
  private dropped = 0;
  /** no more shipping: the attempt reached the cap, or the source refused the lines */
  private off = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private outages = 0;
  private readonly flushIntervalMs: number;
  private readonly maxBufferBytes: number;

  constructor(private readonly o: LogShipperOptions) {
    this.flushIntervalMs = o.flushIntervalMs ?? LOG_FLUSH_INTERVAL_MS;
    this.maxBufferBytes = o.maxBufferBytes ?? MAX_BUFFER_BYTES;
    this.schedule(this.flushIntervalMs);
  }

  /** Bytes of output waiting to be shipped (bounded by maxBufferBytes). */
  get bufferedBytes(): number {
    return this.bufferBytes;
  }

  /** The shipper of a lease whose source keeps logs; undefined when it does not. */
  static forLease(lease: JobLease, log: Logger): LogShipper | undefined {
    const ship = lease.shipLogs?.bind(lease);
    // A coordinator that numbers no attempts (Kelpie) keeps no logs either.
    const attempt = lease.job.attempt as number | undefined;
    return ship && typeof attempt === 'number' && attempt >= 1 ? new LogShipper({ ship, attempt, log }) : undefined;
  }

  push(stream: LogStream, text: string): void {
    if (this.off || this.closed) return;
    const line = { seq: this.seq++, at: new Date().toISOString(), stream, text: storableLine(text) };
    const bytes = Buffer.byteLength(line.text) + 64;
    this.buffer.push({ line, bytes });
    this.bufferBytes += bytes;
    while (this.bufferBytes > this.maxBufferBytes && this.buffer.length > 1) {
      this.bufferBytes -= this.buffer.shift()!.bytes;
      this.dropped++;
    }
    if (!this.flushing && (this.bufferBytes >= BATCH_BYTES || this.buffer.length >= LOG_BATCH_MAX_LINES) && this.outages === 0) {
      this.schedule(0);
    }
  }

  /** Ships what is left (for up to `timeoutMs`) and stops. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const deadline = Date.now() + timeoutMs;
    while (!this.off && (this.buffer.length > 0 || this.dropped > 0) && Date.now() < deadline) {
      await (this.flushing ?? this.flush());
      if (this.outages > 0 && this.buffer.length > 0) {
        await new Promise((r) => setTimeout(r, Math.min(backoffDelay(OUTAGE_BACKOFF, this.outages), Math.max(0, deadline - Date.now()))));
      }
    }
    if (this.buffer.length > 0 && !this.off) this.o.log.warn({ lines: this.buffer.length }, 'could not ship the last lines of the job\'s output');
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.closed || this.off) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    await (this.flushing ?? this.flush());
    // Lines that arrived meanwhile: at once if a batch is full, else at the next interval.
    const full = this.bufferBytes >= BATCH_BYTES || this.buffer.length >= LOG_BATCH_MAX_LINES;
    this.schedule(this.outages > 0 ? backoffDelay(OUTAGE_BACKOFF, this.outages) : full ? 0 : this.flushIntervalMs);
  }

  private flush(): Promise<void> {
    this.flushing = this.send().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async send(): Promise<void> {
    if (this.off || (this.buffer.length === 0 && this.dropped === 0)) return;
    let bytes = 0;
    let n = 0;
    while (n < this.buffer.length && n < LOG_BATCH_MAX_LINES && (n === 0 || bytes + this.buffer[n]!.bytes <= BATCH_BYTES)) bytes += this.buffer[n++]!.bytes;
    const lines = this.buffer.slice(0, n).map((b) => b.line);
    const dropped = this.dropped;
    try {
      const answer = await retry(() => this.o.ship({ attempt: this.o.attempt, lines, ...(dropped > 0 ? { dropped } : {}) }), {
        attempts: SHIP_TRIES,
        backoff: SHIP_BACKOFF,
        retryable: (err) => !(err instanceof ReportRefusedError),
      });
      this.outages = 0;
      this.dropped -= dropped;
      const last = lines.at(-1)?.seq ?? -1;
      while (this.buffer.length > 0 && this.buffer[0]!.line.seq <= last) this.bufferBytes -= this.buffer.shift()!.bytes;
      if (answer.truncated) this.stop(`the job's output reached the coordinator's cap of ${answer.cap_bytes} bytes for this attempt: later lines are not kept`);
    } catch (err) {
      if (err instanceof ReportRefusedError) {
        this.stop(`the coordinator refused the job's output (${err.message}): not shipping it`);
        return;
      }
      this.outages++;
      if (this.outages === 1) this.o.log.warn({ err: errorMessage(err), lines: this.buffer.length }, 'shipping the job\'s output failed; keeping it and trying again');
    }
  }

  private stop(why: string): void {
    this.off = true;
    this.buffer = [];
    this.bufferBytes = 0;
    clearTimeout(this.timer);
    this.o.log.info(why);
  }
}
