// One attempt of one job on this worker, in explicit phases:
//   prepare  → the job's sync plan checked against the data root, its folders emptied, its entry
//              in the state file;
//   download → the before-sync;
//   run      → the command, with the during-sync and the heartbeat, until it exits, the job is
//              lost (canceled, or held by another node) or the worker shuts down;
//   upload   → the last checkpoints and the outputs (in the background once the folders are moved
//              aside: the worker takes its next job meanwhile);
//   report   → completed, failed or released to the source, or dropped when the job was lost.
// A phase that ends the attempt early throws `EndAttempt` with the report it calls for, so every
// ending goes through one place (`end`), which also records the outcome in the state file.
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { retry } from '@drover/common';
import { errorMessage, type ObjectStore, type TransferOptions } from '@drover/storage';
import type { Logger } from 'pino';
import type { WorkerConfig } from './config.js';
import { DuringSync, downloadBefore, uploadAfter, type SyncContext } from './data-sync.js';
import type { DeletionCost } from './deletion-cost.js';
import { emptyFolder, moveAside } from './folders.js';
import { Heartbeat } from './heartbeat.js';
import { JobProcess, type JobExit } from './job-process.js';
import { LogShipper } from './log-shipper.js';
import { PathNotAllowedError } from './paths.js';
import { readProgressFile } from './progress.js';
import { ReportRefusedError, type JobLease } from './source/job-source.js';
import type { StateFile, StateJobStatus } from './state-file.js';
import { INTERNAL_DIR, planSync, SyncPlanError, type SyncPlan, type SyncRule } from './sync-plan.js';

/** What ends an attempt: a report to the source, or `drop` when the job is no longer ours. */
export type Ending = 'completed' | 'failed' | 'release' | 'drop';

/** What a run needs from the worker that runs it. */
export interface JobRunContext {
  cfg: WorkerConfig;
  store: ObjectStore;
  state: StateFile;
  deletionCost: DeletionCost;
  /** Part size, concurrency and retries of every transfer (fenced per job here). */
  transfer: TransferOptions;
  /** Aborted when the worker shuts down. */
  stopping: AbortSignal;
  /** Called once the attempt has ended; `reported` is false when the source could not be told. */
  onEnded: (ending: Ending, reported: boolean) => void;
}

/** Thrown by a phase to end the attempt early. */
class EndAttempt {
  constructor(
    readonly ending: Ending,
    readonly reason?: string,
  ) {}
}

/** The state-file status an ending leaves. */
const STATE_STATUS: Record<Ending, StateJobStatus> = { completed: 'completed', failed: 'failed', release: 'canceled', drop: 'canceled' };

/** Reporting an outcome: 1 s, doubling up to 30 s, ten tries (about two and a half minutes). */
const REPORT_BACKOFF = { baseMs: 1000, maxMs: 30_000, jitter: 'proportional' } as const;

/** Why a job process that did not exit 0 failed, for the job's events. */
function exitReason(exit: JobExit): string {
  if (exit.startError) return `the command could not be started: ${exit.startError.message}`;
  if (exit.signal) return `the job process was killed by ${exit.signal}`;
  return `the job process exited with code ${exit.code}`;
}

export class JobRun {
  private readonly job;
  private readonly log: Logger;
  private readonly lost = new AbortController();
  private lostStatus = '';
  private readonly heartbeat: Heartbeat;
  private readonly internal: string;
  private readonly progressFile: string;
  private plan: SyncPlan | undefined;
  /** Every folder the attempt uses: purged before it starts and after it ends. */
  private folders: string[] = [];
  private during: DuringSync | undefined;
  private proc: JobProcess | undefined;
  /** The job's output to the source, where it keeps logs (and the worker ships them). */
  private readonly logs: LogShipper | undefined;

  constructor(
    private readonly lease: JobLease,
    private readonly ctx: JobRunContext,
    workerLog: Logger,
  ) {
    this.job = lease.job;
    this.log = workerLog.child({ job: this.job.id, attempt: this.job.attempt });
    this.internal = path.join(ctx.cfg.dataRoot, INTERNAL_DIR);
    this.progressFile = path.join(this.internal, 'progress', `${this.job.id}.json`);
    this.logs = ctx.cfg.shipLogs ? LogShipper.forLease(lease, this.log) : undefined;
    this.heartbeat = new Heartbeat({
      lease,
      intervalMs: this.job.heartbeat_interval * 1000,
      progressFile: this.progressFile,
      log: this.log,
      onRunning: (beats) => void ctx.deletionCost.beat(this.job.id, beats),
      onLost: (status) => {
        this.lostStatus = status;
        this.log.warn({ status }, 'the job source no longer has this job running here: stopping it');
        this.lost.abort();
      },
    });
  }

