// Client for SaladCloud's instance metadata service (IMDS), reachable from inside a container instance.
//
// API shape, from SaladCloud's IMDS OpenAPI as published in their SDKs
// (github.com/SaladTechnologies/salad-cloud-imds-sdk-javascript, src/services/metadata/metadata-service.ts and
// models/{deletion-cost,reallocate-prototype}.ts) and https://docs.salad.com/products/sce/container-groups/imds:
//   base URL          http://169.254.169.254 (port 80; bypass any web proxy)
//   every request     header `Metadata: true` (without it, or with X-Forwarded-* headers, IMDS answers 403)
//   POST /v1/reallocate     {"reason": string, 1..1000 chars}  → 204; moves this instance to another node
//   PUT  /v1/deletion-cost  {"deletion_cost": int32}            → 200; scale-down deletes the lowest costs first
//   POST /v1/recreate       no body                             → 204; recreates this instance on the same node
//
// Errors (IMDS down, non-2xx, timeout) are logged and reported as `false`, never thrown: losing a deletion
// cost or a reallocation must not take a running job down with it.
import http from 'node:http';

export const DEFAULT_IMDS_URL = 'http://169.254.169.254';
/** The IMDS URL that says there is none (not on SaladCloud). */
export const IMDS_OFF = 'off';

/** Where the client reports what it did and what failed; `console` fits. */
export interface ImdsLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface ImdsOptions {
  /** IMDS root URL (default http://169.254.169.254). */
  baseUrl?: string;
  /** SALAD_MACHINE_ID. Unset or 'LOCAL' means not on SaladCloud: there is no IMDS to call. */
  machineId?: string;
  /** Per-request timeout, connect to last byte (default 5000 ms). */
  timeoutMs?: number;
  log?: ImdsLog;
  /** Called with 1 instead of reallocating/recreating when not on SaladCloud (default process.exit). */
  exit?: (code: number) => void;
}

const MAX_REASON = 1000;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

export class ImdsClient {
  readonly baseUrl: string;
  readonly machineId: string | undefined;
  readonly timeoutMs: number;
  private readonly log: ImdsLog;
  private readonly exit: (code: number) => void;
  /** A deletion cost is set several times per job: after one failure, the next ones are not logged until one works. */
  private deletionCostFailing = false;

  constructor(options: ImdsOptions = {}) {
    this.baseUrl = (options.baseUrl ?? DEFAULT_IMDS_URL).replace(/\/+$/, '');
    this.machineId = options.machineId;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.log = options.log ?? console;
    this.exit = options.exit ?? ((code) => process.exit(code));
  }

  /** A client configured from DROVER_IMDS_URL and SALAD_MACHINE_ID; `options` override. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, options: ImdsOptions = {}): ImdsClient {
    return new ImdsClient({ baseUrl: env.DROVER_IMDS_URL || undefined, machineId: env.SALAD_MACHINE_ID || undefined, ...options });
  }

  /**
   * True when running on a SaladCloud node: SALAD_MACHINE_ID set and not 'LOCAL', and the IMDS URL
   * not `off` (what `drover up` gives its local workers: there is no IMDS on a laptop).
   */
  get onSalad(): boolean {
    return this.machineId !== undefined && this.machineId !== '' && this.machineId !== 'LOCAL' && this.baseUrl !== IMDS_OFF;
  }

  /**
   * Asks SaladCloud to move this container instance to another node. Off SaladCloud there is nothing to
   * reallocate, so the process exits with 1 instead (a supervisor restarts it, as a reallocation would).
   */
  async reallocate(reason: string): Promise<boolean> {
    const text = reason.trim().slice(0, MAX_REASON) || 'no reason given';
    if (!this.onSalad) {
      this.log.warn(`imds: reallocation requested (${text}) but not on SaladCloud (machine id ${this.machineId ?? 'unset'}): exiting with 1`);
      this.exit(1);
      return false;
    }
    this.log.info(`imds: reallocating this instance: ${text}`);
    return this.call('POST', '/v1/reallocate', { reason: text });
  }

  /** Asks SaladCloud to recreate this container instance on the same node; off SaladCloud, exits with 1. */
  async recreate(): Promise<boolean> {
    if (!this.onSalad) {
      this.log.warn(`imds: recreation requested but not on SaladCloud (machine id ${this.machineId ?? 'unset'}): exiting with 1`);
      this.exit(1);
      return false;
    }
    this.log.info('imds: recreating this instance');
    return this.call('POST', '/v1/recreate', undefined);
  }

  /**
   * Sets this instance's deletion cost: when the container group scales down, SaladCloud deletes the
   * instances with the lowest cost first. Off SaladCloud there is no IMDS and nothing to protect: a no-op.
   */
  async setDeletionCost(cost: number): Promise<boolean> {
    if (!Number.isInteger(cost) || cost < INT32_MIN || cost > INT32_MAX) {
      this.log.warn(`imds: deletion cost ${cost} is not a 32-bit integer; not sent`);
      return false;
    }
    if (!this.onSalad) return true;
    const failure = await this.attempt('PUT', '/v1/deletion-cost', { deletion_cost: cost });
    if (failure !== undefined && !this.deletionCostFailing) this.log.warn(`${failure} (until a deletion cost is set again, further failures are not logged)`);
    this.deletionCostFailing = failure !== undefined;
    return failure === undefined;
  }

  /** One call; a failure is logged. */
  private async call(method: string, path: string, body: object | undefined): Promise<boolean> {
    const failure = await this.attempt(method, path, body);
    if (failure !== undefined) this.log.warn(failure);
    return failure === undefined;
  }

  /** One call: undefined when it worked, else what went wrong. */
  private async attempt(method: string, path: string, body: object | undefined): Promise<string | undefined> {
    try {
      const { status, text } = await this.send(method, path, body);
      if (status >= 200 && status < 300) return undefined;
      return `imds: ${method} ${path} answered ${status}${text ? `: ${text.slice(0, 500)}` : ''}`;
    } catch (e) {
      return `imds: ${method} ${path} failed: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  private send(method: string, path: string, body: object | undefined): Promise<{ status: number; text: string }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { Metadata: 'true' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    return new Promise((resolve, reject) => {
      // agent: false — a fresh connection per call: IMDS is rare and local, and no pooled socket outlives it.
      const req = http.request(`${this.baseUrl}${path}`, { method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      });
      const timer = setTimeout(() => req.destroy(new Error(`timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
      function fail(e: Error): void {
        clearTimeout(timer);
        reject(e);
      }
      req.on('error', fail);
      req.end(payload);
    });
  }
}
