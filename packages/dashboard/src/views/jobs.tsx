// The jobs list: one page from the server at a time (GET /jobs page/page_size), so 100,000 jobs cost
// the page what 50 do; filters by status and container group; refreshed every 2 s.
import { useRef } from 'preact/hooks';
import type { ContainerGroupList, JobList } from '@drover/protocol';
import { api } from '../api.js';
import { age, shortId, time } from '../format.js';
import { href, useNow, usePoll } from '../hooks.js';
import { Loading, Problem, ProgressBar, STATUSES, Status } from './common.js';

export const PAGE_SIZE = 50;

export function JobsView({ query }: { query: URLSearchParams }) {
  const status = query.get('status') ?? '';
  const group = query.get('group') ?? '';
  const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const now = useNow();
  const jobs = usePoll((signal) => api<JobList>('/jobs', { status, container_group_id: group, page, page_size: PAGE_SIZE }, signal), [status, group, page]);
  // The group summaries read every job of the user (about 90 ms at 100,000 jobs on SQLite): asked
  // for once the page of jobs is shown, so they never hold the first rows up.
  const listed = useRef(false);
  if (jobs.data) listed.current = true;
  const groups = usePoll((signal) => api<ContainerGroupList>('/container-groups', {}, signal), [], 10_000, listed.current);
  const go = (changes: Record<string, string | number | undefined>) => {
    location.hash = href(['jobs'], { status, group, page, ...changes });
  };
  const total = groups.data?.groups
    .filter((g) => !group || g.container_group_id === group)
    .reduce((n, g) => n + (status ? g.jobs[status as keyof typeof g.jobs] : Object.values(g.jobs).reduce((a, b) => a + b, 0)), 0);
  const pages = total === undefined ? undefined : Math.max(1, Math.ceil(total / PAGE_SIZE));

  return (
    <section>
      <div class="toolbar">
        <h2>Jobs</h2>
        <label>
          Status{' '}
          <select name="status" value={status} onChange={(e) => go({ status: e.currentTarget.value, page: 1 })}>
            <option value="">all</option>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Group{' '}
          <select name="group" value={group} onChange={(e) => go({ group: e.currentTarget.value, page: 1 })}>
            <option value="">all</option>
            {groups.data?.groups.map((g) => (
              <option value={g.container_group_id}>{g.container_group_id}</option>
            ))}
          </select>
        </label>
        <span class="pager">
          <button type="button" disabled={page <= 1} onClick={() => go({ page: page - 1 })}>
            ‹ Newer
          </button>
          <span class="page-of">
            page {page}
            {pages !== undefined ? ` of ${pages}` : ''}
            {total !== undefined ? ` · ${total.toLocaleString()} jobs` : ''}
          </span>
          <button type="button" disabled={(jobs.data?.jobs.length ?? 0) < PAGE_SIZE} onClick={() => go({ page: page + 1 })}>
            Older ›
          </button>
        </span>
      </div>
      <Problem error={jobs.error} />
      {!jobs.data ? (
        <Loading />
      ) : jobs.data.jobs.length === 0 ? (
        <p class="muted">No jobs{status || group ? ' match these filters' : ' yet'}.</p>
      ) : (
        <table class="jobs">
          <thead>
            <tr>
              <th>Job</th>
              <th>Status</th>
              <th>Group</th>
              <th>Attempt</th>
              <th>Machine</th>
              <th>Progress</th>
              <th>Heartbeat</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {jobs.data.jobs.map((j) => (
              <tr key={j.id} data-job={j.id}>
                <td>
                  <a href={href(['jobs', j.id])} title={j.id}>
                    {shortId(j.id)}
                  </a>
                </td>
                <td>
                  <Status status={j.status} />
                </td>
                <td>
                  <a href={href(['groups', j.container_group_id])}>{j.container_group_id}</a>
                </td>
                <td class="num">{j.attempt}</td>
                <td class="mono">{j.machine_id ?? '—'}</td>
                <td>
                  <ProgressBar fraction={j.progress?.fraction} message={j.progress?.message} />
                </td>
                <td>{j.status === 'running' ? age(j.heartbeat, now) : '—'}</td>
                <td title={j.created}>{time(j.created)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
