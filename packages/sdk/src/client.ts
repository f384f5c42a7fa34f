// The one HTTP client of the project: the CLI, the worker, tests and benchmarks all use it.
import { FAILURE_REASON_MAX } from '@drover/protocol';
import type {
  FailedBody,
  HeartbeatBody,
  Job,
  JobDefinition,
  JobEventList,
  JobList,
  JobStatus,
  Me,
  Progress,
  TokenResponse,
  User,
} from '@drover/protocol';
import http from 'node:http';
import https from 'node:https';
import { DroverApiError, DroverNetworkError } from './errors.js';

// node:http with keep-alive rather than fetch: a request costs the client a quarter of the CPU
// (fetch builds WHATWG streams, Request/Response/Headers objects and an AbortSignal per call).
const agents = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

interface RawResponse {
  status: number;
  ok: boolean;
  text: string;
}

function send(target: string, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number, signal?: AbortSignal): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const url = new URL(target);
    const lib = url.protocol === 'https:' ? https : http;
    const agent = url.protocol === 'https:' ? agents['https:'] : agents['http:'];
    const req = lib.request(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        const status = res.statusCode ?? 0;
        resolve({ status, ok: status >= 200 && status < 300, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => signal?.removeEventListener('abort', onAbort));
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });
}

export interface ClientOptions {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  /** API key, sent as X-Kelpie-Key */
  key?: string;
  /** retries for idempotent calls on network errors and 502/503/504 (default 3) */
  retries?: number;
  /** per-request timeout in ms, on top of any long-poll wait (default 30 s) */
  timeoutMs?: number;
  /** base backoff between retries in ms (default 200) */
  retryDelayMs?: number;
}

export interface ListJobsOptions {
  status?: JobStatus;
  container_group_id?: string;
  page_size?: number;
  page?: number;
  asc?: boolean;
}

export interface Machine {
  machine_id: string;
  container_group_id: string;
}

type Method = 'GET' | 'POST' | 'DELETE' | 'PATCH' | 'PUT';

const TRANSIENT_STATUS = new Set([502, 503, 504]);

export class DroverClient {
  readonly url: string;
  private readonly key: string | undefined;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly retryDelayMs: number;

  constructor(opts: ClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.key = opts.key;
    this.retries = opts.retries ?? 3;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retryDelayMs = opts.retryDelayMs ?? 200;
  }

