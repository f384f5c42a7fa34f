// Container groups: queue depth, running and banned machines; one group's machines.
import type { ContainerGroupDetail, ContainerGroupList } from '@drover/protocol';
import { api } from '../api.js';
import { age, time } from '../format.js';
import { href, useNow, usePoll } from '../hooks.js';
import { Loading, Problem, STATUSES, Status } from './common.js';
import { ScalingPanel } from './scaling.js';

export function GroupsView() {
  // Each summary reads every job of the user (about 75 ms at 100,000 jobs on SQLite: docs/benchmarks.md).
  const groups = usePoll((signal) => api<ContainerGroupList>('/container-groups', {}, signal), [], 5000);
  return (
    <section>
      <h2>Container groups</h2>
      <Problem error={groups.error} />
      {!groups.data ? (
        <Loading />
      ) : groups.data.groups.length === 0 ? (
        <p class="muted">No jobs yet: a group appears once a job names it.</p>
      ) : (
        <table data-testid="groups">
          <thead>
            <tr>
              <th>Group</th>
              <th>Queue depth</th>
              <th>Running machines</th>
              <th>Banned machines</th>
              <th>Stalest heartbeat</th>
              {STATUSES.map((s) => (
                <th>{s}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {groups.data.groups.map((g) => (
              <tr data-group={g.container_group_id}>
                <td>
                  <a href={href(['groups', g.container_group_id])}>{g.container_group_id}</a>
                </td>
                <td class="num">{g.queue_depth}</td>
                <td class="num">{g.running_machines}</td>
                <td class="num">{g.banned_machines}</td>
                <td>{g.oldest_heartbeat_age_s === null ? '—' : `${Math.round(g.oldest_heartbeat_age_s)} s`}</td>
                {STATUSES.map((s) => (
                  <td class="num">
                    <a href={href(['jobs'], { group: g.container_group_id, status: s })}>{g.jobs[s]}</a>
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function GroupView({ id }: { id: string }) {
  const now = useNow();
  const group = usePoll((signal) => api<ContainerGroupDetail>(`/container-groups/${encodeURIComponent(id)}`, {}, signal), [id]);
  const g = group.data;
  return (
    <section>
      <p>
        <a href={href(['groups'])}>‹ Container groups</a>
      </p>
      <h2>
        Group <span class="mono">{id}</span>
      </h2>
      <Problem error={group.error} />
      {!g ? (
        <Loading />
      ) : (
        <>
          <dl class="facts">
            <dt>Queue depth</dt>
            <dd>{g.summary.queue_depth}</dd>
            <dt>Running machines</dt>
            <dd>{g.summary.running_machines}</dd>
            <dt>Banned machines</dt>
            <dd>{g.summary.banned_machines}</dd>
            <dt>Jobs</dt>
            <dd>
              {STATUSES.map((s) => (
                <a class="count" href={href(['jobs'], { group: id, status: s })}>
                  <Status status={s} /> {g.summary.jobs[s]}
                </a>
              ))}
            </dd>
          </dl>
          <div class="columns">
            <div>
              <h3>Machines running its jobs</h3>
              {g.machines.length === 0 ? (
                <p class="muted">None.</p>
              ) : (
                <table class="small">
                  <thead>
                    <tr>
                      <th>Machine</th>
                      <th>Job</th>
                      <th>Attempt</th>
                      <th>Heartbeat</th>
                    </tr>
                  </thead>
                  <tbody>
                    {g.machines.map((m) => (
                      <tr class={m.lease_live ? '' : 'lapsed'}>
                        <td class="mono">{m.machine_id}</td>
                        <td>
                          <a href={href(['jobs', m.job_id])}>{m.job_id.slice(0, 8)}</a>
                        </td>
                        <td class="num">{m.attempt}</td>
                        <td>
                          {age(m.heartbeat, now)}
                          {m.lease_live ? '' : ' (lease lapsed)'}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </div>
            <div>
              <h3>Banned machines</h3>
              {g.banned.length === 0 ? (
                <p class="muted">None: no machine has failed a job of this group.</p>
              ) : (
                <table class="small">
                  <thead>
                    <tr>
                      <th>Machine</th>
                      <th>Jobs failed</th>
                      <th>Last</th>
                    </tr>
                  </thead>
                  <tbody>
                    {g.banned.map((b) => (
                      <tr>
                        <td class="mono">{b.machine_id}</td>
                        <td class="num">{b.jobs}</td>
                        <td>{time(b.last)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </div>
          </div>
          <ScalingPanel groupId={id} />
        </>
      )}
    </section>
  );
}
