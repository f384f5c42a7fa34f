// A group's scaling rule (GET /scaling-rules/:id) and its recent decisions
// (GET /scaling-rules/:id/decisions), or a word that it has none.
import type { ScalingDecisionList, ScalingRule } from '@drover/protocol';
import { ApiError, api } from '../api.js';
import { time } from '../format.js';
import { usePoll } from '../hooks.js';
import { Problem } from './common.js';

export function ScalingPanel({ groupId }: { groupId: string }) {
  const path = `/scaling-rules/${encodeURIComponent(groupId)}`;
  const rule = usePoll(
    async (signal) => {
      try {
        return await api<ScalingRule>(path, {}, signal);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      }
    },
    [groupId],
    5000,
  );
  const decisions = usePoll((signal) => (rule.data ? api<ScalingDecisionList>(`${path}/decisions`, { limit: 20 }, signal) : Promise.resolve(undefined)), [groupId, rule.data ? 1 : 0], 5000);
  const r = rule.data;
  return (
    <div class="scaling" data-testid="scaling">
      <h3>Scaling</h3>
      <Problem error={rule.error} />
      {r === null ? (
        <p class="muted">No scaling rule: this group is not scaled by Drover (drover scaling set {groupId} …).</p>
      ) : r ? (
        <>
          <dl class="facts">
            <dt>Rule</dt>
            <dd>
              {r.min_replicas}–{r.max_replicas} replicas, one per {r.jobs_per_replica} job{r.jobs_per_replica === 1 ? '' : 's'}; idle after {r.idle_threshold_seconds} s; cooldown{' '}
              {r.cooldown_seconds} s; provider {r.provider}
              {r.enabled ? '' : ' (disabled)'}
            </dd>
            {r.disabled_reason && (
              <>
                <dt>Disabled</dt>
                <dd class="error">{r.disabled_reason}</dd>
              </>
            )}
            <dt>Replicas</dt>
            <dd>
              {r.replicas ?? '—'}
              {r.provider_status ? ` (${r.provider_status})` : ''}
            </dd>
            <dt>Last evaluated</dt>
            <dd>{time(r.evaluated)}</dd>
          </dl>
          <h4>Recent decisions</h4>
          <Problem error={decisions.error} />
          {decisions.data && decisions.data.decisions.length === 0 && <p class="muted">None yet.</p>}
          {decisions.data && decisions.data.decisions.length > 0 && (
            <table class="small" data-testid="decisions">
              <thead>
                <tr>
                  <th>When</th>
                  <th>Trigger</th>
                  <th>Queue</th>
                  <th>Desired</th>
                  <th>Action</th>
                  <th>Replicas</th>
                  <th>Outcome</th>
                  <th>Why</th>
                </tr>
              </thead>
              <tbody>
                {decisions.data.decisions.map((d) => (
                  <tr class={d.outcome === 'error' ? 'lapsed' : ''}>
                    <td>{time(d.at)}</td>
                    <td>{d.trigger}</td>
                    <td>
                      {d.pending} pending, {d.running} running
                    </td>
                    <td class="num">{d.desired}</td>
                    <td>{d.action}</td>
                    <td>
                      {d.from ?? '?'} → {d.to ?? '?'}
                    </td>
                    <td>{d.outcome}</td>
                    <td title={d.error ?? ''}>{d.reason}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      ) : null}
    </div>
  );
}