  /**
   * One request. `idempotent` calls are retried on network errors and gateway errors with
   * exponential backoff; the others are sent once (a retried POST /jobs could queue twice).
   */
  async request<T>(
    method: Method,
    path: string,
    opts: {
      body?: unknown;
      query?: Record<string, string | number | boolean | undefined>;
      idempotent?: boolean;
      extraTimeoutMs?: number;
      /** Aborting gives up the request at once (rejecting with the signal's reason), without retries. */
      signal?: AbortSignal;
    } = {},
  ): Promise<T> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const target = `${this.url}${path}${qs.size ? `?${qs}` : ''}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.key) headers['x-kelpie-key'] = this.key;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const attempts = opts.idempotent ? this.retries + 1 : 1;
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(this.retryDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random()));
      let res: RawResponse;
      try {
        res = await send(
          target,
          method,
          headers,
          opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
          this.timeoutMs + (opts.extraTimeoutMs ?? 0),
          opts.signal,
        );
      } catch (e) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        lastError = e;
        continue;
      }
      const text = res.text;
      if (res.ok) return (text ? JSON.parse(text) : undefined) as T;
      if (opts.idempotent && TRANSIENT_STATUS.has(res.status) && attempt + 1 < attempts) {
        lastError = new DroverApiError(res.status, 'unavailable', text);
        continue;
      }
      throw toApiError(res.status, text);
    }
    if (lastError instanceof DroverApiError) throw lastError;
    const why = lastError instanceof Error ? ((lastError.cause as Error | undefined)?.message ?? lastError.message) : String(lastError);
    throw new DroverNetworkError(`cannot reach ${this.url}: ${why}`, lastError);
  }

  // jobs
  createJob(def: JobDefinition): Promise<Job> {
    return this.request('POST', '/jobs', { body: def });
  }
  createJobs(defs: JobDefinition[]): Promise<Job[]> {
    return this.request('POST', '/jobs/batch', { body: defs });
  }
  getJob(id: string): Promise<Job> {
    return this.request('GET', `/jobs/${encodeURIComponent(id)}`, { idempotent: true });
  }
  listJobs(opts: ListJobsOptions = {}): Promise<JobList> {
    return this.request('GET', '/jobs', { query: { ...opts }, idempotent: true });
  }
  /** Every job matching, page by page. */
  async *iterateJobs(opts: Omit<ListJobsOptions, 'page'> = {}): AsyncGenerator<Job> {
    const pageSize = opts.page_size ?? 100;
    for (let page = 1; ; page++) {
      const { jobs } = await this.listJobs({ ...opts, page_size: pageSize, page });
      yield* jobs;
      if (jobs.length < pageSize) return;
    }
  }
  cancelJob(id: string): Promise<{ message: string }> {
    return this.request('DELETE', `/jobs/${encodeURIComponent(id)}`, { idempotent: true });
  }
  purgeContainerGroup(groupId: string): Promise<{ count: number }> {
    return this.request('DELETE', `/jobs/container-groups/${encodeURIComponent(groupId)}`, { idempotent: true });
  }
  clearAllJobs(): Promise<void> {
    return this.request('DELETE', '/jobs', { idempotent: true });
  }
  jobEvents(id: string): Promise<JobEventList> {
    return this.request('GET', `/jobs/${encodeURIComponent(id)}/events`, { idempotent: true });
  }

  // work
  /** Claim a job for this machine; with `waitSeconds`, long-poll (Drover) until one is claimable. */
  async claimWork(machine: Machine, waitSeconds?: number, opts: { signal?: AbortSignal } = {}): Promise<Job | undefined> {
    const jobs = await this.request<Job[]>('GET', '/work', {
      query: { ...machine, wait: waitSeconds },
      extraTimeoutMs: (waitSeconds ?? 0) * 1000,
      signal: opts.signal,
    });
    return jobs[0];
  }
  heartbeat(id: string, machine: Machine, progress?: Progress): Promise<{ status: JobStatus }> {
    const body: HeartbeatBody = { ...machine, ...(progress ? { progress } : {}) };
    return this.request('POST', `/jobs/${encodeURIComponent(id)}/heartbeat`, { body, idempotent: true });
  }
  completeJob(id: string, machine: Machine): Promise<{ message: string }> {
    return this.request('POST', `/jobs/${encodeURIComponent(id)}/completed`, { body: machine, idempotent: true });
  }
  /** `reason` (Drover): why the attempt failed, kept in the job's events; made storable and cut to FAILURE_REASON_MAX. */
  failJob(id: string, machine: Machine, reason?: string): Promise<{ message: string }> {
    const body: FailedBody = { ...machine, ...(reason !== undefined ? { reason: storableReason(reason) } : {}) };
    return this.request('POST', `/jobs/${encodeURIComponent(id)}/failed`, { body, idempotent: true });
  }
  releaseJob(id: string, machine: Machine): Promise<{ message: string }> {
    return this.request('POST', `/jobs/${encodeURIComponent(id)}/release`, { body: machine, idempotent: true });
  }

  // users
  me(): Promise<Me> {
    return this.request('GET', '/users/me', { idempotent: true });
  }
  createUser(username: string): Promise<User> {
    return this.request('POST', '/users', { body: { username } });
  }
  createToken(userId: string): Promise<TokenResponse> {
    return this.request('POST', `/users/${encodeURIComponent(userId)}/token`, { body: {} });
  }

  health(): Promise<{ status: 'ok'; store: string }> {
    return this.request('GET', '/healthz', { idempotent: true });
  }
}

function toApiError(status: number, text: string): DroverApiError {
  try {
    const body = JSON.parse(text) as { error?: string; message?: string; index?: number };
    return new DroverApiError(status, body.error ?? `http_${status}`, body.message ?? text, body.index);
  } catch {
    return new DroverApiError(status, `http_${status}`, text || `HTTP ${status}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A failure reason the coordinator takes: control characters other than tab and newline become
 * spaces, lone surrogates go, and it is cut to FAILURE_REASON_MAX characters.
 */
export function storableReason(text: string): string {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  const clean = text.replace(/[\u0000-\u0008\u000b-\u001f]/g, ' ').replace(LONE_SURROGATE, '');
  if (clean.length <= FAILURE_REASON_MAX) return clean;
  let end = FAILURE_REASON_MAX - 1;
  if (/[\ud800-\udbff]/.test(clean[end - 1]!)) end--; // never split a surrogate pair
  return `${clean.slice(0, end)}…`;
}
