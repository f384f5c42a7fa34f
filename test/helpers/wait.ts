// Waiting for a condition in tests: poll with a generous deadline instead of sleeping a fixed time.
import assert from 'node:assert/strict';

export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** How many long-polls a coordinator holds right now (its /metrics gauge). */
export async function waitingLongPolls(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^drover_longpoll_waiting (\d+)/m.exec(text);
  assert.ok(m, 'the server reports drover_longpoll_waiting');
  return Number(m[1]);
}
