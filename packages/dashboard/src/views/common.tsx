// Pieces every view uses.
import type { JobStatus } from '@drover/protocol';
import { percent } from '../format.js';

export const STATUSES: JobStatus[] = ['pending', 'running', 'completed', 'canceled', 'failed'];

export function Status({ status }: { status: string }) {
  return <span class={`status s-${status}`}>{status}</span>;
}

export function ProgressBar({ fraction, message }: { fraction: number | undefined; message?: string | undefined }) {
  if (fraction === undefined) return <span class="muted">—</span>;
  return (
    <span class="progress" title={message ?? percent(fraction)} role="progressbar" aria-valuenow={Math.round(fraction * 100)} aria-valuemin={0} aria-valuemax={100}>
      <span class="bar" style={{ width: `${Math.min(100, fraction * 100)}%` }} />
      <span class="label">{percent(fraction)}</span>
    </span>
  );
}

export function Problem({ error }: { error: string | undefined }) {
  return error ? <p class="error">{error}</p> : null;
}

export function Loading() {
  return <p class="muted">Loading…</p>;
}
