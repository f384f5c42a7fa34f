// A one-line progress bar for transfers on a terminal (bytes, %, MB/s, ETA, files done/total),
// redrawn in place at most every `intervalMs`; and the one-line summary printed when it is done.
import { formatBytes, formatDuration } from './output.js';

export interface ProgressState {
  bytes: number;
  total: number;
  /** Files done and in all, for folder transfers. */
  files?: number;
  totalFiles?: number;
}

/** What the bar needs of a stream (a TTY WriteStream, or a fake in tests). */
export interface BarStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): boolean;
}

const MB = 1_000_000;

/** "12.3 MB/s": decimal megabytes, as network speeds are quoted. */
export function formatRate(bytesPerSecond: number): string {
  const v = bytesPerSecond / MB;
  return `${v.toFixed(v < 10 ? 2 : 1)} MB/s`;
}

/** Room kept for the numbers after the bar, so the bar keeps its width while they change. */
const TAIL_ROOM = 60;

/** The bar's text for one state, fitted to `columns`: the bar is narrower on narrow terminals, and goes below 8. */
export function renderProgress(fullLabel: string, s: ProgressState, rate: number | undefined, columns: number): string {
  const label = fullLabel.length > 28 ? `${fullLabel.slice(0, 27)}…` : fullLabel;
  const bytes = Math.max(0, Math.min(s.bytes, s.total));
  const fraction = s.total > 0 ? bytes / s.total : s.totalFiles !== undefined && s.totalFiles > 0 ? (s.files ?? 0) / s.totalFiles : 0;
  const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
  const parts = [pct, `${formatBytes(bytes)}/${formatBytes(s.total)}`];
  if (rate !== undefined) parts.push(formatRate(rate));
  if (rate !== undefined && rate > 0 && s.total > bytes) parts.push(`ETA ${formatDuration((s.total - bytes) / rate)}`);
  if (s.totalFiles !== undefined) parts.push(`files ${s.files ?? 0}/${s.totalFiles}`);
  const tail = parts.join('  ');
  const width = Math.min(30, columns - 1 - label.length - 4 - TAIL_ROOM);
  const filled = Math.round(fraction * width);
  const line = width < 8 ? `${label} ${tail}` : `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${tail}`;
  return line.slice(0, Math.max(0, columns - 1));
}

export interface ProgressBarOptions {
  label: string;
  stream?: BarStream;
  intervalMs?: number;
  now?: () => number;
}

/**
 * Draws on `stream` (default stderr) only when it is a terminal; otherwise every call is a no-op.
 * The rate is taken over the last five seconds, so a stall shows.
 */
export class ProgressBar {
  readonly enabled: boolean;
  private readonly stream: BarStream;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly samples: { t: number; bytes: number }[] = [];
  private lastDraw = -Infinity;
  private drawn = false;
  private state: ProgressState = { bytes: 0, total: 0 };

  constructor(private readonly opts: ProgressBarOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.enabled = Boolean(this.stream.isTTY);
    this.intervalMs = opts.intervalMs ?? 100;
    this.now = opts.now ?? (() => performance.now());
  }

  update(s: ProgressState): void {
    if (!this.enabled) return;
    this.state = s;
    const t = this.now();
    this.samples.push({ t, bytes: s.bytes });
    while (this.samples.length > 2 && t - (this.samples[0] as { t: number }).t > 5000) this.samples.shift();
    if (t - this.lastDraw >= this.intervalMs) this.draw(t);
  }

  /** Bytes per second over the sample window, once it spans a quarter second. */
  rate(): number | undefined {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.t - first.t < 250) return undefined;
    return Math.max(0, ((last.bytes - first.bytes) * 1000) / (last.t - first.t));
  }

  private draw(t: number): void {
    this.lastDraw = t;
    const line = renderProgress(this.opts.label, this.state, this.rate(), this.stream.columns || 80);
    this.stream.write(`\r${line}\u001b[K`);
    this.drawn = true;
  }

  /** Clears the bar's line, leaving the terminal as it was (the summary goes to stdout). */
  finish(): void {
    if (!this.enabled || !this.drawn) return;
    this.stream.write('\r\u001b[K');
    this.drawn = false;
  }
}

export interface TransferSummary {
  verb: 'uploaded' | 'downloaded';
  files: number;
  bytes: number;
  seconds: number;
  from: string;
  to: string;
}

/** Megabytes per second of a finished transfer (0 for an instant one). */
export function mbPerSecond(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / MB / seconds : 0;
}

/** "uploaded 3 files (1.10 MiB) from ./data to s3://jobs/data/ in 0.4 s, 2.88 MB/s" */
export function formatSummary(s: TransferSummary): string {
  const files = `${s.files} file${s.files === 1 ? '' : 's'}`;
  return `${s.verb} ${files} (${formatBytes(s.bytes)}) from ${s.from} to ${s.to} in ${s.seconds.toFixed(1)} s, ${formatRate(mbPerSecond(s.bytes, s.seconds) * MB)}`;
}
