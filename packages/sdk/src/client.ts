// The one HTTP client of the project: the CLI, the worker, tests and benchmarks all use it.
import { retry } from '@drover/common';
import { FAILURE_REASON_MAX } from '@drover/protocol';
import type {
  ContainerGroupDetail,
  ContainerGroupList,
  TokenList,
  CreateScalingRuleBody,
  FailedBody,
  HandoverList,
  HeartbeatBody,
  Job,
  JobDefinition,
  JobEventList,
  JobHistory,
  JobList,
  LogBatch,
  LogBatchResponse,
  LogPage,
  JobStatus,
  Me,
  PatchScalingRuleBody,
  Progress,
  ScalingDecisionList,
  ScalingRule,
  ScalingRuleList,
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

export interface LogPageOptions {
  /** which attempt (default: the newest with output) */
  attempt?: number;
  /** lines after this seq (a previous page's `next`) */
  after?: number;
  limit?: number;
  /** the last N lines instead */
  tail?: number;
  /** follow: wait up to this many seconds for a line when there is none after `after` */
  wait?: number;
}

export interface Machine {
  machine_id: string;
  container_group_id: string;
}

type Method = 'GET' | 'POST' | 'DELETE' | 'PATCH' | 'PUT';

const TRANSIENT_STATUS = new Set([502, 503, 504]);

/** The request did not get an answer (refused, reset, timed out): `error` is why. */
class Unreachable extends Error {
  constructor(readonly error: unknown) {
    super('unreachable');
  }
}

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
   * One request. `idempotent` calls are retried on network errors and gateway errors (502/503/504)
   * with exponential backoff (@drover/common's policy, proportional jitter); the others are sent
   * once (a retried POST /jobs could queue twice).
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
    const body = opts.body !== undefined ? JSON.stringify(opts.body) : undefined;
    const timeoutMs = this.timeoutMs + (opts.extraTimeoutMs ?? 0);
    try {
      return await retry(async () => {
        let res: RawResponse;
        try {
          res = await send(target, method, headers, body, timeoutMs, opts.signal);
        } catch (e) {
          throw new Unreachable(e);
        }
        if (!res.ok) throw toApiError(res.status, res.text, this.url);
        if (!res.text) return undefined as T;
        try {
          return JSON.parse(res.text) as T;
        } catch {
          throw new DroverApiError(res.status, 'not_json', `${this.url} answered with ${describeBody(res.text)}, not JSON: is it a Drover (or Kelpie) coordinator?`);
        }
      }, {
        attempts: opts.idempotent ? this.retries + 1 : 1,
        // No cap: the delays double from retryDelayMs for as many retries as the caller allows.
        backoff: { baseMs: this.retryDelayMs, maxMs: Number.POSITIVE_INFINITY, jitter: 'proportional' },
        retryable: (e) => e instanceof Unreachable || (e instanceof DroverApiError && TRANSIENT_STATUS.has(e.status)),
        signal: opts.signal,
      });
    } catch (e) {
      // An abort (during a try or the wait between two) gives up with the signal's own reason.
      if (opts.signal?.aborted && !(e instanceof DroverApiError)) throw opts.signal.reason;
      if (!(e instanceof Unreachable)) throw e;
      const cause = e.error;
      const why = cause instanceof Error ? ((cause.cause as Error | undefined)?.message ?? cause.message) : String(cause);
      throw new DroverNetworkError(`cannot reach ${this.url}: ${why}`, cause);
    }
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

  /** A page of a job's output (Drover); with `wait`, a long-poll for the next lines. */
  jobLogs(id: string, opts: LogPageOptions = {}, signal?: AbortSignal): Promise<LogPage> {
    return this.request('GET', `/jobs/${encodeURIComponent(id)}/logs`, {
      query: { ...opts },
      idempotent: true,
      extraTimeoutMs: (opts.wait ?? 0) * 1000,
      ...(signal ? { signal } : {}),
    });
  }

  // dashboard reads (Drover)
  containerGroups(): Promise<ContainerGroupList> {
    return this.request('GET', '/container-groups', { idempotent: true });
  }
  containerGroup(id: string): Promise<ContainerGroupDetail> {
    return this.request('GET', `/container-groups/${encodeURIComponent(id)}`, { idempotent: true });
  }
  jobHistory(opts: { hours?: number; buckets?: number; container_group_id?: string } = {}): Promise<JobHistory> {
    return this.request('GET', '/stats/jobs', { query: { ...opts }, idempotent: true });
  }
  handovers(opts: { limit?: number; container_group_id?: string; job_id?: string } = {}): Promise<HandoverList> {
    return this.request('GET', '/stats/handovers', { query: { ...opts }, idempotent: true });
  }

  // work
  /**
   * Ship a batch of an attempt's output lines (Drover). Safe to send again (the coordinator stores
   * each seq once), but sent once here: the worker's log shipper keeps the lines and retries on its own schedule.
   */
  shipLogs(id: string, batch: LogBatch, opts: { signal?: AbortSignal } = {}): Promise<LogBatchResponse> {
    return this.request('POST', `/jobs/${encodeURIComponent(id)}/logs`, { body: batch, ...(opts.signal ? { signal: opts.signal } : {}) });
  }
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
  /** `progress` (Drover): the app's last progress, so the finished job shows where it ended. */
  completeJob(id: string, machine: Machine, progress?: Progress): Promise<{ message: string }> {
    const body = progress !== undefined ? { ...machine, progress } : machine;
    return this.request('POST', `/jobs/${encodeURIComponent(id)}/completed`, { body, idempotent: true });
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
  /** (admin) A user's tokens: ids and issue times, never a secret. */
  listTokens(userId: string): Promise<TokenList> {
    return this.request('GET', `/users/${encodeURIComponent(userId)}/tokens`, { idempotent: true });
  }
  /** (admin) Revokes a token by its id (the 16 hex digits after `drv_`). */
  async revokeToken(tokenId: string): Promise<void> {
    await this.request('DELETE', `/tokens/${encodeURIComponent(tokenId)}`, { idempotent: true });
  }
  /** (admin) Deletes a user with its keys, finished jobs and rules; refused (409) while it has pending or running jobs. */
  async deleteUser(userId: string): Promise<void> {
    await this.request('DELETE', `/users/${encodeURIComponent(userId)}`, { idempotent: true });
  }

  // scaling rules (Kelpie's /scaling-rules; decisions are Drover's)
  createScalingRule(rule: CreateScalingRuleBody): Promise<ScalingRule> {
    return this.request('POST', '/scaling-rules', { body: rule });
  }
  listScalingRules(): Promise<ScalingRuleList> {
    return this.request('GET', '/scaling-rules', { idempotent: true });
  }
  getScalingRule(containerGroupId: string): Promise<ScalingRule> {
    return this.request('GET', `/scaling-rules/${encodeURIComponent(containerGroupId)}`, { idempotent: true });
  }
  /** Changes only the fields given; setting the same values again is harmless, so it is retried. */
  updateScalingRule(containerGroupId: string, changes: PatchScalingRuleBody): Promise<ScalingRule> {
    return this.request('PATCH', `/scaling-rules/${encodeURIComponent(containerGroupId)}`, { body: changes, idempotent: true });
  }
  deleteScalingRule(containerGroupId: string): Promise<void> {
    return this.request('DELETE', `/scaling-rules/${encodeURIComponent(containerGroupId)}`, { idempotent: true });
  }
  /** The rule's decisions, newest first (`before`: ids below it, for paging). */
  scalingDecisions(containerGroupId: string, opts: { limit?: number; before?: number } = {}): Promise<ScalingDecisionList> {
    return this.request('GET', `/scaling-rules/${encodeURIComponent(containerGroupId)}/decisions`, { query: { ...opts }, idempotent: true });
  }
  /** Admin: every scaling rule of every user. */
  clearScalingRules(): Promise<void> {
    return this.request('DELETE', '/scaling-rules', { idempotent: true });
  }

  health(): Promise<{ status: 'ok'; store: string }> {
    return this.request('GET', '/healthz', { idempotent: true });
  }
}

/** What a body that is not the API's JSON looks like, in a few words (never a whole HTML page). */
function describeBody(text: string): string {
  if (/^\s*<(!doctype|html|\?xml|head|body)/i.test(text)) return 'an HTML page';
  const first = text.trim().split('\n')[0]?.slice(0, 200) ?? '';
  return first ? JSON.stringify(first) : 'an empty body';
}

function toApiError(status: number, text: string, url: string): DroverApiError {
  let body: { error?: string; message?: string; index?: number } | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    body = undefined;
  }
  if (body && typeof body === 'object' && (typeof body.error === 'string' || typeof body.message === 'string')) {
    return new DroverApiError(status, body.error ?? `http_${status}`, body.message ?? text, body.index);
  }
  // Not the API's error shape: a proxy, a web server, a wrong URL.
  return new DroverApiError(status, `http_${status}`, `${url} answered HTTP ${status} with ${describeBody(text)}: is it a Drover (or Kelpie) coordinator?`);
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
