// Waiting for a condition in tests: poll with a generous deadline instead of sleeping a fixed time.
import assert from 'node:assert/strict';

export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A coordinator's /metrics (it needs the admin key). */
export async function metricsText(server: { url: string; adminKey?: string | undefined }): Promise<string> {
  const res = await fetch(`${server.url}/metrics`, { headers: server.adminKey ? { 'x-kelpie-key': server.adminKey } : {} });
  const text = await res.text();
  assert.equal(res.status, 200, `GET /metrics: ${text.slice(0, 200)}`);
  return text;
}

/** How many long-polls a coordinator holds right now (its /metrics gauge). */
export async function waitingLongPolls(server: { url: string; adminKey?: string | undefined }): Promise<number> {
  const text = await metricsText(server);
  const m = /^drover_longpoll_waiting (\d+)/m.exec(text);
  assert.ok(m, 'the server reports drover_longpoll_waiting');
  return Number(m[1]);
}
