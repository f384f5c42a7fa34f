// Dashboard benchmark: what its first load costs, and whether the jobs list stays responsive with
// 100,000 jobs (it asks the server for one page of 50, so it should cost what 100 jobs cost).
//
//   npm run bench:dashboard -- [--jobs 100000] [--runs 5] [--json FILE]
//
// 1. First-load JavaScript: the scripts the built index.html loads (the module entry and its
//    modulepreloads), raw and gzipped, from packages/dashboard/dist. Fails (exit 1) past 300 KB.
// 2. In headless Chromium (Debian's /usr/bin/chromium through playwright-core), against a real
//    coordinator (SQLite, in this process): from navigation to the first row of the jobs list, and
//    the JavaScript actually transferred, with 100 jobs and with --jobs jobs in the database
//    (created through the store, 1000 per batch), --runs loads each, alternating, medians shown.
//    Also GET /jobs?page_size=50 alone (the list's one request), first and last page, and a page
//    change in the browser (clicking "Older"), and GET /container-groups (the list's page count).
import { readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { NewJob } from '@drover/server';
import { launchBrowser } from '@drover/testing/browser';
import { REPO_ROOT, startTestServer, type TestServer, type TestUser } from '@drover/testing/server';

const LIMIT_BYTES = 300 * 1024;
const PAGE_SIZE = 50;

const { values: args } = parseArgs({
  options: { jobs: { type: 'string', default: '100000' }, runs: { type: 'string', default: '5' }, json: { type: 'string' } },
});
const JOBS = Number(args.jobs);
const RUNS = Number(args.runs);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

// ---- 1. first-load JavaScript, from the build ----
const dist = path.join(REPO_ROOT, 'packages/dashboard/dist');
const html = readFileSync(path.join(dist, 'index.html'), 'utf8');
const scripts = [...html.matchAll(/<(?:script[^>]*src|link[^>]*rel="modulepreload"[^>]*href)="\/ui\/([^"]+\.js)"/g)].map((m) => m[1]!);
const sizes = scripts.map((s) => {
  const body = readFileSync(path.join(dist, s));
  return { file: s, raw: body.length, gzip: gzipSync(body, { level: 9 }).length };
});
const raw = sizes.reduce((n, s) => n + s.raw, 0);
const gzip = sizes.reduce((n, s) => n + s.gzip, 0);
console.log(`first-load JavaScript: ${sizes.map((s) => s.file).join(', ')}: ${kb(raw)} raw, ${kb(gzip)} gzipped (limit ${kb(LIMIT_BYTES)} raw)`);

// ---- 2. the jobs list in Chromium, 100 jobs against JOBS jobs ----
async function seed(server: TestServer, user: TestUser, n: number): Promise<void> {
  const group = 'bench';
  for (let done = 0; done < n; done += 1000) {
    const batch: NewJob[] = Array.from({ length: Math.min(1000, n - done) }, () => ({
      id: randomUUID(),
      definition: { command: 'app', arguments: [], environment: {}, container_group_id: group, max_failures: 3, heartbeat_interval: 30, compression: false },
    }));
    await server.server.store.createJobs(user.id, batch, Date.now());
  }
}

interface Sample {
  firstRowMs: number;
  jsBytes: number;
  apiFirstMs: number;
  apiLastMs: number;
  nextPageMs: number;
  /** GET /container-groups: the list's page count and the group filter come from it */
  groupsMs: number;
}

async function measure(label: string, n: number): Promise<{ label: string; jobs: number; samples: Sample[]; server: TestServer; user: TestUser }> {
  const server = await startTestServer('sqlite');
  const user = await server.user();
  const t = performance.now();
  await seed(server, user, n);
  console.log(`${label}: ${n.toLocaleString()} jobs created in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { label, jobs: n, samples: [], server, user };
}

const browser = await launchBrowser();
const cases = [await measure('small', 100), await measure('large', JOBS)];
try {
  for (let run = 0; run < RUNS; run++) {
    for (const c of run % 2 ? [...cases].reverse() : cases) {
      const context = await browser.newContext();
      // The key goes where the sign-in form puts it (sessionStorage), never into the URL.
      await context.addInitScript({ content: `sessionStorage.setItem('drover.key', ${JSON.stringify(c.user.token)})` });
      const page = await context.newPage();
      let jsBytes = 0;
      page.on('response', async (res) => {
        if (res.url().endsWith('.js')) jsBytes += (await res.body().catch(() => Buffer.alloc(0))).length;
      });
      const t0 = performance.now();
      await page.goto(`${c.server.url}/ui/#/jobs`);
      await page.locator('table.jobs tbody tr').first().waitFor({ timeout: 60_000 });
      const firstRowMs = performance.now() - t0;
      const rows = await page.locator('table.jobs tbody tr').count();
      if (rows !== Math.min(PAGE_SIZE, c.jobs)) throw new Error(`${c.label}: ${rows} rows shown, expected one page`);
      const before = await page.locator('table.jobs tbody tr').first().getAttribute('data-job');
      const t1 = performance.now();
      await page.click('text=Older ›');
      await page.waitForFunction(`document.querySelector('table.jobs tbody tr')?.getAttribute('data-job') !== ${JSON.stringify(before)}`);
      const nextPageMs = performance.now() - t1;
      await context.close();

      const api = async (p: number | string) => {
        const s = performance.now();
        const target = typeof p === 'string' ? p : `/jobs?page_size=${PAGE_SIZE}&page=${p}`;
        const res = await fetch(`${c.server.url}${target}`, { headers: { 'x-kelpie-key': c.user.token } });
        await res.arrayBuffer();
        return performance.now() - s;
      };
      const apiFirstMs = await api(1);
      const apiLastMs = await api(Math.ceil(c.jobs / PAGE_SIZE));
      const groupsMs = await api('/container-groups');
      c.samples.push({ firstRowMs, jsBytes, apiFirstMs, apiLastMs, nextPageMs, groupsMs });
    }
  }
} finally {
  await browser.close();
  for (const c of cases) await c.server.close();
}

