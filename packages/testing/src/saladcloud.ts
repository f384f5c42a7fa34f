// SaladCloud's public API on loopback, for tests and benchmarks: the container group operations of
// shared/reference/saladcloud-public-api.yaml (paths, methods, content types, status codes, JSON
// bodies, ProblemDetails errors, the Salad-Api-Key header), with a small state machine per group
// (stopped → start → deploying → running → stop → stopped), created by create_container_group or
// added by a test, with stable instances (get_container_group_instance finds them by id) and the
// organization's GPU classes. Every request is recorded so tests can
// assert the exact calls; behaviours can be switched: 429 with Retry-After, 5xx, a group stuck in
// deploying, a group that is gone (404), and answers held back (the call takes effect at once, its
// answer waits) to catch a coordinator mid-call.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const FAKE_ORG = 'acme';
export const FAKE_PROJECT = 'drover-test';

export type FakeStatus = 'pending' | 'running' | 'stopped' | 'succeeded' | 'failed' | 'deploying';

export interface FakeGroup {
  id: string;
  name: string;
  organization_name: string;
  project_name: string;
  replicas: number;
  status: FakeStatus;
  version: number;
  created: string;
  updated: string;
  /** CreateContainer as created (a test-added group has a default one) */
  container: Record<string, unknown>;
  restart_policy: string;
  autostart_policy: boolean;
  display_name: string;
  /** the instances of a running group, kept as long as the group has them */
  instances: FakeInstance[];
}

export interface FakeInstance {
  id: string;
  machine_id: string;
  state: 'allocating' | 'downloading' | 'creating' | 'running' | 'stopping';
  update_time: string;
  version: number;
  deletion_cost: number;
  ready: boolean;
  started: boolean;
}

/** The organization's GPU classes (list_gpu_classes). */
export const FAKE_GPU_CLASSES = [
  { id: 'ed563892-aacd-40f5-80b7-90c9be6c759b', name: 'RTX 4090 (24 GB)', prices: [{ priority: 'high', price: '0.30' }, { priority: 'batch', price: '0.18' }], is_high_demand: true },
  { id: 'a5db5c50-cbcb-4596-ae80-6a0c8090d80f', name: 'RTX 3090 (24 GB)', prices: [{ priority: 'high', price: '0.20' }], is_high_demand: false },
] as const;

export interface SaladRequest {
  method: string;
  path: string;
  /** lower-cased, as Node gives them */
  headers: IncomingHttpHeaders;
  body: string;
  /** the answer's status (set once it is decided; held answers have it too) */
  status?: number;
  at: number;
}

interface Failure {
  status: number;
  retryAfter?: string;
  /** only requests this matches fail (default: every request) */
  match?: (r: SaladRequest) => boolean;
  remaining: number;
}

interface Hold {
  match: (r: SaladRequest) => boolean;
  waiting: (() => void)[];
  released: boolean;
  arrived: SaladRequest[];
}

export interface FakeSaladCloud {
  url: string;
  apiKey: string;
  requests: SaladRequest[];
  /** Adds a stopped group with `replicas` (default 0); returns it. */
  addGroup(name: string, opts?: { id?: string; replicas?: number; status?: FakeStatus; organization?: string; project?: string }): FakeGroup;
  /** The group's instances as SaladCloud would list them now. */
  instances(name: string): FakeInstance[];
  group(name: string): FakeGroup | undefined;
  /** The group is deleted: every call on it answers 404. */
  removeGroup(name: string): void;
  /** The next `count` requests (matching `match`) answer `status` (ProblemDetails; a 429 with Retry-After). */
  fail(status: number, opts?: { count?: number; retryAfter?: string; match?: (r: SaladRequest) => boolean }): void;
  /** A started group stays in deploying (true) or reaches running (false, the default). */
  stuckDeploying(stuck: boolean): void;
  /** Requests matching take effect at once but are answered only after release(). */
  hold(match: (r: SaladRequest) => boolean): { arrived: SaladRequest[]; release(): void };
  /** Requests that change a group: PATCH, start, stop. */
  changes(name?: string): SaladRequest[];
  close(): Promise<void>;
}

const NAME = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
/** The properties of ContainerGroupPatch. */
const PATCH_FIELDS = new Set([
  'container',
  'country_codes',
  'display_name',
  'liveness_probe',
  'networking',
  'queue_autoscaler',
  'readiness_probe',
  'replicas',
  'scaling-actions',
  'scheduled-scaling-enabled',
  'startup_probe',
]);

function problem(res: ServerResponse, status: number, title: string, detail?: string, headers: Record<string, string> = {}): number {
  const body = JSON.stringify({ type: 'about:blank', title, status, ...(detail ? { detail } : {}) });
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(body);
  return status;
}