  /**
   * Runs the attempt until this worker is free for its next job. Resolves with what is left of
   * the attempt (its last uploads and its report, running in the background), if anything.
   */
  async start(): Promise<{ background: Promise<void> } | undefined> {
    const { job, log, ctx } = this;
    log.info({ command: job.command, arguments: job.arguments, heartbeatS: job.heartbeat_interval }, 'claimed a job');
    await rm(this.progressFile, { force: true });
    void ctx.deletionCost.jobStarted(job.id);
    this.heartbeat.start();
    try {
      const plan = await this.prepare();
      await this.download(plan);
      const exited = await this.run(plan);
      if (exited.shutdown) {
        // It finished just as the worker was told to stop: finish the job normally, in the foreground.
        await this.upload(exited.exit, plan, this.folders);
        return undefined;
      }
      return await this.uploadInBackground(exited.exit, plan);
    } catch (err) {
      if (err instanceof EndAttempt) {
        await this.end(err.ending, err.reason);
        return undefined;
      }
      // Something this worker did not foresee (a folder it cannot write, a full disk): the job fails
      // here, the worker lives on.
      log.error({ err: errorMessage(err) }, 'running the job failed');
      await this.proc?.stop('SIGKILL', 0);
      await this.during?.abandon();
      await this.end('failed', `running the job failed: ${errorMessage(err)}`);
      return undefined;
    }
  }

  /** prepare: the sync plan (a job this node must refuse fails here), empty folders, the state file. */
  private async prepare(): Promise<SyncPlan> {
    const { cfg, state } = this.ctx;
    await state.dropFinished().catch(() => {});
    await this.record('prepare');
    try {
      this.plan = await planSync(this.job, { dataRoot: cfg.dataRoot, inputDir: cfg.inputDir, outputDir: cfg.outputDir, checkpointDir: cfg.checkpointDir });
    } catch (err) {
      if (!(err instanceof PathNotAllowedError || err instanceof SyncPlanError)) throw err;
      this.log.error({ err: err.message }, `job refused: ${err.message}`);
      throw new EndAttempt('failed', `job refused: ${err.message}`);
    }
    this.folders = [...this.plan.folders, cfg.inputDir, cfg.outputDir, cfg.checkpointDir];
    for (const f of this.folders) {
      await mkdir(f, { recursive: true });
      await emptyFolder(f);
    }
    return this.plan;
  }

  /** download: the before-sync. */
  private async download(plan: SyncPlan): Promise<void> {
    try {
      const got = await downloadBefore(plan.before, this.syncContext(AbortSignal.any([this.lost.signal, this.ctx.stopping])));
      if (plan.before.length > 0) this.log.info({ files: got.files, bytes: got.bytes }, 'inputs downloaded');
    } catch (err) {
      await this.purge(this.folders);
      if (this.lost.signal.aborted) throw new EndAttempt('drop');
      if (this.ctx.stopping.aborted) throw new EndAttempt('release');
      this.log.error({ err: errorMessage(err) }, "downloading the job's data failed");
      throw new EndAttempt('failed', `downloading the job's data failed: ${errorMessage(err)}`);
    }
  }

  /**
   * run: the command with the during-sync, until it exits. A lost job is stopped (SIGINT) and
   * dropped; on shutdown the app gets SIGTERM to save a checkpoint, which is uploaded before the job
   * is released, unless it exited 0 just then (`shutdown: true`: finished normally).
   */
  private async run(plan: SyncPlan): Promise<{ exit: JobExit; shutdown: boolean }> {
    const { cfg, stopping } = this.ctx;
    const { job, log } = this;
    // Only losing the job stops its uploads: on shutdown the last checkpoint must still go up.
    const during = new DuringSync(plan.during, {
      ...this.syncContext(this.lost.signal),
      snapshotDir: path.join(this.internal, 'snapshots'),
      settleMs: cfg.settleS * 1000,
      maxWaitMs: cfg.maxWaitS * 1000,
      scanIntervalMs: cfg.scanIntervalS * 1000,
    });
    this.during = during;
    await during.start();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...(job.environment ?? {}),
      KELPIE_JOB_ID: job.id,
      KELPIE_STATE_FILE: cfg.stateFile,
      INPUT_DIR: cfg.inputDir,
      OUTPUT_DIR: cfg.outputDir,
      CHECKPOINT_DIR: cfg.checkpointDir,
      DROVER_PROGRESS_FILE: this.progressFile,
      // Relative sync local_paths are relative to the data root, not to the job's working directory.
      DROVER_DATA_ROOT: cfg.dataRoot,
    };
    const proc = new JobProcess({ command: job.command, args: job.arguments ?? [], env, cwd: process.cwd(), log, onLine: (stream, line) => this.logs?.push(stream, line) });
    this.proc = proc;
    log.info({ pid: proc.pid }, 'job process started');