const rows = cases.map((c) => ({
  jobs: c.jobs,
  firstRowMs: median(c.samples.map((s) => s.firstRowMs)),
  nextPageMs: median(c.samples.map((s) => s.nextPageMs)),
  apiFirstMs: median(c.samples.map((s) => s.apiFirstMs)),
  apiLastMs: median(c.samples.map((s) => s.apiLastMs)),
  groupsMs: median(c.samples.map((s) => s.groupsMs)),
  jsBytes: median(c.samples.map((s) => s.jsBytes)),
}));
console.log('');
console.log('jobs in database | first row shown | next page shown | GET /jobs page 1 | last page | GET /container-groups | JS transferred');
for (const r of rows) {
  console.log(
    `${r.jobs.toLocaleString().padStart(16)} | ${r.firstRowMs.toFixed(0).padStart(12)} ms | ${r.nextPageMs.toFixed(0).padStart(12)} ms | ${r.apiFirstMs.toFixed(1).padStart(13)} ms | ${r.apiLastMs.toFixed(1).padStart(6)} ms | ${r.groupsMs.toFixed(1).padStart(17)} ms | ${kb(r.jsBytes)}`,
  );
}
const [small, large] = rows as [(typeof rows)[number], (typeof rows)[number]];
console.log(`ratio ${JOBS.toLocaleString()} / 100 jobs: first row ${(large.firstRowMs / small.firstRowMs).toFixed(2)}×, next page ${(large.nextPageMs / small.nextPageMs).toFixed(2)}×, API page 1 ${(large.apiFirstMs / small.apiFirstMs).toFixed(2)}×`);
if (args.json) writeFileSync(args.json, JSON.stringify({ js: { files: sizes, raw, gzip }, rows }, null, 2));
if (raw > LIMIT_BYTES) {
  console.error(`the first load's JavaScript is ${kb(raw)}, over the ${kb(LIMIT_BYTES)} budget`);
  process.exit(1);
}
