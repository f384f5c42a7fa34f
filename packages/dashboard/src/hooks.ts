// Live data: each view polls what it shows (one page of at most 50 jobs, one job, one group) every
// couple of seconds while the tab is visible; a job's log is followed with the API's long-poll.
import { useEffect, useRef, useState } from 'preact/hooks';

export const POLL_MS = 2000;

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
  /** when the data was last fetched */
  at: number | undefined;
}

/** Fetches now and every `ms` while the page is visible; again at once when `deps` change; not at all until `enabled`. */
export function usePoll<T>(fetcher: (signal: AbortSignal) => Promise<T>, deps: unknown[], ms = POLL_MS, enabled = true): Polled<T> {
  const [state, setState] = useState<Polled<T>>({ data: undefined, error: undefined, at: undefined });
  const fetchRef = useRef(fetcher);
  fetchRef.current = fetcher;
  useEffect(() => {
    setState({ data: undefined, error: undefined, at: undefined });
    if (!enabled) return;
    const stop = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      if (document.visibilityState === 'visible') {
        try {
          const data = await fetchRef.current(stop.signal);
          if (!stop.signal.aborted) setState({ data, error: undefined, at: Date.now() });
        } catch (e) {
          if (!stop.signal.aborted) setState((s) => ({ ...s, error: (e as Error).message }));
        }
      }
      if (!stop.signal.aborted) timer = setTimeout(() => void run(), ms);
    };
    void run();
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
  }, [...deps, enabled]);
  return state;
}

/** The current time, ticking every second (for ages such as "heartbeat 3 s ago"). */
export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

/** The hash route: `#/jobs/ID?x=1` → { path: ['jobs', 'ID'], query }. */
export function useRoute(): { path: string[]; query: URLSearchParams } {
  const read = () => {
    const [p = '', q = ''] = location.hash.replace(/^#\/?/, '').split('?');
    return { path: p.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q) };
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

export function href(path: string[], query: Record<string, string | number | undefined> = {}): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') qs.set(k, String(v));
  return `#/${path.map(encodeURIComponent).join('/')}${qs.size ? `?${qs}` : ''}`;
}
