// A client of SaladCloud's public API for what autoscaling and `drover salad` need: create, get,
// list and update container groups, start and stop them, list their instances and get one, list
// the organization's GPU classes. Requests keep
// under SaladCloud's per-key rate limit, wait out a 429's Retry-After, and retry server errors with
// @drover/common's backoff. The API key is sent in its header and nowhere else: no error message,
// log callback or thrown object carries it.
import { retry, type Backoff } from '@drover/common';
import {
  API_KEY_HEADER,
  CONTAINER_GROUP_STATUSES,
  INSTANCE_STATES,
  MERGE_PATCH,
  REQUESTS_PER_MINUTE,
  SALADCLOUD_API_URL,
  type ContainerGroup,
  type ContainerGroupInstance,
  type ContainerGroupPatch,
  type ContainerGroupPrototype,
  type ContainerGroupRef,
  type GpuClass,
  type ProblemDetails,
} from './types.js';
import { RateLimiter } from './rate-limit.js';

export interface SaladCloudClientOptions {
  apiKey: string;
  /** default https://api.salad.com/api/public */
  baseUrl?: string;
  /** per request, connect to last byte (default 15 s) */
  timeoutMs?: number;
  /** most requests in any 60 s (default 240, SaladCloud's limit per key) */
  requestsPerMinute?: number;
  /** tries per call, the first included (default 5) */
  attempts?: number;
  /** between retries of 5xx and network errors (default 500 ms doubling to 30 s, full jitter) */
  backoff?: Backoff;
  userAgent?: string;
  /** told before every retry: what failed and how long the client waits (never the key) */
  onRetry?: (info: { operation: string; attempt: number; delayMs: number; error: SaladCloudError }) => void;
}

export type SaladCloudErrorKind = 'http' | 'network' | 'unexpected_answer';

/** A call that failed: `status` is the HTTP status (0 when none came back). */
export class SaladCloudError extends Error {
  /** the error body (ProblemDetails), when there was one */
  readonly problem: ProblemDetails | undefined;
  /** a 429's Retry-After, in ms */
  readonly retryAfterMs: number | undefined;
  /** the request never reached SaladCloud (connection refused, name not resolved) */
  readonly neverSent: boolean;

  constructor(
    readonly kind: SaladCloudErrorKind,
    readonly operation: string,
    readonly status: number,
    message: string,
    extra: { problem?: ProblemDetails; retryAfterMs?: number; neverSent?: boolean } = {},
  ) {
    super(message);
    this.name = 'SaladCloudError';
    this.problem = extra.problem;
    this.retryAfterMs = extra.retryAfterMs;
    this.neverSent = extra.neverSent ?? false;
  }

  get notFound(): boolean {
    return this.status === 404;
  }
  get rateLimited(): boolean {
    return this.status === 429;
  }
}

interface Call {
  operation: string;
  method: 'GET' | 'PATCH' | 'POST';
  path: string;
  body?: unknown;
  /** the body's content type: JSON, or a JSON merge patch for an update */
  contentType?: 'application/json' | typeof MERGE_PATCH;
  /** a call that may have taken effect is retried only if repeating it is harmless */
  idempotent: boolean;
  signal?: AbortSignal;
}

const DEFAULT_BACKOFF: Backoff = { baseMs: 500, maxMs: 30_000 };

