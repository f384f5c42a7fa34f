// The dashboard in a real browser (headless Chromium through playwright-core) against a real
// coordinator, real `drover worker` processes and a loopback S3: a job appears in the list, its
// progress moves, kill -9 of its node shows the lease lapse and the resume in its timeline, and its
// output streams in without a reload. Then the group page (queue, machines, scaling rule) and the
// charts (a handover with the work it redid), and the sign-in: the key stays out of every URL.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser } from '@drover/testing/browser';
import { REPO_ROOT, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { spawnWorker, type TestWorker } from '@drover/testing/worker';
import { startBackend, type Backend } from '@drover/testing/storage';

const COUNTER = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');
const UI_TIMEOUT = 30_000;

describe('dashboard (Chromium, real coordinator and workers)', () => {
  let server: TestServer;
  let user: TestUser;
  let s3: Backend;
  let browser: Browser;
  const workers: TestWorker[] = [];

  function worker(group: string): TestWorker {
    const w = spawnWorker({ url: server.url, key: user.token, group, storageEnv: s3.env });
    workers.push(w);
    return w;
  }

  async function signIn(page: Page, key: string): Promise<void> {
    await page.goto(`${server.url}/`);
    await page.waitForURL(/\/ui\/$/);
    await page.fill('input[name=key]', key);
    await page.click('button[type=submit]');
  }

  before(async () => {
    server = await startTestServer('sqlite');
    user = await server.user();
    s3 = await startBackend('s3');
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await Promise.all(workers.map((w) => w.killNode()));
    await s3?.close();
    await server?.close();
  });

  it("shows a job appear, its progress move, kill -9 of its node as a lease lapse and a resume in its timeline, and its output live", async () => {
    const group = 'g-ui';
    const page = await browser.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    await signIn(page, user.token);
    await page.waitForSelector('text=No jobs yet');

    const job = await user.client.createJob({
      command: process.execPath,
      arguments: [COUNTER],
      environment: { CKPT_DIR: 'ck', OUT_DIR: 'out', STEPS: '60', STEP_MS: '150' },
      container_group_id: group,
      heartbeat_interval: 1,
      sync: {
        before: [{ bucket: s3.bucket, prefix: 'ui/ck/', local_path: 'ck', direction: 'download' }],
        during: [{ bucket: s3.bucket, prefix: 'ui/ck/', local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
        after: [{ bucket: s3.bucket, prefix: 'ui/out/', local_path: 'out', direction: 'upload' }],
      },
    });
    // It appears in the list without a reload.
    const row = page.locator(`tr[data-job="${job.id}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /pending/);

    const a = worker(group);
    await row.locator('text=running').waitFor();
    await row.locator('a').first().click();
    await page.waitForURL(new RegExp(`#/jobs/${job.id}$`));

    // Its progress moves.
    const progress = page.locator('[data-testid=progress] [role=progressbar]');
    await progress.waitFor();
    const reading = async () => Number(await progress.getAttribute('aria-valuenow'));
    const first = await reading();
    await waitFor('the progress bar to move', async () => (await reading()) > first + 5, UI_TIMEOUT);
    // Its output streams in: the app's first line, then more lines, without a reload.
    const log = page.locator('[data-testid=log]');
    await log.locator('text=/starting at step 0 of 60/').waitFor();
    assert.equal(await page.locator('[data-testid=attempt]').innerText(), '1');
    assert.equal(await page.locator('[data-testid=machine]').innerText(), a.machineId);

    // The node dies; another takes the job over and resumes it from its checkpoint.
    await waitFor('progress past 30 %', async () => (await reading()) >= 30, UI_TIMEOUT);
    await a.killNode();
    const b = worker(group);
    const timeline = page.locator('[data-testid=timeline]');
    await timeline.locator(`li[data-type=lease_expired]:has-text("${a.machineId}")`).waitFor();
    await timeline.locator(`li[data-type=claimed]:has-text("${b.machineId}")`).waitFor();
    await page.locator('[data-testid=attempt]').locator('text=2').waitFor();
    // The log follows to the new attempt on its own: attempt 2 resumed past step 0.
    await log.locator('text=/starting at step [1-9]\\d* of 60/').waitFor();
    await page.locator('[data-testid=log-meta]').locator(`text=/attempt 2 on ${b.machineId}/`).waitFor();
    const types = await timeline.locator('li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-type')));
    assert.deepEqual(types.slice(0, 4), ['created', 'claimed', 'lease_expired', 'claimed']);

    await timeline.locator('li[data-type=completed]').waitFor({ timeout: 60_000 });
    await log.locator('text=/finished at step 60/').waitFor();
    // The handover, with the work it redid (A's last progress − where B resumed).
    await page.locator('text=Handovers').waitFor();
    assert.match(await page.locator('table.small').first().innerText(), /lease expired/);

    // The key is in this tab's sessionStorage, never in a URL.
    assert.ok(!page.url().includes(user.token));
    assert.equal(await page.evaluate('sessionStorage.getItem("drover.key")'), user.token);
    await page.close();
  });

  it("shows a container group's queue, machines, banned machines and scaling rule, and the charts", async () => {
    const group = 'g-ui2';
    await user.client.createScalingRule({ container_group_id: group, provider: 'none', min_replicas: 0, max_replicas: 3 });
    // One job that fails on its first machine (that machine is banned from it), two that wait.
    await user.client.createJob({ command: process.execPath, arguments: ['-e', 'process.exit(3)'], container_group_id: group, max_failures: 5, sync: {} });
    await user.client.createJobs([1, 2].map(() => ({ command: 'true', container_group_id: group, sync: {} })));
    const claimed = await user.client.claimWork({ machine_id: 'node-x', container_group_id: group });
    assert.ok(claimed);
    await user.client.failJob(claimed.id, { machine_id: 'node-x', container_group_id: group }, 'exited with code 3');
    // node-y takes the failed-back job over (a handover caused by a failed attempt) and holds it.
    const again = await user.client.claimWork({ machine_id: 'node-y', container_group_id: group });
    assert.equal(again?.id, claimed.id);

    const page = await browser.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    await signIn(page, user.token);
    await page.click('text=Container groups');
    const row = page.locator(`tr[data-group="${group}"]`);
    await row.waitFor();
    const cells = await row.locator('td').allInnerTexts();
    assert.deepEqual(cells.slice(0, 4), [group, '2', '1', '1'], 'queue depth 2, node-y running, node-x banned');
    await row.locator('a').first().click();
    await page.locator('text=node-x').waitFor();
    const scaling = page.locator('[data-testid=scaling]');
    await scaling.locator('text=/0–3 replicas/').waitFor();
    await scaling.locator('text=provider none').waitFor();
    await scaling.locator('[data-testid=decisions]').waitFor();

    await page.click('text=Charts');
    const chart = page.locator('[data-testid=status-chart]');
    await chart.waitFor();
    // The first test's job completed; this one's three are pending or running.
    await chart.locator('figcaption').locator('text=/completed 1/').waitFor();
    const bars = page.locator('[data-testid=redone-chart] rect');
    await bars.first().waitFor();
    assert.ok((await bars.count()) >= 2, 'a lease lapse and a failed attempt');
    await page.close();
  });

  it('refuses a wrong key and asks again', async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    await signIn(page, 'drv_nope_nope');
    await page.locator('text=The coordinator refused this key.').waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("drover.key")'), null);
    await page.close();
  });
});
