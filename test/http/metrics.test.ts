// /metrics covers what an operator watches, on both stores: queue depth, running jobs and heartbeat
// lag per group, claims, handovers and lease lapses, failures, the redone work, the webhook backlog,
// scaling decisions and HTTP latency histograms.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { STORES, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { metricsText, waitFor } from '@drover/testing/wait';

/** The value of one series (`name{labels}`), or undefined when /metrics does not have it. */
function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

for (const kind of STORES) {
  describe(`metrics (${kind})`, () => {
    let srv: TestServer;
    let user: TestUser;
    const scrape = () => metricsText(srv);

    before(async () => {
      srv = await startTestServer(kind);
      user = await srv.user();
    });
    after(async () => srv?.close());

    test('queue depth, running jobs and heartbeat lag are per group; claims, handovers, lapses, failures and redone work are counted', async () => {
      const group = `g-metrics-${kind}`;
      const m1 = { machine_id: 'm1', container_group_id: group };
      const m2 = { machine_id: 'm2', container_group_id: group };
      const jobs = await user.client.createJobs([0, 1, 2].map(() => ({ command: 'app', container_group_id: group, heartbeat_interval: 1, webhook: 'http://127.0.0.1:9/hook' })));
      const a = await user.client.claimWork(m1);
      const b = await user.client.claimWork(m2);
      assert.ok(a && b);
      let text = await scrape();
      assert.equal(metric(text, `drover_queue_depth{container_group_id="${group}"}`), 1);
      assert.equal(metric(text, `drover_running_jobs{container_group_id="${group}"}`), 2);
      assert.ok((metric(text, `drover_heartbeat_lag_seconds{container_group_id="${group}"}`) ?? -1) >= 0);
      assert.ok((metric(text, 'drover_webhook_backlog') ?? 0) >= 1, 'the running webhooks are owed (their URL does not answer)');
      assert.equal(metric(text, 'drover_claims_total{result="job"}'), 2);
      await user.client.cancelJob(jobs[2]!.id); // from here on the only claimable jobs are the ones handed over

      // m2's job: progress, then a failed attempt, taken over by m1 (a handover), which resumes lower.
      await user.client.heartbeat(b.id, m2, { fraction: 0.6 });
      await user.client.failJob(b.id, m2, 'exit 1');
      const again = await user.client.claimWork(m1);
      assert.equal(again?.id, b.id);
      await user.client.heartbeat(b.id, m1, { fraction: 0.5 });
      // m1's first job goes silent: its lease (2 × 1 s) lapses and m2 takes it over.
      let taken;
      await waitFor("m1's first lease to lapse", async () => (taken = await user.client.claimWork(m2)) !== undefined, 10_000);
      assert.equal(taken!.id, a.id);

      text = await scrape();
      assert.equal(metric(text, 'drover_job_failures_total{final="false"}'), 1);
      assert.equal(metric(text, 'drover_handovers_total{cause="failed_attempt"}'), 1);
      assert.equal(metric(text, 'drover_handovers_total{cause="lease_expired"}'), 1);
      assert.equal(metric(text, 'drover_lease_lapses_total'), 1);
      assert.equal(metric(text, 'drover_handover_redone_fraction_count'), 1);
      assert.ok(Math.abs((metric(text, 'drover_handover_redone_fraction_sum') ?? 0) - 0.1) < 1e-9);
      assert.equal(metric(text, 'drover_handover_redone_fraction_bucket{le="0.05"}'), 0);
      assert.equal(metric(text, 'drover_handover_redone_fraction_bucket{le="0.1"}'), 1);
      assert.ok((metric(text, 'drover_http_request_duration_seconds_count{method="GET",route="/work",status="200"}') ?? 0) >= 4);
      assert.match(text, /^drover_http_request_duration_seconds_bucket\{le="0.005",method="POST",route="\/jobs\/:id\/heartbeat",status="200"\} \d+$/m);
    });

    test('scaling decisions are counted', async () => {
      const group = `g-metrics-scale-${kind}`;
      await user.client.createScalingRule({ container_group_id: group, provider: 'none' });
      await waitFor('a scaling decision counted', async () => /^drover_autoscaler_decisions_total\{[^}]*provider="none"[^}]*\} [1-9]/m.test(await scrape()), 10_000);
    });

    test('a group with no pending or running job is not in the per-group gauges', async () => {
      const group = `g-metrics-done-${kind}`;
      const job = await user.client.createJob({ command: 'app', container_group_id: group });
      const m = { machine_id: 'm9', container_group_id: group };
      await user.client.claimWork(m);
      await user.client.completeJob(job.id, m);
      assert.equal(metric(await scrape(), `drover_queue_depth{container_group_id="${group}"}`), undefined);
    });
  });
}