/** Retry-After is seconds or an HTTP date (RFC 9110 §10.2.3); undefined if absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const seg = encodeURIComponent;

export class SaladCloudClient {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly backoff: Backoff;
  private readonly userAgent: string;
  private readonly limiter: RateLimiter;
  private readonly onRetry: SaladCloudClientOptions['onRetry'];

  constructor(opts: SaladCloudClientOptions) {
    if (!opts.apiKey) throw new Error('a SaladCloud API key is required');
    this.apiKey = opts.apiKey;
    this.baseUrl = (opts.baseUrl ?? SALADCLOUD_API_URL).replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.attempts = opts.attempts ?? 5;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.userAgent = opts.userAgent ?? 'drover-saladcloud/0.1.0';
    this.limiter = new RateLimiter(opts.requestsPerMinute ?? REQUESTS_PER_MINUTE, 60_000);
    this.onRetry = opts.onRetry;
  }

  /** get_container_group */
  async getContainerGroup(ref: ContainerGroupRef, signal?: AbortSignal): Promise<ContainerGroup> {
    const body = await this.call({ operation: 'get_container_group', method: 'GET', path: groupPath(ref), idempotent: true, signal });
    return containerGroup(body, 'get_container_group');
  }

  /** list_container_groups */
  async listContainerGroups(organization: string, project: string, signal?: AbortSignal): Promise<ContainerGroup[]> {
    const body = await this.call({
      operation: 'list_container_groups',
      method: 'GET',
      path: `/organizations/${seg(organization)}/projects/${seg(project)}/containers`,
      idempotent: true,
      signal,
    });
    const items = (body as { items?: unknown }).items;
    if (!Array.isArray(items)) throw unexpected('list_container_groups', 'no items array');
    return items.map((g) => containerGroup(g, 'list_container_groups'));
  }

  /**
   * create_container_group (201). Not repeated after an answer that may have been lost: the group
   * may exist by then, and a second create of its name is refused (the caller can get it by name).
   */
  async createContainerGroup(organization: string, project: string, prototype: ContainerGroupPrototype, signal?: AbortSignal): Promise<ContainerGroup> {
    const body = await this.call({
      operation: 'create_container_group',
      method: 'POST',
      path: `/organizations/${seg(organization)}/projects/${seg(project)}/containers`,
      body: prototype,
      contentType: 'application/json',
      idempotent: false,
      signal,
    });
    return containerGroup(body, 'create_container_group');
  }

  /** The group whose `id` is `id`, found in the project's list; undefined if none has it. */
  async findContainerGroupById(organization: string, project: string, id: string, signal?: AbortSignal): Promise<ContainerGroup | undefined> {
    return (await this.listContainerGroups(organization, project, signal)).find((g) => g.id === id);
  }

  /** update_container_group: a JSON merge patch (only the fields given change). Setting the same value again is harmless, so it is retried. */
  async updateContainerGroup(ref: ContainerGroupRef, patch: ContainerGroupPatch, signal?: AbortSignal): Promise<ContainerGroup> {
    const body = await this.call({ operation: 'update_container_group', method: 'PATCH', path: groupPath(ref), body: patch, contentType: MERGE_PATCH, idempotent: true, signal });
    return containerGroup(body, 'update_container_group');
  }

  setReplicas(ref: ContainerGroupRef, replicas: number, signal?: AbortSignal): Promise<ContainerGroup> {
    return this.updateContainerGroup(ref, { replicas }, signal);
  }

  /** start_container_group (202) */
  async startContainerGroup(ref: ContainerGroupRef, signal?: AbortSignal): Promise<void> {
    await this.call({ operation: 'start_container_group', method: 'POST', path: `${groupPath(ref)}/start`, idempotent: false, signal });
  }

  /** stop_container_group (202) */
  async stopContainerGroup(ref: ContainerGroupRef, signal?: AbortSignal): Promise<void> {
    await this.call({ operation: 'stop_container_group', method: 'POST', path: `${groupPath(ref)}/stop`, idempotent: false, signal });
  }

  /** list_container_group_instances */
  async listContainerGroupInstances(ref: ContainerGroupRef, signal?: AbortSignal): Promise<ContainerGroupInstance[]> {
    const body = await this.call({
      operation: 'list_container_group_instances',
      method: 'GET',
      path: `${groupPath(ref)}/instances`,
      idempotent: true,
      signal,
    });
    const instances = (body as { instances?: unknown }).instances;
    if (!Array.isArray(instances)) throw unexpected('list_container_group_instances', 'no instances array');
    return instances.map((i) => instance(i, 'list_container_group_instances'));
  }

  /** get_container_group_instance (the spec answers it with 202) */
  async getContainerGroupInstance(ref: ContainerGroupRef, instanceId: string, signal?: AbortSignal): Promise<ContainerGroupInstance> {
    const body = await this.call({
      operation: 'get_container_group_instance',
      method: 'GET',
      path: `${groupPath(ref)}/instances/${seg(instanceId)}`,
      idempotent: true,
      signal,
    });
    return instance(body, 'get_container_group_instance');
  }

  /** list_gpu_classes: the GPU classes the organization can ask for (their ids go in resources.gpu_classes). */
  async listGpuClasses(organization: string, signal?: AbortSignal): Promise<GpuClass[]> {
    const body = await this.call({ operation: 'list_gpu_classes', method: 'GET', path: `/organizations/${seg(organization)}/gpu-classes`, idempotent: true, signal });
    const items = (body as { items?: unknown } | undefined)?.items;
    if (!Array.isArray(items)) throw unexpected('list_gpu_classes', 'no items array');
    for (const c of items as Partial<GpuClass>[]) {
      if (!c || typeof c.id !== 'string' || typeof c.name !== 'string') throw unexpected('list_gpu_classes', 'a GPU class without id or name');
    }
    return items as GpuClass[];
  }

  private call(c: Call): Promise<unknown> {
    return retry(() => this.once(c), {
      attempts: this.attempts,
      backoff: this.backoff,
      signal: c.signal,
      retryable: (e) => e instanceof SaladCloudError && retryable(e, c.idempotent),
      delayFor: (e) => (e as SaladCloudError).retryAfterMs,
      onRetry: (r) => this.onRetry?.({ operation: c.operation, attempt: r.attempt, delayMs: r.delayMs, error: r.error as SaladCloudError }),
    });
  }

  private async once(c: Call): Promise<unknown> {
    await this.limiter.take(c.signal);
    const headers: Record<string, string> = { [API_KEY_HEADER]: this.apiKey, accept: 'application/json', 'user-agent': this.userAgent };
    if (c.body !== undefined) headers['content-type'] = c.contentType ?? 'application/json';
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.baseUrl}${c.path}`, {
        method: c.method,
        headers,
        body: c.body === undefined ? null : JSON.stringify(c.body),
        signal: c.signal ? AbortSignal.any([c.signal, timeout]) : timeout,
        redirect: 'error',
      });
      text = await res.text();
    } catch (err) {
      if (c.signal?.aborted) throw err;
      const cause = (err as Error & { cause?: Error & { code?: string } }).cause;
      const why = timeout.aborted ? `no answer within ${this.timeoutMs} ms` : (cause?.code ?? cause?.message ?? (err as Error).message);
      // Refused or unresolved: the request never arrived, so even a start may be sent again.
      throw new SaladCloudError('network', c.operation, 0, `SaladCloud ${c.operation}: ${why}`, {
        neverSent: cause?.code === 'ECONNREFUSED' || cause?.code === 'ENOTFOUND',
      });
    }
    if (res.ok) {
      if (text === '') return undefined;
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw unexpected(c.operation, `HTTP ${res.status} with a body that is not JSON`);
      }
    }
    let problem: ProblemDetails | undefined;
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed && typeof parsed === 'object') problem = parsed as ProblemDetails;
    } catch {
      // not ProblemDetails: the status says enough
    }
    const detail = [problem?.title, problem?.detail].filter((s) => typeof s === 'string' && s.length > 0).join(': ');
    const retryAfterMs = res.status === 429 ? parseRetryAfter(res.headers.get('retry-after')) : undefined;
    if (retryAfterMs !== undefined) this.limiter.pauseUntil(Date.now() + retryAfterMs);
    throw new SaladCloudError(
      'http',
      c.operation,
      res.status,
      `SaladCloud ${c.operation}: HTTP ${res.status}${detail ? ` ${detail}` : ''}`.slice(0, 600),
      { ...(problem ? { problem } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) },
    );
  }
}

/** 429 and 503 were not acted on; other 5xx and lost answers may have been, so only idempotent calls repeat them. */
function retryable(e: SaladCloudError, idempotent: boolean): boolean {
  if (e.status === 429 || e.status === 503) return true;
  if (e.kind === 'network') return idempotent || e.neverSent;
  return idempotent && e.status >= 500;
}

function groupPath(ref: ContainerGroupRef): string {
  return `/organizations/${seg(ref.organization_name)}/projects/${seg(ref.project_name)}/containers/${seg(ref.container_group_name)}`;
}

function unexpected(operation: string, why: string): SaladCloudError {
  return new SaladCloudError('unexpected_answer', operation, 0, `SaladCloud ${operation}: unexpected answer (${why})`);
}

/** An instance with the spec's required fields (id, machine_id, state, update_time, version). */
function instance(value: unknown, operation: string): ContainerGroupInstance {
  const i = value as Partial<ContainerGroupInstance> | null;
  if (!i || typeof i !== 'object' || typeof i.id !== 'string' || typeof i.machine_id !== 'string') throw unexpected(operation, 'an instance without id or machine_id');
  if (!(INSTANCE_STATES as readonly unknown[]).includes(i.state)) throw unexpected(operation, `instance ${i.id} with state ${JSON.stringify(i.state)}`);
  return i as ContainerGroupInstance;
}

/** The fields Drover relies on, checked: a changed API fails loudly, not with a wrong replica count. */
function containerGroup(value: unknown, operation: string): ContainerGroup {
  const g = value as Partial<ContainerGroup> | null;
  if (!g || typeof g !== 'object') throw unexpected(operation, 'not a container group');
  if (typeof g.id !== 'string' || typeof g.name !== 'string') throw unexpected(operation, 'container group without id or name');
  if (!Number.isInteger(g.replicas)) throw unexpected(operation, `container group ${g.name} without integer replicas`);
  const status = g.current_state?.status;
  if (!(CONTAINER_GROUP_STATUSES as readonly unknown[]).includes(status)) {
    throw unexpected(operation, `container group ${g.name} with current_state.status ${JSON.stringify(status)}`);
  }
  return g as ContainerGroup;
}
