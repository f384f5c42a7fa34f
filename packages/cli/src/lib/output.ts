// Human output by default (aligned tables, colours on a TTY), JSON with --json; and the one place
// that turns an error into a single line on stderr and an exit code.
import { DroverApiError, DroverNetworkError } from '@drover/sdk';
import { styleText } from 'node:util';

/** A user-facing failure: printed as one line, exit code 1 (or the given code). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

type Style = Parameters<typeof styleText>[0];

function colourOn(stream: NodeJS.WriteStream): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  if (process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0') return true;
  return Boolean(stream.isTTY);
}

/** `text` in the given style when stdout is a terminal (and NO_COLOR is unset); plain otherwise. */
export function paint(style: Style, text: string, stream: NodeJS.WriteStream = process.stdout): string {
  return colourOn(stream) ? styleText(style, text) : text;
}

const STATUS_STYLE: Record<string, Style> = {
  pending: 'yellow',
  running: 'cyan',
  completed: 'green',
  failed: 'red',
  'dead-lettered': 'red',
  canceled: 'gray',
};

export function paintStatus(status: string): string {
  const style = STATUS_STYLE[status];
  return style ? paint(style, status) : status;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const visibleLength = (s: string) => s.replace(ANSI, '').length;

export interface Column<T> {
  header: string;
  value(row: T): string;
  align?: 'left' | 'right';
}

/** An aligned text table with a header row; cells may carry colour. */
export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => visibleLength(row[i] as string))));
  const line = (values: string[]) =>
    values
      .map((v, i) => {
        const pad = ' '.repeat((widths[i] as number) - visibleLength(v));
        return columns[i]?.align === 'right' ? pad + v : v + pad;
      })
      .join('  ')
      .trimEnd();
  return [paint('bold', line(columns.map((c) => c.header))), ...cells.map(line)].join('\n') + '\n';
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${UNITS[i]}`;
}

/** 3s, 4m05s, 2h03m, 1d04h */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** One line for any error a command can meet; the stack only with DROVER_DEBUG=1. */
export function describeError(err: unknown): string {
  if (err instanceof DroverApiError) return `${err.message} (HTTP ${err.status} ${err.error})`;
  if (err instanceof DroverNetworkError) return err.message;
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * Wraps a command's action: any error becomes `drover <command>: <one line>` on stderr and a
 * non-zero exit (the CliError's code, else 1).
 */
export function action<A extends unknown[]>(name: string, fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (process.env.DROVER_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
      process.stderr.write(`drover ${name}: ${describeError(err)}\n`);
      process.exit(err instanceof CliError ? err.exitCode : 1);
    }
  };
}
