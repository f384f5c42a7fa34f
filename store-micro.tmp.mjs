import { openStore } from '@drover/server';
import { rmSync } from 'node:fs';
for (let run = 0; run < 3; run++) {
rmSync('/tmp/sm2', { recursive: true, force: true });
const store = openStore('/tmp/sm2/drover.db', 2);
await store.migrate();
await store.createUser({ id: 'u', username: 'u', created: 1, admin: 0, webhook_secret: 's' });
const N = 10000;
const jobs = Array.from({ length: N }, (_, i) => ({ id: `id${i}`, definition: { command: 'x', arguments: [], environment: {}, container_group_id: 'g', max_failures: 3, heartbeat_interval: 30, compression: false } }));
for (let i = 0; i < N / 1000; i++) await store.createJobs('u', jobs.slice(i * 1000, i * 1000 + 1000), Date.now());
const t0 = process.hrtime.bigint(); const c0 = process.cpuUsage();
let done = 0;
await Promise.all(Array.from({ length: 64 }, async (_, w) => {
  for (;;) {
    const job = await store.claimJob({ userId: 'u', machineId: `m${w}`, groupId: 'g', now: Date.now() });
    if (!job) return;
    await store.heartbeat({ userId: 'u', jobId: job.id, machineId: `m${w}`, now: Date.now() });
    await store.completeJob({ userId: 'u', jobId: job.id, machineId: `m${w}`, now: Date.now() });
    done++;
  }
}));
const s = Number(process.hrtime.bigint() - t0) / 1e9; const cpu = process.cpuUsage(c0);
console.log(`${done} cycles in ${s.toFixed(2)}s = ${(done / s).toFixed(0)}/s; cpu ${((cpu.user + cpu.system) / 1000 / done).toFixed(3)} ms/cycle`);
await store.close();
}
