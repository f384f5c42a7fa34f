// Two charts drawn as plain SVG (no chart library: two shapes do not need one): jobs by status over
// time (GET /stats/jobs), and the work redone at each handover (GET /stats/handovers).
import { useState } from 'preact/hooks';
import type { HandoverList, JobHistory, JobStatus } from '@drover/protocol';
import { api } from '../api.js';
import { percent } from '../format.js';
import { href, usePoll } from '../hooks.js';
import { Loading, Problem, STATUSES } from './common.js';

const W = 720;
const H = 220;
const PAD = { left: 48, right: 12, top: 10, bottom: 24 };
const RANGES = [1, 6, 24, 24 * 7];

export function ChartsView() {
  const [hours, setHours] = useState(6);
  const history = usePoll((signal) => api<JobHistory>('/stats/jobs', { hours, buckets: 60 }, signal), [hours], 5000);
  const handovers = usePoll((signal) => api<HandoverList>('/stats/handovers', { limit: 200 }, signal), [], 5000);
  return (
    <section>
      <div class="toolbar">
        <h2>Jobs by status over time</h2>
        {RANGES.map((h) => (
          <button type="button" class={h === hours ? 'on' : ''} onClick={() => setHours(h)}>
            {h < 24 ? `${h} h` : `${h / 24} d`}
          </button>
        ))}
      </div>
      <Problem error={history.error} />
      {history.data ? <StatusChart history={history.data} /> : <Loading />}
      <h2>Work redone per handover</h2>
      <p class="muted">
        At each handover (a node went silent, was released or failed), the progress the previous attempt had reported minus where the new attempt resumed: the work
        done twice.
      </p>
      <Problem error={handovers.error} />
      {handovers.data ? <RedoneChart list={handovers.data} /> : <Loading />}
    </section>
  );
}

function StatusChart({ history }: { history: JobHistory }) {
  const n = history.times.length;
  const max = Math.max(1, ...history.times.map((_, i) => Math.max(...STATUSES.map((s) => history.series[s][i] ?? 0))));
  const x = (i: number) => PAD.left + (i / Math.max(1, n - 1)) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const line = (s: JobStatus) => history.series[s].map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
  const first = history.times[0];
  const last = history.times[n - 1];
  return (
    <figure class="chart" data-testid="status-chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label="Jobs by status over time">
        <line x1={PAD.left} x2={W - PAD.right} y1={y(0)} y2={y(0)} class="axis" />
        <text x={PAD.left - 6} y={y(max) + 4} class="tick" text-anchor="end">
          {max}
        </text>
        <text x={PAD.left - 6} y={y(0) + 4} class="tick" text-anchor="end">
          0
        </text>
        {first && (
          <text x={PAD.left} y={H - 6} class="tick">
            {new Date(first).toLocaleTimeString()}
          </text>
        )}
        {last && (
          <text x={W - PAD.right} y={H - 6} class="tick" text-anchor="end">
            {new Date(last).toLocaleTimeString()}
          </text>
        )}
        {STATUSES.map((s) => (
          <path d={line(s)} class={`series c-${s}`} />
        ))}
      </svg>
      <figcaption>
        {STATUSES.map((s) => (
          <span class={`key c-${s}`}>
            {s} {history.series[s][n - 1] ?? 0}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

function RedoneChart({ list }: { list: HandoverList }) {
  const items = list.handovers.slice().reverse();
  if (items.length === 0) return <p class="muted">No handovers yet: no job has moved from one node to another.</p>;
  const max = Math.max(0.01, ...items.map((h) => h.redone ?? 0));
  const bw = Math.max(2, Math.min(24, (W - PAD.left - PAD.right) / items.length - 2));
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const measured = items.filter((h) => h.redone !== null);
  const total = measured.reduce((a, h) => a + (h.redone ?? 0), 0);
  return (
    <figure class="chart" data-testid="redone-chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label="Work redone per handover">
        <line x1={PAD.left} x2={W - PAD.right} y1={y(0)} y2={y(0)} class="axis" />
        <text x={PAD.left - 6} y={y(max) + 4} class="tick" text-anchor="end">
          {percent(max)}
        </text>
        {items.map((h, i) => (
          <a href={href(['jobs', h.job_id])}>
            <rect
              x={PAD.left + i * (bw + 2)}
              y={y(h.redone ?? 0)}
              width={bw}
              height={Math.max(1, y(0) - y(h.redone ?? 0))}
              class={`bar cause-${h.cause}`}
            >
              <title>
                {h.job_id.slice(0, 8)} attempt {h.attempt} ({h.cause.replace('_', ' ')}): {h.redone === null ? 'not resumed yet' : `${percent(h.redone)} redone`}
              </title>
            </rect>
          </a>
        ))}
      </svg>
      <figcaption>
        {items.length} handovers · {measured.length} resumed · {percent(total)} of a job redone in all ({measured.length ? percent(total / measured.length) : '—'} each on average)
        <span class="key cause-lease_expired">lease lapsed</span>
        <span class="key cause-released">released</span>
        <span class="key cause-failed_attempt">failed</span>
      </figcaption>
    </figure>
  );
}
