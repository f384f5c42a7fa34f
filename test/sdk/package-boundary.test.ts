// The API client (@drover/sdk) is what every caller of the coordinator loads: the CLI, the worker,
// apps, scripts. It must stay a small package: loading it pulls in the protocol's schemas and the
// retry policy, never the storage engine, the AWS SDK or the worker-thread pool (those belong to the
// in-job code, @drover/checkpointer).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Every module URL a fresh Node process resolves while it imports `specifier` (ESM resolve hook). */
function modulesLoadedBy(specifier: string): string[] {
  const hooks = 'let port; export function initialize(d) { port = d.port; }'
    + ' export async function resolve(s, c, next) { const r = await next(s, c); port.postMessage(r.url); return r; }';
  const probe = `
    import { register } from 'node:module';
    import { MessageChannel } from 'node:worker_threads';
    const { port1, port2 } = new MessageChannel();
    const seen = new Set();
    port1.on('message', (u) => seen.add(u));
    register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)}, { data: { port: port2 }, transferList: [port2] });
    const m = await import(${JSON.stringify(specifier)});
    if (typeof m.DroverClient !== 'function') throw new Error('no DroverClient');
    await new Promise((r) => setTimeout(r, 100));
    port1.close();
    process.stdout.write(JSON.stringify([...seen]));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

test('@drover/sdk loads without the storage engine, the AWS SDK or piscina', () => {
  const loaded = modulesLoadedBy('@drover/sdk');
  assert.ok(loaded.some((u) => u.includes('/packages/sdk/')), 'the probe saw the SDK itself load');
  assert.ok(loaded.some((u) => u.includes('/packages/protocol/')), 'and the protocol it depends on');
  const heavy = loaded.filter((u) => /\/(packages\/storage|packages\/checkpointer|@aws-sdk|@smithy|piscina)\//.test(u));
  assert.deepEqual(heavy, []);
});
