// The worker's main loop (seed 002, "Job Lifecycle"): claim a job, download its data, run its
// command, heartbeat, upload while it runs, and after it exits report the outcome. A job's
// after-exit work (last uploads, then completed/failed) runs in the background with its heartbeat
// still going, while this worker already runs the next job.
import { cp, mkdir, readdir, realpath, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '@drover/protocol';
import { DroverApiError, DroverClient, type Machine } from '@drover/sdk';
import { describeStore, errorMessage, MiB, openStore, StoreSettingError, type ObjectStore, type TransferOptions } from '@drover/storage';
import pino, { type Logger } from 'pino';
import { WorkerConfigError, type WorkerConfig } from './config.js';
import { DuringSync, downloadBefore, uploadAfter, type SyncContext } from './data-sync.js';
import { Heartbeat } from './heartbeat.js';
import { ImdsClient } from './imds.js';
import { JobProcess, type JobExit } from './job-process.js';
import { PathNotAllowedError } from './paths.js';
import { StateFile } from './state-file.js';
import { INTERNAL_DIR, planSync, SyncPlanError, type SyncPlan, type SyncRule } from './sync-plan.js';

export interface WorkerDeps {
  log?: Logger;
  client?: DroverClient;
  store?: ObjectStore;
  imds?: ImdsClient;
}

type Report = 'completed' | 'failed' | 'release';

/** Empties a folder without removing it (it may be a mount point or a legacy folder). */
async function emptyFolder(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await Promise.all(names.map((n) => rm(path.join(dir, n), { recursive: true, force: true })));
}

/** The folders that are not inside another one of the list. */
function topFolders(folders: readonly string[]): string[] {
  const sorted = [...new Set(folders)].sort((a, b) => a.length - b.length);
  return sorted.filter((f, i) => !sorted.slice(0, i).some((t) => f.startsWith(t + path.sep)));
}

/**
 * Moves the contents of `folders` into numbered folders below `asideRoot` (rename; a copy when the
 * folder is on another filesystem) and returns where each path now is.
 */
async function moveAside(folders: readonly string[], asideRoot: string): Promise<(p: string) => string> {
  const tops = topFolders(folders);
  for (const [i, top] of tops.entries()) {
    const dest = path.join(asideRoot, String(i));
    await mkdir(dest, { recursive: true });
    for (const name of await readdir(top).catch(() => [] as string[])) {
      const from = path.join(top, name);
      const to = path.join(dest, name);
      try {
        await rename(from, to);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        await cp(from, to, { recursive: true, preserveTimestamps: true });
        await rm(from, { recursive: true, force: true });
      }
    }
  }
  return (p) => {
    const i = tops.findIndex((t) => p === t || p.startsWith(t + path.sep));
    return i < 0 ? p : path.join(asideRoot, String(i), path.relative(tops[i] as string, p));
  };
}

export class Worker {
  readonly machine: Machine;
  private readonly stopping = new AbortController();
  private readonly background = new Set<Promise<void>>();
  private failuresReported = 0;
  private reallocateReason: string | undefined;
  /** Ends the claim in flight (a long-poll) early, e.g. once the node is to be reallocated. */
  private claimWake: AbortController | undefined;
  private longPoll: boolean;
  private readonly internal: string;
  private readonly transfer: TransferOptions;
  jobsRun = 0;

  private constructor(
    readonly cfg: WorkerConfig,
    private readonly log: Logger,
    private readonly client: DroverClient,
    private readonly store: ObjectStore,
    private readonly imds: ImdsClient,
    private readonly state: StateFile,
  ) {
    this.machine = { machine_id: cfg.machineId, container_group_id: cfg.containerGroupId };
    this.longPoll = cfg.longPollS > 0;
    this.internal = path.join(cfg.dataRoot, INTERNAL_DIR);
    this.transfer = {
      partSize: cfg.partSizeMiB * MiB,
      concurrency: cfg.partConcurrency,
      retry: { onRetry: (r) => log.warn({ op: r.operation, attempt: r.attempt, delayMs: r.delayMs, err: errorMessage(r.error) }, 'storage: retrying') },
    };
  }

  /** Prepares the worker's folders (clearing what a killed predecessor left) and its clients. */
  static async create(config: WorkerConfig, deps: WorkerDeps = {}): Promise<Worker> {
    const log = deps.log ?? pino({ level: config.logLevel, base: { machine: config.machineId } });
    // Settings are checked before anything on disk is touched.
    let store: ObjectStore;
    try {
      store = deps.store ?? openStore(config.storage);
    } catch (err) {
      if (err instanceof StoreSettingError) throw new WorkerConfigError(`storage settings (DROVER_STORAGE / --storage, AWS_* / --s3-*): ${err.message}`);
      throw err;
    }
    await mkdir(config.dataRoot, { recursive: true });
    const cfg = { ...config, dataRoot: await realpath(config.dataRoot) };
    const internal = path.join(cfg.dataRoot, INTERNAL_DIR);
    await rm(path.join(internal, 'aside'), { recursive: true, force: true });
    await rm(path.join(internal, 'snapshots'), { recursive: true, force: true });
    await rm(path.join(internal, 'progress'), { recursive: true, force: true });
    await mkdir(path.join(internal, 'progress'), { recursive: true });
    for (const dir of [cfg.inputDir, cfg.outputDir, cfg.checkpointDir]) {
      await mkdir(dir, { recursive: true });
      await emptyFolder(dir);
    }
    await mkdir(path.dirname(cfg.stateFile), { recursive: true });
    const state = await StateFile.create(cfg.stateFile);
    const client = deps.client ?? new DroverClient({ url: cfg.apiUrl, key: cfg.apiKey, retries: cfg.maxRetries });
    const imds = deps.imds ?? new ImdsClient({ baseUrl: cfg.imdsUrl, machineId: cfg.saladMachineId, log: { info: (m) => log.info(m), warn: (m) => log.warn(m) } });
    return new Worker(cfg, log, client, store, imds, state);
  }

  /** Asks the worker to stop: the running job gets SIGTERM, its last uploads finish, it is released. */
  shutdown(signal: string): void {
    if (this.stopping.signal.aborted) return;
    this.log.info({ signal }, 'shutting down');
    this.stopping.abort();
  }

  get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Runs until shutdown (or MAX_TIME_WITH_NO_WORK_S idle); resolves with the exit code. */
  async run(): Promise<number> {
    const { cfg, log } = this;
    log.info(
      { coordinator: cfg.apiUrl, machine: cfg.machineId, group: cfg.containerGroupId, storage: describeStore(cfg.storage), dataRoot: cfg.dataRoot, stateFile: cfg.stateFile },
      'drover worker started',
    );
    let idleSince = Date.now();
    while (!this.stopped) {
      if (this.reallocateReason !== undefined) {
        await this.drain();
        await this.imds.reallocate(this.reallocateReason);
        await this.untilStopped();
        break;
      }
      if (cfg.maxTimeWithNoWorkS > 0 && this.background.size === 0 && Date.now() - idleSince >= cfg.maxTimeWithNoWorkS * 1000) {
        log.info({ idleS: Math.round((Date.now() - idleSince) / 1000) }, 'no work for MAX_TIME_WITH_NO_WORK_S: exiting');
        break;
      }
      const claimed = await this.claim();
      if (!claimed) continue;
      await this.runJob(claimed.job, claimed.sentAt);
      this.jobsRun++;
      idleSince = Date.now();
      if (cfg.recreateBetweenJobs && !this.stopped) {
        await this.drain();
        await this.imds.recreate();
        await this.untilStopped();
        break;
      }
    }
    await this.drain();
    await this.state.flush();
    log.info({ jobs: this.jobsRun }, 'drover worker stopped');
    return 0;
  }

  private untilStopped(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    // A pending promise does not keep Node alive: without this timer the process would exit 0 at
    // once (and the container restart on this node) instead of waiting to be moved.
    const keepAlive = setInterval(() => {}, 60_000);
    return new Promise((resolve) =>
      this.stopping.signal.addEventListener('abort', () => {
        clearInterval(keepAlive);
        resolve();
      }, { once: true }),
    );
  }

  private async drain(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /**
   * One claim. Long-polls a Drover coordinator; when the answer comes back empty sooner than the
   * poll interval (Kelpie answers at once), waits out the rest of it, as Kelpie's worker polls.
   */
  private async claim(): Promise<{ job: Job; sentAt: number } | undefined> {
    const started = Date.now();
    const sentAt = performance.now();
    const wake = new AbortController();
    this.claimWake = wake;
    const signal = AbortSignal.any([this.stopping.signal, wake.signal]);
    let failed = false;
    try {
      const job = await this.client.claimWork(this.machine, this.longPoll ? this.cfg.longPollS : undefined, { signal });
      if (job) return { job, sentAt };
    } catch (err) {
      if (signal.aborted) return undefined;
      if (this.longPoll && err instanceof DroverApiError && err.status === 400) {
        this.log.warn({ err: err.message }, 'the coordinator refused a long-poll claim: polling without long-poll');
        this.longPoll = false;
        return undefined;
      }
      failed = true;
      this.log.warn({ err: errorMessage(err) }, 'claiming work failed; trying again');
    }
    // An empty answer: wait out the rest of the poll interval. A failure: at least a second.
    const wait = this.cfg.pollIntervalS * 1000 - (Date.now() - started);
    const delay = failed ? Math.max(wait, 1000) : wait;
    if (delay > 0) await sleep(delay, undefined, { signal }).catch(() => {});
    return undefined;
  }

  private folders() {
    return { dataRoot: this.cfg.dataRoot, inputDir: this.cfg.inputDir, outputDir: this.cfg.outputDir, checkpointDir: this.cfg.checkpointDir };
  }

  /** Runs one job (claimed by a request sent at `claimedAt`); resolves once this worker is free for the next one. */
  private async runJob(job: Job, claimedAt: number): Promise<void> {
    const { cfg, state } = this;
    const log = this.log.child({ job: job.id, attempt: job.attempt });
    log.info({ command: job.command, arguments: job.arguments, heartbeatS: job.heartbeat_interval }, 'claimed a job');
    const lost = new AbortController();
    let lostStatus = '';
    const progressFile = path.join(this.internal, 'progress', `${job.id}.json`);
    await rm(progressFile, { force: true });
    const heartbeat = new Heartbeat({
      client: this.client, jobId: job.id, machine: this.machine, intervalMs: job.heartbeat_interval * 1000, progressFile, log,
      // A Kelpie coordinator does not say: its lease is 2 × heartbeat_interval.
      leaseMs: (job.lease_timeout ?? 2 * job.heartbeat_interval) * 1000,
      claimedAt,
      onLost: (status) => {
        lostStatus = status;
        log.warn({ status }, 'the coordinator no longer has this job running here: stopping it');
        lost.abort();
      },
    }).start();
    let proc: JobProcess | undefined;
    let during: DuringSync | undefined;
    try {
      await state.dropFinished().catch(() => {});
      await state.addJob(job.id).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'could not update the state file'));
      const ctx: SyncContext = { store: this.store, transfer: this.fenced(heartbeat, lost.signal), state, jobId: job.id, log, signal: AbortSignal.any([lost.signal, this.stopping.signal]) };

      let plan: SyncPlan;
      try {
        plan = await planSync(job, this.folders());
      } catch (err) {
        if (!(err instanceof PathNotAllowedError || err instanceof SyncPlanError)) throw err;
        log.error({ err: err.message }, `job refused: ${err.message}`);
        await this.settle(job, heartbeat, 'failed', log, `job refused: ${err.message}`);
        return;
      }
      const allFolders = [...plan.folders, cfg.inputDir, cfg.outputDir, cfg.checkpointDir];
      for (const f of allFolders) {
        await mkdir(f, { recursive: true });
        await emptyFolder(f);
      }

      // Before-sync.
      try {
        const got = await downloadBefore(plan.before, ctx);
        if (plan.before.length > 0) log.info({ files: got.files, bytes: got.bytes }, 'inputs downloaded');
      } catch (err) {
        await this.purge(allFolders);
        if (lost.signal.aborted) return this.dropLost(job, heartbeat, lostStatus, log);
        if (this.stopped) return this.settle(job, heartbeat, 'release', log);
        log.error({ err: errorMessage(err) }, 'downloading the job\'s data failed');
        return this.settle(job, heartbeat, 'failed', log, `downloading the job's data failed: ${errorMessage(err)}`);
      }

      // Only losing the job stops its uploads: on shutdown the last checkpoint must still go up.
      during = new DuringSync(plan.during, { ...ctx, signal: lost.signal, snapshotDir: path.join(this.internal, 'snapshots'), settleMs: cfg.settleS * 1000 });
      await during.start();
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ...(job.environment ?? {}),
        KELPIE_JOB_ID: job.id,
        KELPIE_STATE_FILE: cfg.stateFile,
        INPUT_DIR: cfg.inputDir,
        OUTPUT_DIR: cfg.outputDir,
        CHECKPOINT_DIR: cfg.checkpointDir,
        DROVER_PROGRESS_FILE: progressFile,
        // Relative sync local_paths are relative to the data root, not to the job's working directory.
        DROVER_DATA_ROOT: cfg.dataRoot,
      };
      proc = new JobProcess({ jobId: job.id, command: job.command, args: job.arguments ?? [], env, cwd: process.cwd(), log });
      log.info({ pid: proc.pid }, 'job process started');

      const listeners = new AbortController(); // removes the two listeners below once the race is over
      const stopRequested = new Promise<'lost' | 'shutdown'>((resolve) => {
        lost.signal.addEventListener('abort', () => resolve('lost'), { once: true, signal: listeners.signal });
        this.stopping.signal.addEventListener('abort', () => resolve('shutdown'), { once: true, signal: listeners.signal });
        if (lost.signal.aborted) resolve('lost');
        if (this.stopped) resolve('shutdown');
      });
      const first = await Promise.race([proc.exited, stopRequested]);
      listeners.abort();
      let exit: JobExit;
      if (first === 'lost') {
        await proc.stop('SIGINT', cfg.killGraceS * 1000);
        await during.abandon();
        await this.purge(allFolders);
        return this.dropLost(job, heartbeat, lostStatus, log);
      } else if (first === 'shutdown') {
        // The node is going away: let the app save a checkpoint, upload it, hand the job back.
        exit = await proc.stop('SIGTERM', cfg.killGraceS * 1000);
        await state.setExit(job.id, exit.code).catch(() => {});
        if (exit.code !== 0 || lost.signal.aborted) {
          await during.finish().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'last checkpoint upload failed'));
          await this.purge(allFolders);
          if (lost.signal.aborted) return this.dropLost(job, heartbeat, lostStatus, log);
          return this.settle(job, heartbeat, 'release', log);
        }
        // It finished just then: finish the job normally, in the foreground.
        await this.afterExit(job, exit, plan, during, heartbeat, lost.signal, allFolders, log);
        return;
      } else {
        exit = first;
      }
      await state.setExit(job.id, exit.code).catch(() => {});
      log.info({ code: exit.code, signal: exit.signal }, exit.startError ? `the command could not be started: ${exit.startError.message}` : 'job process exited');
      // The folders move aside so the next job starts with empty ones while this one's uploads run.
      await during.pause();
      const aside = path.join(this.internal, 'aside', `${job.id}-${job.attempt}`);
      const uploadFolders = [...plan.during, ...plan.after].map((r) => r.localPath);
      const relocate = await moveAside(uploadFolders, aside);
      during.relocate(relocate);
      const after = plan.after.map((r): SyncRule => ({ ...r, localPath: relocate(r.localPath) }));
      await this.purge(allFolders);
      const task = this.afterExit(job, exit, { ...plan, after }, during, heartbeat, lost.signal, [aside], log)
        .catch((err: unknown) => log.error({ err: errorMessage(err) }, 'finishing the job failed'))
        .finally(() => this.background.delete(task));
      this.background.add(task);
    } catch (err) {
      // Something this worker did not foresee (a folder it cannot write, a full disk): the job fails
      // here, the worker lives on.
      log.error({ err: errorMessage(err) }, 'running the job failed');
      await proc?.stop('SIGKILL', 0);
      await during?.abandon();
      await this.settle(job, heartbeat, 'failed', log, `running the job failed: ${errorMessage(err)}`);
    }
  }

  /** Last uploads of an exited job, then its report; the heartbeat runs until the report. */
  private async afterExit(job: Job, exit: JobExit, plan: SyncPlan, during: DuringSync, heartbeat: Heartbeat, lost: AbortSignal, cleanup: string[], log: Logger): Promise<void> {
    const ctx: SyncContext = { store: this.store, transfer: this.fenced(heartbeat, lost), state: this.state, jobId: job.id, log, signal: lost };
    let outcome: Report = exit.code === 0 ? 'completed' : 'failed';
    let reason = exit.code === 0 ? undefined : exitReason(exit);
    try {
      await this.imds.withRaisedDeletionCost(async () => {
        try {
          await during.finish();
        } catch (err) {
          if (lost.aborted) return;
          log.error({ err: errorMessage(err) }, 'uploading the last files failed');
          reason = `${reason ? `${reason}; ` : ''}uploading the last files failed: ${errorMessage(err)}`;
          outcome = 'failed';
          return;
        }
        if (outcome !== 'completed' || plan.after.length === 0) return;
        try {
          const r = await uploadAfter(plan.after, ctx, during);
          log.info({ files: r.files, bytes: r.bytes }, 'outputs uploaded');
        } catch (err) {
          if (lost.aborted) return;
          log.error({ err: errorMessage(err) }, 'uploading the outputs failed: reporting the job failed');
          reason = `uploading the outputs failed: ${errorMessage(err)}`;
          outcome = 'failed';
        }
      });
    } finally {
      await this.purge(cleanup);
    }
    if (lost.aborted) return this.dropLost(job, heartbeat, '', log);
    await this.settle(job, heartbeat, outcome, log, reason);
  }

  /** The transfer options for a job's data: every write is fenced by the job's lease (see Heartbeat.fence). */
  private fenced(heartbeat: Heartbeat, lost: AbortSignal): TransferOptions {
    return { ...this.transfer, beforeCommit: () => heartbeat.fence(lost) };
  }

  private async purge(folders: readonly string[]): Promise<void> {
    for (const f of folders) await emptyFolder(f).catch((err: unknown) => this.log.warn({ folder: f, err: errorMessage(err) }, 'could not purge'));
    for (const f of folders) if (f.startsWith(path.join(this.internal, 'aside') + path.sep)) await rm(f, { recursive: true, force: true }).catch(() => {});
  }

  private async dropLost(job: Job, heartbeat: Heartbeat, status: string, log: Logger): Promise<void> {
    await heartbeat.stop();
    await this.state.setStatus(job.id, 'canceled').catch(() => {});
    log.info({ status }, 'job dropped');
  }

  /**
   * Stops the heartbeat and reports the job; a failure counts towards MAX_JOB_FAILURES. `reason`
   * says why a failed attempt failed (kept in the job's events).
   */
  private async settle(job: Job, heartbeat: Heartbeat, report: Report, log: Logger, reason?: string): Promise<void> {
    await heartbeat.stop();
    const ok = await this.report(job, report, log, reason);
    await this.state.setStatus(job.id, report === 'completed' ? 'completed' : report === 'failed' ? 'failed' : 'canceled').catch(() => {});
    if (report === 'failed' && ok) {
      this.failuresReported++;
      if (this.failuresReported >= this.cfg.maxJobFailures && this.reallocateReason === undefined) {
        this.reallocateReason = `drover worker: ${this.failuresReported} jobs failed on this machine (MAX_JOB_FAILURES=${this.cfg.maxJobFailures})`;
        log.warn(this.reallocateReason);
        this.claimWake?.abort(); // a long-poll in flight must not hold the reallocation up
      }
    }
  }

  /**
   * Sends the outcome, retrying transient failures with backoff for a few minutes (the output is
   * already uploaded: giving up early would make another node run the job again).
   */
  private async report(job: Job, report: Report, log: Logger, reason?: string): Promise<boolean> {
    let withReason = reason !== undefined;
    const send = {
      completed: () => this.client.completeJob(job.id, this.machine),
      failed: () => this.client.failJob(job.id, this.machine, withReason ? reason : undefined),
      release: () => this.client.releaseJob(job.id, this.machine),
    }[report];
    for (let attempt = 1; ; attempt++) {
      try {
        await send();
        log.info({ report, ...(reason !== undefined ? { reason } : {}) }, `job reported ${report === 'release' ? 'released' : report}`);
        return true;
      } catch (err) {
        if (withReason && err instanceof DroverApiError && err.status === 400) {
          // `reason` is Drover's: a Kelpie coordinator may refuse the field. Say it without.
          withReason = false;
          attempt--;
          continue;
        }
        if (err instanceof DroverApiError && err.status >= 400 && err.status < 500) {
          log.warn({ report, status: err.status, err: err.message }, 'the coordinator refused the report');
          return false;
        }
        if (attempt >= 10) {
          log.error({ report, err: errorMessage(err) }, 'could not report the job; its lease will lapse and another node will run it');
          return false;
        }
        log.warn({ report, attempt, err: errorMessage(err) }, 'reporting the job failed; retrying');
        await sleep(Math.min(30_000, 500 * 2 ** attempt));
      }
    }
  }
}

/** Why a job process that did not exit 0 failed, for the job's events. */
function exitReason(exit: JobExit): string {
  if (exit.startError) return `the command could not be started: ${exit.startError.message}`;
  if (exit.signal) return `the job process was killed by ${exit.signal}`;
  return `the job process exited with code ${exit.code}`;
}