const DEFAULT_CONTAINER = { command: [], image: 'ghcr.io/acme/app:1', resources: { cpu: 4, memory: 8192, gpu_classes: [] } };

/** A running group has `replicas` running instances, the same ones from call to call; others have none. */
function syncInstances(g: FakeGroup): FakeInstance[] {
  const want = g.status === 'running' ? g.replicas : 0;
  if (g.instances.length > want) g.instances.length = want;
  while (g.instances.length < want) {
    g.instances.push({ id: randomUUID(), machine_id: randomUUID(), state: 'running', update_time: g.updated, version: g.version, deletion_cost: 0, ready: true, started: true });
  }
  return g.instances;
}

/** Why a ContainerGroupPrototype is not one (undefined when it is): the spec's required fields, types and bounds. */
function prototypeProblem(body: unknown): string | undefined {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return 'the body must be a ContainerGroupPrototype object';
  const b = body as Record<string, unknown>;
  for (const f of ['autostart_policy', 'container', 'name', 'replicas', 'restart_policy']) if (!(f in b)) return `${f} is required`;
  if (typeof b.name !== 'string' || !NAME.test(b.name)) return `name must match ${NAME.source}`;
  if (typeof b.autostart_policy !== 'boolean') return 'autostart_policy must be a boolean';
  if (!Number.isInteger(b.replicas) || (b.replicas as number) < 0 || (b.replicas as number) > 500) return 'replicas must be an integer from 0 to 500';
  if (!['always', 'on_failure', 'never'].includes(b.restart_policy as string)) return 'restart_policy must be always, on_failure or never';
  const c = b.container as Record<string, unknown> | null;
  if (!c || typeof c !== 'object') return 'container must be an object';
  if (typeof c.image !== 'string' || c.image.length < 1 || c.image.length > 2048) return 'container.image must be a string of 1 to 2048 characters';
  const r = c.resources as Record<string, unknown> | null;
  if (!r || typeof r !== 'object') return 'container.resources is required';
  if (!Number.isInteger(r.cpu) || (r.cpu as number) < 1 || (r.cpu as number) > 1024) return 'container.resources.cpu must be an integer from 1 to 1024';
  if (!Number.isInteger(r.memory) || (r.memory as number) < 1024) return 'container.resources.memory must be an integer of at least 1024';
  if (r.gpu_classes !== undefined && (!Array.isArray(r.gpu_classes) || r.gpu_classes.some((id) => !FAKE_GPU_CLASSES.some((g) => g.id === id)))) {
    return 'container.resources.gpu_classes must hold GPU class ids';
  }
  const env = c.environment_variables;
  if (env !== undefined) {
    if (!env || typeof env !== 'object' || Array.isArray(env)) return 'container.environment_variables must be an object';
    for (const [k, v] of Object.entries(env)) if (typeof v !== 'string' || v.length < 1 || v.length > 1000) return `container.environment_variables.${k} must be a string of 1 to 1000 characters`;
  }
  if (c.priority !== undefined && c.priority !== null && !['high', 'medium', 'low', 'batch'].includes(c.priority as string)) return 'container.priority must be high, medium, low or batch';
  return undefined;
}

/** A ContainerGroup document with the spec's required fields. */
function document(g: FakeGroup): Record<string, unknown> {
  const running = g.status === 'running' ? g.replicas : 0;
  return {
    autostart_policy: g.autostart_policy,
    container: { ...g.container, size: 0, hash: '' },
    country_codes: [],
    create_time: g.created,
    current_state: {
      status: g.status,
      description: null,
      start_time: g.created,
      finish_time: g.updated,
      instance_status_counts: {
        allocating_count: g.status === 'deploying' ? g.replicas : 0,
        creating_count: 0,
        running_count: running,
        stopping_count: 0,
      },
    },
    display_name: g.display_name,
    id: g.id,
    name: g.name,
    organization_name: g.organization_name,
    pending_change: false,
    priority: 'high',
    project_name: g.project_name,
    replicas: g.replicas,
    restart_policy: g.restart_policy,
    update_time: g.updated,
    version: g.version,
    'scheduled-scaling-enabled': false,
    'scaling-actions': [],
  };
}

