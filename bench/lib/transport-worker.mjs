// The worker threads of bench/http-transport.ts: the transfer engine's own GET-into-a-file task
// (pool-worker.ts runGet: BodyCheck, write, rename), with its HTTP transport chosen per task:
// raw-http.ts (what the engine uses), or undici's Pool.request behind the same interface. Plain
// JavaScript over the built packages, so the threads start as the engine's do (no loader).
/* global AbortController */
import { runGet } from '../../packages/storage/dist/pool-worker.js';
import { get as rawGet } from '../../packages/storage/dist/raw-http.js';
import { Pool } from 'undici';

const pools = new Map();

/** raw-http's `get(req, exchange)` on undici: one keep-alive Pool per origin, as many connections as requests in flight. */
function undiciGet(req, exchange) {
  const origin = `${req.protocol}//${req.hostname}:${req.port ?? (req.protocol === 'https:' ? 443 : 80)}`;
  let pool = pools.get(origin);
  if (!pool) {
    pool = new Pool(origin, { keepAliveTimeout: 4_000, connect: { timeout: req.connectionTimeoutMs } });
    pools.set(origin, pool);
  }
  const ac = new AbortController();
  pool.request({
    method: 'GET', path: req.path, headers: req.headers, signal: ac.signal,
    headersTimeout: req.requestTimeoutMs, bodyTimeout: req.requestTimeoutMs,
  }).then(({ statusCode, headers, body }) => {
    const head = new Map();
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) head.set(name, Array.isArray(value) ? value.join(', ') : value);
    exchange.onHead({ status: statusCode, headers: head });
    body.on('data', (chunk) => exchange.onBody(chunk));
    body.on('end', () => exchange.onEnd());
    body.on('error', (err) => exchange.onError(err));
  }, (err) => exchange.onError(err));
  return () => ac.abort();
}

export default function run({ transport, task }) {
  return runGet(task, transport === 'undici' ? undiciGet : rawGet);
}
