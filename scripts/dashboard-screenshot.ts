// Takes the README's screenshots of the dashboard from a real run: a coordinator, two real
// `drover worker` processes, a loopback S3, eight counter jobs in two groups, one node killed with
// kill -9 mid-job (its job resumes on a new node). Writes docs/images/dashboard-{job,jobs,charts}.png.
//
//   npm run build && node --import tsx scripts/dashboard-screenshot.ts
import { join } from 'node:path';
import { launchBrowser } from '@drover/testing/browser';
import { REPO_ROOT, startTestServer } from '@drover/testing/server';
import { waitFor } from '@drover/testing/wait';
import { spawnWorker, type TestWorker } from '@drover/testing/worker';
import { startBackend } from '@drover/testing/storage';

const COUNTER = join(REPO_ROOT, 'test/fixtures/counter-app.mjs');
const OUT = join(REPO_ROOT, 'docs/images');

const server = await startTestServer('sqlite');
const user = await server.user('ada');
const s3 = await startBackend('s3');
const workers: TestWorker[] = [];
const worker = (group: string) => {
  const w = spawnWorker({ url: server.url, key: user.token, group, storageEnv: s3.env });
  workers.push(w);
  return w;
};
const job = (group: string, name: string, steps: number, stepMs = 150) =>
  user.client.createJob({
    command: process.execPath,
    arguments: [COUNTER],
    environment: { CKPT_DIR: 'ck', OUT_DIR: 'out', STEPS: String(steps), STEP_MS: String(stepMs) },
    container_group_id: group,
    heartbeat_interval: 1,
    sync: {
      before: [{ bucket: s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'download' }],
      during: [{ bucket: s3.bucket, prefix: `${name}/ck/`, local_path: 'ck', direction: 'upload', pattern: 'ckpt-*' }],
      after: [{ bucket: s3.bucket, prefix: `${name}/out/`, local_path: 'out', direction: 'upload' }],
    },
  });
const browser = await launchBrowser();
try {
  const first = await job('md-simulations', 'md-0', 12);
  const main = await job('md-simulations', 'md-1', 80, 400);
  for (let i = 2; i < 5; i++) await job('md-simulations', `md-${i}`, 40);
  for (let i = 0; i < 3; i++) await job('llm-finetune', `ft-${i}`, 60);
  const a = worker('md-simulations');
  worker('llm-finetune');
  await waitFor('the first job done', async () => (await user.client.getJob(first.id)).status === 'completed', 60_000);
  await waitFor('the long job at 40 %', async () => ((await user.client.getJob(main.id)).progress?.fraction ?? 0) >= 0.4, 60_000);
  await a.killNode();
  worker('md-simulations');
  await waitFor('the long job resumed', async () => ((await user.client.getJob(main.id)).attempt === 2 && ((await user.client.getJob(main.id)).progress?.fraction ?? 0) > 0.5), 60_000);

  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 }, deviceScaleFactor: 1 });
  await context.addInitScript({ content: `sessionStorage.setItem('drover.key', ${JSON.stringify(user.token)})` });
  const page = await context.newPage();
  await page.goto(`${server.url}/ui/#/jobs/${main.id}`);
  await page.locator('[data-testid=timeline] li[data-type=lease_expired]').waitFor();
  await page.locator('[data-testid=log]').locator('text=/starting at step [1-9]/').waitFor();
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(OUT, 'dashboard-job.png'), fullPage: true });
  await page.goto(`${server.url}/ui/#/jobs`);
  await page.locator('table.jobs tbody tr').first().waitFor();
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(OUT, 'dashboard-jobs.png'), clip: { x: 0, y: 0, width: 1360, height: 420 } });
  await page.goto(`${server.url}/ui/#/charts`);
  await page.click('button:has-text("1 h")');
  await page.locator('[data-testid=redone-chart] rect').first().waitFor();
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(OUT, 'dashboard-charts.png'), fullPage: true });
  console.log(`wrote ${OUT}/dashboard-{job,jobs,charts}.png`);
} finally {
  await browser.close();
  await Promise.all(workers.map((w) => w.killNode()));
  await s3.close();
  await server.close();
}
