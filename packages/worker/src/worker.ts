// The worker's main loop (seed 002, "Job Lifecycle"): claim a job from the source, run the attempt
// (job-run.ts: download, run, upload, report), repeat. A job's after-exit work (last uploads, then
// completed/failed) runs in the background with its heartbeat still going, while this worker
// already runs the next job. The loop also owns what spans jobs: reallocating the node after
// MAX_JOB_FAILURES or MAX_TIME_WITH_NO_WORK_S, recreating it between jobs, the node's deletion
// cost, and shutdown.
import { mkdir, realpath, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '@drover/common';
import { DroverClient, type Machine } from '@drover/sdk';
import { describeStore, errorMessage, MiB, openStore, StoreSettingError, type ObjectStore, type TransferOptions } from '@drover/storage';
import pino, { type Logger } from 'pino';
import { WorkerConfigError, type WorkerConfig } from './config.js';
import { DeletionCost } from './deletion-cost.js';
import { emptyFolder } from './folders.js';
import { ImdsClient } from './imds.js';
import { JobRun, type Ending } from './job-run.js';
import { CoordinatorSource } from './source/coordinator.js';
import { AccessDeniedError, type JobLease, type JobSource } from './source/job-source.js';
import { StateFile } from './state-file.js';
import { INTERNAL_DIR } from './sync-plan.js';

/** A refused key is tried this many times (1 s, then 2 s apart) before the worker exits 2. */
const AUTH_TRIES = 3;
const AUTH_RETRY = { baseMs: 1000, maxMs: 2000, jitter: 'none' } as const;

export interface WorkerDeps {
  log?: Logger;
  client?: DroverClient;
  /** Where jobs come from; by default the SQS queue of cfg.sqs, else the coordinator at cfg.apiUrl. */
  source?: JobSource;
  store?: ObjectStore;
  imds?: ImdsClient;
}

export class Worker {
  private readonly stopping = new AbortController();
  private readonly background = new Set<Promise<void>>();
  /** Jobs whose attempt ended here but is still uploading or reporting, by job id. */
  private readonly finishing = new Map<string, Promise<void>>();
  private failuresReported = 0;
  private reallocateReason: string | undefined;
  /** Ends the claim in flight (a long-poll) early, e.g. once the node is to be reallocated. */
  private claimWake: AbortController | undefined;
  private readonly transfer: TransferOptions;
  private readonly deletionCost: DeletionCost;
  /** Claims refused for the worker's credentials in a row; at AUTH_TRIES the worker gives up. */
  private accessDenied = 0;
  /** Why the worker gave up, when it did (the CLI prints it as its one line on stderr). */
  fatalError: string | undefined;
  jobsRun = 0;

  private constructor(
    readonly cfg: WorkerConfig,
    readonly machine: Machine,
    private readonly log: Logger,
    private readonly source: JobSource,
    private readonly store: ObjectStore,
    private readonly imds: ImdsClient,
    private readonly state: StateFile,
  ) {
    this.deletionCost = new DeletionCost(imds);
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
    const machine = { machine_id: cfg.machineId, container_group_id: cfg.containerGroupId };
    const source = deps.source ?? (cfg.sqs
      ? await (await import('./source/sqs.js')).SqsSource.open(cfg.sqs, { store, machineId: cfg.machineId, log, longPollS: cfg.longPollS })
      : new CoordinatorSource(deps.client ?? new DroverClient({ url: cfg.apiUrl, key: cfg.apiKey, retries: cfg.maxRetries }), machine, { url: cfg.apiUrl, longPollS: cfg.longPollS, log }));
    const imds = deps.imds ?? new ImdsClient({ baseUrl: cfg.imdsUrl, machineId: cfg.saladMachineId, log: { info: (m) => log.info(m), warn: (m) => log.warn(m) } });
    return new Worker(cfg, machine, log, source, store, imds, state);
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
      { source: this.source.description, group: cfg.containerGroupId, storage: describeStore(cfg.storage), dataRoot: cfg.dataRoot, stateFile: cfg.stateFile },
      'drover worker started',
    );
    await this.deletionCost.idle();
    let idleSince = Date.now();
    let code = 0;
    while (!this.stopped) {
      if (this.reallocateReason !== undefined) {
        await this.drain();
        code = await this.reallocate(this.reallocateReason);
        break;
      }
      if (cfg.maxTimeWithNoWorkS > 0 && Date.now() - idleSince >= cfg.maxTimeWithNoWorkS * 1000) {
        if (this.background.size > 0) {
          // As Kelpie does: let the last uploads finish, then look for work once more.
          await this.drain();
        } else {
          // A node that gets no work is often banned from the group's jobs: another node may get them.
          const reason = `drover worker: no work for ${cfg.maxTimeWithNoWorkS} s (MAX_TIME_WITH_NO_WORK_S)`;
          if (this.imds.onSalad) code = await this.reallocate(reason);
          else log.info({ idleS: Math.round((Date.now() - idleSince) / 1000) }, 'no work for MAX_TIME_WITH_NO_WORK_S: exiting (not on SaladCloud: nothing to reallocate)');
          break;
        }
      }
      // A long-poll must not outlast the idle limit: the reallocation would wait for it.
      const idleLeftS = cfg.maxTimeWithNoWorkS > 0 ? Math.max(1, Math.ceil(cfg.maxTimeWithNoWorkS - (Date.now() - idleSince) / 1000)) : Infinity;
      const lease = await this.claim(idleLeftS);
      if (this.fatalError !== undefined) {
        code = 2;
        break;
      }
      if (!lease) continue;
      await this.runJob(lease);
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
    await this.deletionCost.settled();
    log.info({ jobs: this.jobsRun }, 'drover worker stopped');
    return code;
  }

  /**
   * Asks SaladCloud to move this instance to another node and waits to be stopped; resolves with
   * the exit code (1 when the reallocation could not be asked for: a container that exits is
   * restarted, one that waits forever is paid for).
   */
  private async reallocate(reason: string): Promise<number> {
    if (!(await this.imds.reallocate(reason))) {
      if (this.imds.onSalad) this.log.error({ reason }, 'the reallocation failed: exiting with 1');
      return 1;
    }
    await this.untilStopped();
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
   * One claim. Long-polls a source that can wait; when the answer comes back empty sooner than it
   * asked to wait (Kelpie answers at once), waits out the rest of the poll interval, as Kelpie's
   * worker polls. A failure: at least a second. Never past maxWaitS.
   */
  private async claim(maxWaitS = Infinity): Promise<JobLease | undefined> {
    const started = Date.now();
    const wake = new AbortController();
    this.claimWake = wake;
    const signal = AbortSignal.any([this.stopping.signal, wake.signal]);
    const waitS = this.source.waits ? Math.min(this.cfg.longPollS, maxWaitS) : undefined;
    let failed = false;
    try {
      const lease = await this.source.claim({ waitS: waitS ?? 0, signal });
      this.accessDenied = 0;
      if (lease) return lease;
    } catch (err) {
      if (signal.aborted) return undefined;
      if (err instanceof AccessDeniedError) {
        // A wrong key does not fix itself: a node that retries it forever is paid for doing nothing.
        if (++this.accessDenied >= AUTH_TRIES) {
          this.fatalError = err.message;
          this.log.fatal({ tries: this.accessDenied }, `${err.message}: giving up`);
          return undefined;
        }
        this.log.warn({ err: err.message, try: this.accessDenied, of: AUTH_TRIES }, 'the coordinator refused the API key; trying again');
        await sleep(backoffDelay(AUTH_RETRY, this.accessDenied), undefined, { signal }).catch(() => {});
        return undefined;
      }
      failed = true;
      this.log.warn({ err: errorMessage(err) }, 'claiming work failed; trying again');
    }
    const elapsed = Date.now() - started;
    const longPolled = waitS !== undefined && this.source.waits && elapsed >= waitS * 900;
    const wait = longPolled ? 0 : this.cfg.pollIntervalS * 1000 - elapsed;
    const delay = Math.min(failed ? Math.max(wait, 1000) : wait, maxWaitS * 1000);
    if (delay > 0) await sleep(delay, undefined, { signal }).catch(() => {});
    return undefined;
  }

  /** Runs one attempt; resolves once this worker is free for the next job. */
  private async runJob(lease: JobLease): Promise<void> {
    const earlier = this.finishing.get(lease.job.id);
    if (earlier) {
      // Its lease lapsed while this node was still finishing an earlier attempt (uploads, or a report
      // held up by an outage), and the claim handed it back here. Running beside that attempt would
      // write data after its report ended the job: wait for it to end, then run only if the job still
      // wants running (a failed attempt's retry does; a completed one's does not).
      this.log.warn({ job: lease.job.id, attempt: lease.job.attempt }, 'claimed a job this node is still finishing: waiting for that attempt to end');
      // The new lease is renewed while waiting, so it does not lapse behind a long final upload.
      let ended = false;
      void earlier.then(() => (ended = true));
      let status = 'running';
      while (!ended && status === 'running') {
        const tick = new AbortController();
        await Promise.race([earlier, sleep(lease.leaseMs / 3, undefined, { signal: tick.signal }).catch(() => {})]);
        tick.abort();
        if (!ended) status = await this.renew(lease);
      }
      if (status === 'running') status = await this.renew(lease);
      if (status !== 'running') {
        this.log.info({ job: lease.job.id, attempt: lease.job.attempt, status }, 'the job ended with the attempt this node was finishing: not run again');
        return;
      }
    }
    const run = new JobRun(lease, {
      cfg: this.cfg,
      store: this.store,
      state: this.state,
      deletionCost: this.deletionCost,
      transfer: this.transfer,
      stopping: this.stopping.signal,
      onEnded: (ending, reported) => this.ended(ending, reported, lease),
    }, this.log);
    const rest = await run.start();
    if (rest) {
      const task: Promise<void> = rest.background.finally(() => {
        this.background.delete(task);
        if (this.finishing.get(lease.job.id) === task) this.finishing.delete(lease.job.id);
      });
      this.finishing.set(lease.job.id, task);
      this.background.add(task);
    }
  }

  /** One renewal of a lease; when the source cannot be reached the job is taken as still running (the attempt finds out). */
  private renew(lease: JobLease): Promise<string> {
    return lease.heartbeat().catch((err: unknown) => {
      this.log.warn({ job: lease.job.id, err: errorMessage(err) }, 'renewing the lease failed; trying again');
      return 'running';
    });
  }

  /** A failure this worker reported counts towards MAX_JOB_FAILURES: then the node is reallocated. */
  private ended(ending: Ending, reported: boolean, lease: JobLease): void {
    if (ending !== 'failed' || !reported) return;
    this.failuresReported++;
    if (this.failuresReported >= this.cfg.maxJobFailures && this.reallocateReason === undefined) {
      this.reallocateReason = `drover worker: ${this.failuresReported} jobs failed on this machine (MAX_JOB_FAILURES=${this.cfg.maxJobFailures})`;
      this.log.warn({ job: lease.job.id }, this.reallocateReason);
      this.claimWake?.abort(); // a long-poll in flight must not hold the reallocation up
    }
  }
}
