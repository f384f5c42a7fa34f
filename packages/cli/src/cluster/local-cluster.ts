// The whole system on one machine: a coordinator on the embedded SQLite store (in this process),
// local-folder storage, and N `drover worker` processes serving one container group. `drover up`
// and `drover demo` both run on this. With `autoscale`, no worker starts with the cluster: the
// coordinator's autoscaler starts and stops them under the group's scaling rule (provider local),
// through the pool below.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import type { ScalingRule } from '@drover/protocol';
import { DroverApiError, DroverClient } from '@drover/sdk';
import { type LocalNodePool, type RunningServer, startServer } from '@drover/server';
import { type Profile, readProfile, writeProfile } from '../lib/profile.js';

const DROVER_BIN = fileURLToPath(new URL('../../bin/drover.js', import.meta.url));

/** What `drover up` and `drover demo` both take. */
export interface ClusterSettings {
  /** Folder for the database, storage, worker data, logs and the profile (default ./.drover). */
  dir: string;
  workers: number;
  port: number;
  host: string;
  containerGroupId: string;
  bucket: string;
  /** Where to write the profile later commands read (default <dir>/profile.json). */
  profileFile: string;
  /**
   * The jobs' working directory: where `drover up` was started, so `drover submit -c python -a
   * train.py` finds train.py there (each worker's own data root, for sync folders, is under <dir>/workers/).
   * Default: this process's working directory.
   */
  jobCwd?: string;
}

export interface AutoscaleSettings {
  /** the rule made for the cluster's group when it has none: 0 to `workers` workers, this idle threshold */
  idleThresholdSeconds: number;
  /** the autoscaler's re-evaluation period, ms (default 10 s: a worker that crashed is replaced soon) */
  intervalMs?: number;
}

export interface LocalClusterOptions extends ClusterSettings {
  /** Workers started and stopped by the autoscaler instead of `workers` started now. */
  autoscale?: AutoscaleSettings;
  /** Told when the autoscaler starts or stops a worker. */
  onScale?: (event: { kind: 'start' | 'stop'; machineId: string; groupId: string }) => void;
  /** Extra environment for every worker (e.g. a shorter settle time for the demo). */
  workerEnv?: Record<string, string>;
  /** Called with each log line a worker prints (parsed pino JSON when it is). */
  onWorkerLog?: (machineId: string, line: WorkerLogLine) => void;
  coordinatorLogLevel?: string;
}

export interface WorkerLogLine {
  level: number;
  time?: number;
  msg: string;
  job?: string;
  [k: string]: unknown;
}

export interface LocalWorker {
  machineId: string;
  groupId: string;
  /** the autoscaler has told it to stop (it no longer counts as a replica) */
  stopping: boolean;
  proc: ChildProcess;
  dataRoot: string;
  logFile: string;
  /** Process ids of the jobs this worker started (each leads its own process group). */
  jobPids: number[];
  exited: Promise<number | null>;
}

export interface LocalCluster {
  url: string;
  key: string;
  username: string;
  storage: string;
  storageDir: string;
  profileFile: string;
  client: DroverClient;
  workers: LocalWorker[];
  /** The rule the cluster's group scales by (with autoscale). */
  scalingRule?: ScalingRule;
  /** Starts a worker for the group (default: the cluster's). */
  addWorker(groupId?: string): LocalWorker;
  /** A node dies: SIGKILL to the worker and every job process it started. */
  killNode(machineId: string): Promise<void>;
  /** SIGTERM to the workers (they release their jobs), wait for them, stop the coordinator. */
  stop(): Promise<void>;
}

/** Reuses the profile's key when it still works here; else creates a user and a key (and says so). */
async function localUser(url: string, adminKey: string, profile: Profile | undefined): Promise<{ key: string; username: string }> {
  if (profile) {
    try {
      const me = await new DroverClient({ url, key: profile.api_key, retries: 0 }).me();
      if (!me.admin) return { key: profile.api_key, username: me.username };
    } catch (err) {
      if (!(err instanceof DroverApiError && err.status === 401)) throw err;
    }
  }
  const admin = new DroverClient({ url, key: adminKey });
  for (let i = 0; ; i++) {
    const username = i === 0 ? 'local' : `local-${randomBytes(3).toString('hex')}`;
    try {
      const user = await admin.createUser(username);
      const { token } = await admin.createToken(user.id);
      return { key: token, username };
    } catch (err) {
      if (!(err instanceof DroverApiError && err.error === 'user_exists') || i > 3) throw err;
    }
  }
}

