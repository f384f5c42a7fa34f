// A job's output, live: the last 1000 lines of an attempt, then followed with the API's long-poll
// (GET /jobs/:id/logs?after=…&wait=20). Not pinned to an attempt, it moves on to the next attempt
// when one starts (a node died and another took the job over).
import { useEffect, useRef, useState } from 'preact/hooks';
import type { LogLine, LogPage } from '@drover/protocol';
import { api } from '../api.js';
import { bytes } from '../format.js';

const SHOWN_MAX = 5000;
const FOLLOW_WAIT_S = 20;

interface Shown {
  page: Omit<LogPage, 'lines'> | undefined;
  lines: LogLine[];
  error?: string;
}

export function Logs({ jobId, finished }: { jobId: string; finished: boolean }) {
  const [pinned, setPinned] = useState<number | undefined>();
  const [shown, setShown] = useState<Shown>({ page: undefined, lines: [] });
  const finishedRef = useRef(finished);
  finishedRef.current = finished;
  const box = useRef<HTMLPreElement>(null);

  useEffect(() => {
    const stop = new AbortController();
    const { signal } = stop;
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    setShown({ page: undefined, lines: [] });
    void (async () => {
      let attempt = pinned;
      let after = -1;
      let fresh = true;
      while (!signal.aborted) {
        try {
          const page = await api<LogPage>(`/jobs/${jobId}/logs`, fresh ? { attempt, tail: 1000 } : { attempt, after, wait: FOLLOW_WAIT_S }, signal);
          if (signal.aborted) return;
          const { lines, ...meta } = page;
          if (fresh) {
            attempt = page.attempt;
            setShown({ page: meta, lines });
          } else {
            setShown((s) => ({ page: meta, lines: lines.length ? [...s.lines, ...lines].slice(-SHOWN_MAX) : s.lines }));
          }
          after = page.next;
          fresh = false;
          if (page.more) continue;
          if (page.done) {
            if (pinned !== undefined || finishedRef.current) {
              // nothing more will come to this attempt; a finished job gets no newer one
              await pause(5000);
              continue;
            }
            // Has a newer attempt started? Look again in a moment.
            await pause(2000);
            const newest = await api<LogPage>(`/jobs/${jobId}/logs`, { tail: 1 }, signal);
            if (newest.attempt > page.attempt) {
              attempt = newest.attempt;
              after = -1;
              fresh = true;
            }
          }
        } catch (e) {
          if (signal.aborted) return;
          setShown((s) => ({ ...s, error: (e as Error).message }));
          await pause(2000);
        }
      }
    })();
    return () => stop.abort();
  }, [jobId, pinned]);

  // Keep the newest line in sight, unless the reader scrolled up.
  useEffect(() => {
    const el = box.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [shown.lines]);

  const meta = shown.page;
  return (
    <div class="logs">
      <div class="toolbar">
        <h3>Output</h3>
        {meta && meta.attempts.length > 0 && (
          <label>
            Attempt{' '}
            <select name="attempt" value={pinned === undefined ? '' : String(pinned)} onChange={(e) => setPinned(e.currentTarget.value ? Number(e.currentTarget.value) : undefined)}>
              <option value="">newest (follow)</option>
              {meta.attempts.map((a) => (
                <option value={String(a)}>{a}</option>
              ))}
            </select>
          </label>
        )}
        {meta && (
          <span class="muted" data-testid="log-meta">
            attempt {meta.attempt}
            {meta.machine_id ? ` on ${meta.machine_id}` : ''} · {bytes(meta.stored_bytes)} of {bytes(meta.cap_bytes)} kept
            {meta.done ? ' · ended' : ' · live'}
          </span>
        )}
      </div>
      {meta?.truncated && <p class="warn">This attempt's output reached the cap of {bytes(meta.cap_bytes)}: {meta.dropped_lines.toLocaleString()} later lines were not kept.</p>}
      {meta && !meta.truncated && meta.dropped_lines > 0 && <p class="warn">{meta.dropped_lines.toLocaleString()} lines were dropped on the node while the coordinator could not be reached.</p>}
      {shown.error && <p class="error">{shown.error}</p>}
      <pre class="log" ref={box} data-testid="log">
        {shown.lines.length === 0 ? <span class="muted">{meta ? 'No output yet.' : 'Loading…'}</span> : shown.lines.map((l) => <div class={l.stream === 'stderr' ? 'err' : ''}>{l.text}</div>)}
      </pre>
    </div>
  );
}