    const listeners = new AbortController(); // removes the two listeners below once the race is over
    const stopRequested = new Promise<'lost' | 'shutdown'>((resolve) => {
      this.lost.signal.addEventListener('abort', () => resolve('lost'), { once: true, signal: listeners.signal });
      stopping.addEventListener('abort', () => resolve('shutdown'), { once: true, signal: listeners.signal });
      if (this.lost.signal.aborted) resolve('lost');
      if (stopping.aborted) resolve('shutdown');
    });
    const first = await Promise.race([proc.exited, stopRequested]);
    listeners.abort();
    if (first === 'lost') {
      await proc.stop('SIGINT', cfg.killGraceS * 1000);
      await during.abandon();
      await this.purge(this.folders);
      throw new EndAttempt('drop');
    }
    if (first === 'shutdown') {
      // The node is going away: let the app save a checkpoint, upload it, hand the job back.
      const exit = await proc.stop('SIGTERM', cfg.killGraceS * 1000);
      await this.record('exited', exit);
      if (exit.code === 0 && !this.lost.signal.aborted) return { exit, shutdown: true };
      await during.finish().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'last checkpoint upload failed'));
      await this.purge(this.folders);
      throw new EndAttempt(this.lost.signal.aborted ? 'drop' : 'release');
    }
    await this.record('exited', first);
    log.info({ code: first.code, signal: first.signal }, first.startError ? `the command could not be started: ${first.startError.message}` : 'job process exited');
    return { exit: first, shutdown: false };
  }

  /**
   * The folders move aside so the next job starts with empty ones, then the uploads and the report
   * run in the background; resolves (with that background work) once the worker is free.
   */
  private async uploadInBackground(exit: JobExit, plan: SyncPlan): Promise<{ background: Promise<void> }> {
    const during = this.during as DuringSync;
    await during.pause();
    const aside = path.join(this.internal, 'aside', `${this.job.id}-${this.job.attempt}`);
    const relocate = await moveAside([...plan.during, ...plan.after].map((r) => r.localPath), aside);
    during.relocate(relocate);
    const after = plan.after.map((r): SyncRule => ({ ...r, localPath: relocate(r.localPath) }));
    await this.purge(this.folders);
    // (Wrapped: an async function cannot resolve with a promise, it would wait for it.)
    return { background: this.upload(exit, { ...plan, after }, [aside]).catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'finishing the job failed')) };
  }

  /**
   * upload, then report: the last checkpoints and the outputs, then the outcome. The heartbeat runs
   * until the report, and the node's deletion cost stays at its highest until then (a node lost
   * between the upload and the report makes another node run the job again).
   */
  private async upload(exit: JobExit, plan: SyncPlan, cleanup: string[]): Promise<void> {
    const { log } = this;
    const during = this.during as DuringSync;
    const lost = this.lost.signal;
    let ending: Ending = exit.code === 0 ? 'completed' : 'failed';
    let reason = exit.code === 0 ? undefined : exitReason(exit);
    const uploads = async (): Promise<void> => {
      try {
        await during.finish();
      } catch (err) {
        if (lost.aborted) return;
        log.error({ err: errorMessage(err) }, 'uploading the last files failed');
        reason = `${reason ? `${reason}; ` : ''}uploading the last files failed: ${errorMessage(err)}`;
        ending = 'failed';
        return;
      }
      if (ending !== 'completed' || plan.after.length === 0) return;
      try {
        const r = await uploadAfter(plan.after, this.syncContext(lost), during);
        log.info({ files: r.files, bytes: r.bytes }, 'outputs uploaded');
      } catch (err) {
        if (lost.aborted) return;
        log.error({ err: errorMessage(err) }, 'uploading the outputs failed: reporting the job failed');
        reason = `uploading the outputs failed: ${errorMessage(err)}`;
        ending = 'failed';
      }
    };
    await this.ctx.deletionCost.duringFinalUpload(async () => {
      void this.ctx.deletionCost.jobEnded(this.job.id); // its process is done: only the uploads count now
      try {
        await uploads();
      } finally {
        await this.purge(cleanup);
      }
      await this.end(lost.aborted ? 'drop' : ending, reason);
    });
  }

  /** report: stops the heartbeat, tells the source (unless dropping), records the outcome. */
  private async end(ending: Ending, reason?: string): Promise<void> {
    // The last lines go before the report: a reader following the log sees it end with the attempt.
    await this.logs?.close();
    await this.heartbeat.stop();
    void this.ctx.deletionCost.jobEnded(this.job.id);
    const reported = ending === 'drop' ? true : await this.report(ending, reason);
    if (ending === 'drop') this.log.info({ status: this.lostStatus }, 'job dropped');
    await this.record('ended', ending);
    this.ctx.onEnded(ending, reported);
  }

  /**
   * Sends the outcome, retrying transient failures with backoff for a few minutes (the output is
   * already uploaded: giving up early would make another node run the job again); a release, a few
   * seconds. A refusal (4xx) is final.
   */
  private async report(ending: Exclude<Ending, 'drop'>, reason?: string): Promise<boolean> {
    const { lease, log } = this;
    // The app's last progress goes with the completion: it may have written it after the last heartbeat.
    const progress = ending === 'completed' ? await readProgressFile(this.progressFile) : undefined;
    const send = { completed: () => lease.complete(progress), failed: () => lease.fail(reason), release: () => lease.release() }[ending];
    try {
      await retry(send, {
        // A release that cannot be sent costs nothing but time (the lease lapses and the job moves
        // on anyway), and a node going away should not linger for minutes retrying it.
        attempts: ending === 'release' ? 3 : 10,
        backoff: REPORT_BACKOFF,
        retryable: (err) => !(err instanceof ReportRefusedError),
        onRetry: (r) => log.warn({ report: ending, attempt: r.attempt, err: errorMessage(r.error) }, 'reporting the job failed; retrying'),
      });
    } catch (err) {
      if (err instanceof ReportRefusedError) log.warn({ report: ending, err: err.message }, 'the coordinator refused the report');
      else log.error({ report: ending, err: errorMessage(err) }, 'could not report the job; its lease will lapse and another node will run it');
      return false;
    }
    log.info({ report: ending, ...(reason !== undefined ? { reason } : {}) }, `job reported ${ending === 'release' ? 'released' : ending}`);
    return true;
  }

  /** The one place the attempt's phases reach the state file the app can read (KELPIE_STATE_FILE). */
  private async record(phase: 'prepare', detail?: undefined): Promise<void>;
  private async record(phase: 'exited', detail: JobExit): Promise<void>;
  private async record(phase: 'ended', detail: Ending): Promise<void>;
  private async record(phase: 'prepare' | 'exited' | 'ended', detail?: JobExit | Ending): Promise<void> {
    const { state } = this.ctx;
    const change =
      phase === 'prepare' ? state.addJob(this.job.id)
        : phase === 'exited' ? state.setExit(this.job.id, (detail as JobExit).code)
          : state.setStatus(this.job.id, STATE_STATUS[detail as Ending]);
    await change.catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not update the state file'));
  }

  /** How the job's data moves: every write fenced by the lease (see Heartbeat.fence). */
  private syncContext(signal: AbortSignal): SyncContext {
    const transfer: TransferOptions = { ...this.ctx.transfer, beforeCommit: () => this.heartbeat.fence(this.lost.signal) };
    return { store: this.ctx.store, transfer, state: this.ctx.state, jobId: this.job.id, log: this.log, signal, gzip: this.job.compression === true };
  }

  private async purge(folders: readonly string[]): Promise<void> {
    const asideRoot = path.join(this.internal, 'aside') + path.sep;
    for (const f of folders) await emptyFolder(f).catch((err: unknown) => this.log.warn({ folder: f, err: errorMessage(err) }, 'could not purge'));
    for (const f of folders) if (f.startsWith(asideRoot)) await rm(f, { recursive: true, force: true }).catch(() => {});
  }
}