/**
 * The scaling rule of the cluster's group: the one it has (a user's changes are kept), or a new one
 * of provider local, 0 to `max` workers.
 */
async function localRule(client: DroverClient, groupId: string, max: number, idleThresholdSeconds: number): Promise<ScalingRule> {
  try {
    return await client.getScalingRule(groupId);
  } catch (err) {
    if (!(err instanceof DroverApiError && err.status === 404)) throw err;
  }
  return client.createScalingRule({ container_group_id: groupId, provider: 'local', min_replicas: 0, max_replicas: max, idle_threshold_seconds: idleThresholdSeconds });
}

/** Calls `onLine` with each line of `file` from byte `from` on, as it is appended, until `done` settles (then reads what is left). */
async function tailLines(file: string, from: number, done: Promise<unknown>, onLine: (line: string) => void): Promise<void> {
  const fh = await open(file, 'r');
  let offset = from;
  let partial = '';
  let finished = false;
  void done.then(() => (finished = true));
  try {
    for (;;) {
      const last = finished;
      for (;;) {
        const { bytesRead, buffer } = await fh.read({ buffer: Buffer.alloc(64 * 1024), position: offset });
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (partial + buffer.subarray(0, bytesRead).toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) if (l) onLine(l);
      }
      if (last) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (partial) onLine(partial);
  } finally {
    await fh.close();
  }
}

export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const dir = path.resolve(opts.dir);
  const storageDir = path.join(dir, 'storage');
  const logDir = path.join(dir, 'logs');
  for (const d of [dir, storageDir, path.join(storageDir, opts.bucket), logDir]) mkdirSync(d, { recursive: true });
  // The admin key: DROVER_ADMIN_KEY, else the one the profile kept (mode 0600), else a new one kept there.
  const previous = readProfile(opts.profileFile);
  const adminKey = process.env.DROVER_ADMIN_KEY || previous?.admin_key || `drv_admin_${randomBytes(24).toString('hex')}`;
  const workers: LocalWorker[] = [];
  let stopping: Promise<void> | undefined;
  // The pool the autoscaler drives; it knows its user (and can start workers) once the user exists.
  const late: { userId?: string; addWorker?: (groupId: string) => LocalWorker } = {};
  const alive = (w: LocalWorker) => w.proc.exitCode === null && w.proc.signalCode === null;
  const pool: LocalNodePool = {
    get userId() {
      return late.userId ?? '';
    },
    nodes: (groupId) => workers.filter((w) => w.groupId === groupId && !w.stopping && alive(w)),
    start(groupId) {
      if (!late.addWorker) throw new Error('the local cluster is still starting');
      const w = late.addWorker(groupId);
      opts.onScale?.({ kind: 'start', machineId: w.machineId, groupId });
      return w;
    },
    async stop(node) {
      const w = workers.find((x) => x.machineId === node.machineId && alive(x));
      if (!w) return;
      w.stopping = true;
      opts.onScale?.({ kind: 'stop', machineId: w.machineId, groupId: w.groupId });
      w.proc.kill('SIGTERM');
      await w.exited;
    },
  };
  const server: RunningServer = await startServer({
    port: opts.port,
    host: opts.host,
    database: path.join(dir, 'drover.db'),
    adminKey,
    logLevel: opts.coordinatorLogLevel ?? 'warn',
    ...(opts.autoscale ? { autoscaling: { localPool: pool, intervalMs: opts.autoscale.intervalMs ?? 10_000 } } : {}),
  });
  const url = server.url.replace('0.0.0.0', '127.0.0.1');
  let user: { key: string; username: string };
  try {
    user = await localUser(url, adminKey, previous);
  } catch (err) {
    await server.close();
    throw err;
  }
  const storage = pathToFileURL(storageDir).toString();
  writeProfile(opts.profileFile, { api_url: url, api_key: user.key, storage, container_group_id: opts.containerGroupId, bucket: opts.bucket, admin_key: adminKey });

  let seq = 0;
  const addWorker = (groupId = opts.containerGroupId): LocalWorker => {
    const machineId = `local-${++seq}`;
    const dataRoot = path.join(dir, 'workers', machineId);
    mkdirSync(dataRoot, { recursive: true });
    const logFile = path.join(logDir, `${machineId}.log`);
    // The worker writes its log straight into its file, which this process tails: a worker must
    // never depend on this process reading a pipe (if it dies, a worker blocked writing its last
    // log lines would never exit).
    const logFd = openSync(logFile, 'a');
    const logStart = fstatSync(logFd).size;
    // An IPC channel lets the worker notice when this process dies, even by kill -9.
    const proc = spawn(process.execPath, [DROVER_BIN, 'worker'], {
      cwd: opts.jobCwd ?? process.cwd(),
      stdio: ['ignore', logFd, logFd, 'ipc'],
      env: {
        ...process.env,
        KELPIE_API_URL: url,
        KELPIE_API_KEY: user.key,
        SALAD_MACHINE_ID: machineId,
        SALAD_CONTAINER_GROUP_ID: groupId,
        DROVER_DATA_ROOT: dataRoot,
        DROVER_STORAGE: storage,
        // Not on SaladCloud: no instance metadata service to call (no deletion cost; a reallocation exits 1).
        DROVER_IMDS_URL: 'off',
        ...opts.workerEnv,
      },
    });
    closeSync(logFd);
    const worker: LocalWorker = {
      machineId,
      groupId,
      stopping: false,
      proc,
      dataRoot,
      logFile,
      jobPids: [],
      exited: once(proc, 'exit').then(([code]) => code as number | null),
    };
    void tailLines(logFile, logStart, worker.exited, (text) => {
      let line: WorkerLogLine;
      try {
        line = JSON.parse(text) as WorkerLogLine;
      } catch {
        line = { level: 30, msg: text };
      }
      if (typeof line.msg !== 'string') line.msg = String(line.msg);
      if (line.msg === 'job process started' && typeof line.pid === 'number') worker.jobPids.push(line.pid);
      opts.onWorkerLog?.(machineId, line);
    });
    // Autoscaled, workers come and go all day: the list keeps the ones alive.
    if (opts.autoscale) for (let i = workers.length - 1; i >= 0; i--) if (!alive(workers[i]!)) workers.splice(i, 1);
    workers.push(worker);
    // A worker that exits unasked (a crash) is one replica fewer: the autoscaler replaces it.
    void worker.exited.then(() => {
      if (opts.autoscale && !worker.stopping && !stopping && late.userId) server.autoscaler.poke(late.userId, groupId);
    });
    return worker;
  };
  late.addWorker = addWorker;
  let scalingRule: ScalingRule | undefined;
  if (opts.autoscale) {
    try {
      late.userId = (await new DroverClient({ url, key: user.key }).me()).id;
      scalingRule = await localRule(new DroverClient({ url, key: user.key }), opts.containerGroupId, opts.workers, opts.autoscale.idleThresholdSeconds);
    } catch (err) {
      await server.close();
      throw err;
    }
  } else {
    for (let i = 0; i < opts.workers; i++) addWorker();
  }

  return {
    url,
    key: user.key,
    username: user.username,
    storage,
    storageDir,
    profileFile: opts.profileFile,
    client: new DroverClient({ url, key: user.key }),
    workers,
    ...(scalingRule ? { scalingRule } : {}),
    addWorker,
    async killNode(machineId) {
      const w = workers.find((x) => x.machineId === machineId);
      if (!w) throw new Error(`no worker ${machineId}`);
      w.proc.kill('SIGKILL');
      for (const pid of w.jobPids) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // that job had already ended
        }
      }
      await w.exited;
    },
    stop() {
      stopping ??= (async () => {
        // First the autoscaler, so that it starts no worker while they are being stopped.
        await server.autoscaler.stop();
        const running = workers.filter(alive);
        for (const w of running) w.proc.kill('SIGTERM');
        await Promise.all(running.map((w) => w.exited));
        await server.close();
      })();
      return stopping;
    },
  };
}
