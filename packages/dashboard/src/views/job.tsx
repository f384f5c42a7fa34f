// One job: what it is, where it runs and how far it is, its timeline (claims, lease lapses,
// failures, releases), its handovers, its output (live) and its sync settings.
import type { HandoverList, Job, JobEvent, JobEventList } from '@drover/protocol';
import { api } from '../api.js';
import { age, percent, time } from '../format.js';
import { href, useNow, usePoll } from '../hooks.js';
import { Loading, Problem, ProgressBar, Status } from './common.js';
import { Logs } from './logs.js';

const FINISHED = ['completed', 'failed', 'canceled'];

const EVENT_WORDS: Record<JobEvent['type'], string> = {
  created: 'queued',
  claimed: 'claimed by',
  lease_expired: 'lease lapsed on',
  released: 'released by',
  failed_attempt: 'attempt failed on',
  failed: 'failed for good on',
  completed: 'completed by',
  canceled: 'canceled',
};

export function JobView({ id }: { id: string; query: URLSearchParams }) {
  const now = useNow();
  const job = usePoll((signal) => api<Job>(`/jobs/${id}`, {}, signal), [id]);
  const events = usePoll((signal) => api<JobEventList>(`/jobs/${id}/events`, {}, signal), [id]);
  const handovers = usePoll((signal) => api<HandoverList>('/stats/handovers', { job_id: id, limit: 100 }, signal), [id], 5000);
  const j = job.data;
  if (!j) return job.error ? <Problem error={job.error} /> : <Loading />;
  const finished = FINISHED.includes(j.status);
  return (
    <section class="job">
      <p>
        <a href={href(['jobs'])}>‹ Jobs</a>
      </p>
      <h2>
        Job <span class="mono">{j.id}</span> <Status status={j.status} />
      </h2>
      <Problem error={job.error} />
      <dl class="facts">
        <dt>Group</dt>
        <dd>
          <a href={href(['groups', j.container_group_id])}>{j.container_group_id}</a>
        </dd>
        <dt>Attempt</dt>
        <dd data-testid="attempt">{j.attempt}</dd>
        <dt>Machine</dt>
        <dd class="mono" data-testid="machine">
          {j.machine_id ?? '—'}
        </dd>
        <dt>Progress</dt>
        <dd data-testid="progress">
          <ProgressBar fraction={j.progress?.fraction} message={j.progress?.message} /> {j.progress?.message && <span class="muted">{j.progress.message}</span>}
        </dd>
        <dt>Heartbeat</dt>
        <dd>
          {j.status === 'running' ? age(j.heartbeat, now) : '—'} <span class="muted">(every {j.heartbeat_interval} s; lease {j.lease_timeout ?? 2 * j.heartbeat_interval} s)</span>
        </dd>
        <dt>Failures</dt>
        <dd>
          {j.num_failures} of {j.max_failures}
        </dd>
        <dt>Command</dt>
        <dd class="mono">{[j.command, ...j.arguments].join(' ')}</dd>
        <dt>Created</dt>
        <dd>{time(j.created)}</dd>
        <dt>Started</dt>
        <dd>{time(j.started)}</dd>
        {finished && (
          <>
            <dt>Ended</dt>
            <dd>{time(j.completed ?? j.failed ?? j.canceled)}</dd>
          </>
        )}
      </dl>

      <div class="columns">
        <div>
          <h3>Timeline</h3>
          {!events.data ? (
            <Loading />
          ) : (
            <ol class="timeline" data-testid="timeline">
              {events.data.events.map((e) => (
                <li class={`ev ev-${e.type}`} data-type={e.type}>
                  <time title={e.at}>{new Date(e.at).toLocaleTimeString()}</time> <b>#{e.attempt}</b> {EVENT_WORDS[e.type]} <span class="mono">{e.machine_id ?? ''}</span>
                  {e.reason && <div class="reason">{e.reason}</div>}
                </li>
              ))}
            </ol>
          )}
          {handovers.data && handovers.data.handovers.length > 0 && (
            <>
              <h3>Handovers</h3>
              <table class="small">
                <thead>
                  <tr>
                    <th>Attempt</th>
                    <th>Cause</th>
                    <th>Reached</th>
                    <th>Resumed at</th>
                    <th>Redone</th>
                  </tr>
                </thead>
                <tbody>
                  {handovers.data.handovers.map((h) => (
                    <tr>
                      <td class="num">{h.attempt}</td>
                      <td>{h.cause.replace('_', ' ')}</td>
                      <td>{h.progress_before === null ? '—' : percent(h.progress_before)}</td>
                      <td>{h.progress_resumed === null ? '—' : percent(h.progress_resumed)}</td>
                      <td>{h.redone === null ? '—' : percent(h.redone)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
        </div>
        <div>
          <h3>Sync</h3>
          <SyncSettings job={j} />
        </div>
      </div>
      <Logs jobId={j.id} finished={finished} />
    </section>
  );
}

function SyncSettings({ job }: { job: Job }) {
  if (job.sync) {
    const phases = (['before', 'during', 'after'] as const).filter((p) => job.sync?.[p]?.length);
    if (phases.length === 0) return <p class="muted">sync: {'{}'} — the application manages its own data.</p>;
    return (
      <table class="small">
        <thead>
          <tr>
            <th>Phase</th>
            <th>Local path</th>
            <th>Bucket / prefix</th>
            <th>Pattern</th>
          </tr>
        </thead>
        <tbody>
          {phases.flatMap((p) =>
            job.sync![p]!.map((e) => (
              <tr>
                <td>{p}</td>
                <td class="mono">{e.local_path}</td>
                <td class="mono">
                  {e.bucket}/{e.prefix}
                </td>
                <td class="mono">{e.pattern ?? '—'}</td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    );
  }
  const legacy = (['input', 'checkpoint', 'output'] as const).filter((k) => job[`${k}_bucket`]);
  if (legacy.length === 0) return <p class="muted">No sync settings.</p>;
  return (
    <ul>
      {legacy.map((k) => (
        <li class="mono">
          {k}: {job[`${k}_bucket`]}/{job[`${k}_prefix`] ?? ''}
        </li>
      ))}
    </ul>
  );
}