export async function startFakeSaladCloud(opts: { apiKey?: string } = {}): Promise<FakeSaladCloud> {
  const apiKey = opts.apiKey ?? `salad-key-${randomUUID()}`;
  const requests: SaladRequest[] = [];
  const groups = new Map<string, FakeGroup>(); // by `${org}/${project}/${name}`
  const failures: Failure[] = [];
  const holds: Hold[] = [];
  let stuck = false;

  const key = (org: string, project: string, name: string) => `${org}/${project}/${name}`;
  const touch = (g: FakeGroup) => {
    g.version++;
    g.updated = new Date().toISOString();
  };
  const addGroup: FakeSaladCloud['addGroup'] = (name, o = {}) => {
    const now = new Date().toISOString();
    const g: FakeGroup = {
      id: o.id ?? randomUUID(),
      name,
      organization_name: o.organization ?? FAKE_ORG,
      project_name: o.project ?? FAKE_PROJECT,
      replicas: o.replicas ?? 0,
      status: o.status ?? 'stopped',
      version: 1,
      created: now,
      updated: now,
      container: DEFAULT_CONTAINER,
      restart_policy: 'always',
      autostart_policy: false,
      display_name: name,
      instances: [],
    };
    groups.set(key(g.organization_name, g.project_name, name), g);
    return g;
  };
  /** started: deploying, then running a moment later (as SaladCloud is once it has allocated nodes) */
  const deploy = (g: FakeGroup) => {
    g.status = 'deploying';
    touch(g);
    if (stuck) return;
    setTimeout(() => {
      if (g.status === 'deploying' && !stuck) {
        g.status = 'running';
        touch(g);
      }
    }, 50).unref();
  };

  const handle = (r: SaladRequest, res: ServerResponse): number => {
    const u = new URL(r.path, 'http://x');
    const parts = u.pathname.replace(/^\/api\/public/, '').split('/').filter(Boolean).map(decodeURIComponent);
    if (r.headers['salad-api-key'] !== apiKey) return problem(res, 401, 'Unauthorized', 'a valid Salad-Api-Key header is required');
    const failure = failures.find((f) => f.remaining > 0 && (!f.match || f.match(r)));
    if (failure) {
      failure.remaining--;
      return problem(res, failure.status, failure.status === 429 ? 'Too Many Requests' : 'Server Error', undefined, failure.retryAfter ? { 'retry-after': failure.retryAfter } : {});
    }
    if (parts[0] === 'organizations' && parts[2] === 'gpu-classes' && parts.length === 3) {
      if (r.method !== 'GET') return problem(res, 405, 'Method Not Allowed');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items: FAKE_GPU_CLASSES }));
      return 200;
    }
    // /organizations/{org}/projects/{project}/containers[/{name}[/start|/stop|/instances[/{id}]]]
    if (parts[0] !== 'organizations' || parts[2] !== 'projects' || parts[4] !== 'containers' || parts.length < 5 || parts.length > 8) {
      return problem(res, 404, 'Not Found', `no route ${r.method} ${u.pathname}`);
    }
    const [org, project, name, sub, instanceId] = [parts[1]!, parts[3]!, parts[5], parts[6], parts[7]];
    if (instanceId !== undefined && sub !== 'instances') return problem(res, 404, 'Not Found', `no route ${r.method} ${u.pathname}`);
    for (const [what, v] of [['organization_name', org], ['project_name', project], ['container_group_name', name]] as const) {
      if (v !== undefined && !NAME.test(v)) return problem(res, 400, 'Bad Request', `${what} must match ${NAME.source}`);
    }
    if (name === undefined && r.method === 'POST') {
      if (!(r.headers['content-type'] ?? '').startsWith('application/json')) return problem(res, 415, 'Unsupported Media Type', 'the request body must be application/json');
      let body: unknown;
      try {
        body = JSON.parse(r.body);
      } catch {
        return problem(res, 400, 'Bad Request', 'the request body is not JSON');
      }
      const why = prototypeProblem(body);
      if (why) return problem(res, 400, 'Bad Request', why);
      const p = body as { name: string; container: Record<string, unknown>; replicas: number; restart_policy: string; autostart_policy: boolean; display_name?: string };
      if (groups.has(key(org, project, p.name))) return problem(res, 409, 'Conflict', `container group ${p.name} already exists`);
      const g = addGroup(p.name, { organization: org, project, replicas: p.replicas });
      Object.assign(g, { container: p.container, restart_policy: p.restart_policy, autostart_policy: p.autostart_policy, display_name: p.display_name ?? p.name });
      if (p.autostart_policy) deploy(g);
      res.writeHead(201, { 'content-type': 'application/json', location: `/organizations/${org}/projects/${project}/containers/${p.name}` }).end(JSON.stringify(document(g)));
      return 201;
    }
    if (name === undefined) {
      if (r.method !== 'GET') return problem(res, 405, 'Method Not Allowed');
      const items = [...groups.values()].filter((g) => g.organization_name === org && g.project_name === project).map(document);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items }));
      return 200;
    }
    const g = groups.get(key(org, project, name));
    if (!g) return problem(res, 404, 'Not Found', `container group ${name} does not exist`);
    if (sub === undefined && r.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(document(g)));
      return 200;
    }
    if (sub === undefined && r.method === 'PATCH') {
      if (!(r.headers['content-type'] ?? '').startsWith('application/merge-patch+json')) {
        return problem(res, 415, 'Unsupported Media Type', 'the request body must be application/merge-patch+json');
      }
      let patch: unknown;
      try {
        patch = JSON.parse(r.body);
      } catch {
        return problem(res, 400, 'Bad Request', 'the request body is not JSON');
      }
      if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return problem(res, 400, 'Bad Request', 'the body must be a ContainerGroupPatch object');
      for (const k of Object.keys(patch)) if (!PATCH_FIELDS.has(k)) return problem(res, 400, 'Bad Request', `${k} is not a ContainerGroupPatch property`);
      const replicas = (patch as { replicas?: unknown }).replicas;
      if (replicas !== undefined && replicas !== null) {
        if (!Number.isInteger(replicas) || (replicas as number) < 0 || (replicas as number) > 500) {
          return problem(res, 400, 'Bad Request', 'replicas must be an integer from 0 to 500');
        }
        g.replicas = replicas as number;
      }
      touch(g);
      // The spec gives UpdateContainerGroup's 200 answer this content type.
      res.writeHead(200, { 'content-type': 'application/merge-patch+json' }).end(JSON.stringify(document(g)));
      return 200;
    }
    if (sub === 'start' && r.method === 'POST') {
      if (g.status === 'running' || g.status === 'deploying') return problem(res, 400, 'Bad Request', `container group ${name} is already ${g.status}`);
      deploy(g);
      res.writeHead(202).end();
      return 202;
    }
    if (sub === 'stop' && r.method === 'POST') {
      if (g.status === 'stopped') return problem(res, 400, 'Bad Request', `container group ${name} is already stopped`);
      g.status = 'stopped';
      touch(g);
      res.writeHead(202).end();
      return 202;
    }
    if (sub === 'instances' && instanceId === undefined && r.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ instances: syncInstances(g) }));
      return 200;
    }
    if (sub === 'instances' && instanceId !== undefined && r.method === 'GET') {
      const i = syncInstances(g).find((x) => x.id === instanceId);
      if (!i) return problem(res, 404, 'Not Found', `container group ${name} has no instance ${instanceId}`);
      // The spec answers get_container_group_instance with 202.
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify(i));
      return 202;
    }
    return problem(res, 405, 'Method Not Allowed', `${r.method} ${u.pathname}`);
  };

  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const r: SaladRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, at: Date.now() };
      requests.push(r);
      const hold = holds.find((h) => !h.released && h.match(r));
      if (!hold) {
        r.status = handle(r, res);
        return;
      }
      // Take effect now, answer later: the caller learns the outcome only at release().
      hold.arrived.push(r);
      const buffered: { status: number; headers: Record<string, string>; body: string } = { status: 0, headers: {}, body: '' };
      const capture = {
        writeHead(status: number, headers: Record<string, string> = {}) {
          buffered.status = status;
          buffered.headers = headers;
          return { end: (b?: string) => void (buffered.body = b ?? '') };
        },
      } as unknown as ServerResponse;
      r.status = handle(r, capture);
      hold.waiting.push(() => {
        if (!res.destroyed) res.writeHead(buffered.status, buffered.headers).end(buffered.body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/public`;

  return {
    url,
    apiKey,
    requests,
    addGroup,
    instances(name) {
      const g = [...groups.values()].find((x) => x.name === name);
      return g ? syncInstances(g) : [];
    },
    group(name) {
      return [...groups.values()].find((g) => g.name === name);
    },
    removeGroup(name) {
      for (const [k, g] of groups) if (g.name === name) groups.delete(k);
    },
    fail(status, o = {}) {
      failures.push({ status, remaining: o.count ?? 1, ...(o.retryAfter !== undefined ? { retryAfter: o.retryAfter } : {}), ...(o.match ? { match: o.match } : {}) });
    },
    stuckDeploying(s) {
      stuck = s;
      if (!s) for (const g of groups.values()) if (g.status === 'deploying') g.status = 'running';
    },
    hold(match) {
      const h: Hold = { match, waiting: [], released: false, arrived: [] };
      holds.push(h);
      return {
        arrived: h.arrived,
        release() {
          h.released = true;
          for (const w of h.waiting.splice(0)) w();
        },
      };
    },
    changes(name) {
      return requests.filter(
        (r) => (r.method === 'PATCH' || (r.method === 'POST' && /\/(start|stop)$/.test(r.path))) && (name === undefined || r.path.includes(`/containers/${name}`)),
      );
    },
    close() {
      for (const h of holds) h.waiting.splice(0).forEach((w) => w());
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
