// App-managed data (the seeds' demo app 3; the job is submitted with `sync: {}`): the app downloads
// its input and last state itself, and uploads state, log and output with the Checkpointer (@drover/checkpointer),
// whose background queue never holds the computation up. When uploads pile up or keep failing,
// the node is too slow or cut off: the app asks SaladCloud (IMDS) to move it elsewhere.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Checkpointer, type CheckpointerEvent } from '@drover/checkpointer';
import { downloadFile, errorMessage, NotFoundError, openStore, storeSettingsFromEnv, type ObjectStore } from '@drover/storage';
import { ImdsClient } from '@drover/worker';
import { removeFolder, type DataSide, type Folders } from './app.js';
import type { AppConfig } from './config.js';
import { inputKey, LAYOUT } from './job.js';

/** Rounds finish() makes to get the last files up before it gives up. */
const FINISH_ROUNDS = 3;

export class AppManaged implements DataSide {
  readonly folders: Folders;
  readonly inputSource: string;
  readonly uniqueLoadFiles = true;
  /** Outcome of the latest upload of each state and output file (path relative to the work folder). */
  private readonly last = new Map<string, 'uploaded' | 'error'>();
  /** Keys of load files in the bucket: each upload replaces the older ones. */
  private loadKeys: string[] = [];
  private readonly deleting = new Set<Promise<void>>();

  private readonly checkpointer: Checkpointer;

  private constructor(
    private readonly cfg: AppConfig,
    private readonly store: ObjectStore,
    env: NodeJS.ProcessEnv,
  ) {
    // Uploads run in the Checkpointer's own thread (fromEnv), off the computation's.
    this.checkpointer = Checkpointer.fromEnv({
      bucket: cfg.bucket,
      prefix: cfg.prefix,
      localDir: cfg.workDir,
      env,
      onEvent: (e) => this.onEvent(e),
    });
    const dir = (name: string) => path.join(cfg.workDir, name);
    this.folders = { input: dir(LAYOUT.input), state: dir(LAYOUT.state), load: dir(LAYOUT.load), output: dir(LAYOUT.output) };
    this.inputSource = `${cfg.bucket}/${inputKey(cfg.prefix)}`;
  }

  private isLoad(rel: string): boolean {
    return rel.startsWith(`${LAYOUT.load}/`);
  }

  /** Opens the store the environment names (DROVER_STORAGE, AWS_*, CLOUDFLARE_*). */
  static async open(cfg: AppConfig, env: NodeJS.ProcessEnv = process.env): Promise<AppManaged> {
    const store = openStore(storeSettingsFromEnv(env));
    // The work folder is scratch: what counts is in the bucket. Start from a clean one.
    await removeFolder(cfg.workDir);
    await mkdir(cfg.workDir, { recursive: true });
    return new AppManaged(cfg, store, env);
  }

  private onEvent(e: CheckpointerEvent): void {
    if (e.type === 'error') console.log(`series-sum: upload of ${e.path} failed: ${errorMessage(e.error)}`);
    if (e.type === 'uploaded' && this.isLoad(e.path)) {
      // Only the newest load file stays in the bucket (the load is the upload, not the storage).
      // Names sort by step; uploads of two of them may end in either order.
      const keys = [...this.loadKeys, `${this.cfg.prefix}${e.path}`].sort();
      this.loadKeys = keys.slice(-1);
      for (const key of keys.slice(0, -1)) {
        const p: Promise<void> = this.store.delete(this.cfg.bucket, key).catch(() => undefined).finally(() => this.deleting.delete(p));
        this.deleting.add(p);
      }
    }
    if (!this.isLoad(e.path) && e.type !== 'replaced') this.last.set(e.path, e.type);
  }

  private rel(file: string): string {
    return path.relative(this.cfg.workDir, file).split(path.sep).join('/');
  }

  async prepare(): Promise<void> {
    const { cfg } = this;
    const key = inputKey(cfg.prefix);
    try {
      await downloadFile(this.store, cfg.bucket, key, path.join(this.folders.input, LAYOUT.inputFile));
    } catch (err) {
      // A missing input is bad input (reported in the output); anything else is this node's trouble.
      if (!(err instanceof NotFoundError)) throw new Error(`downloading the input ${cfg.bucket}/${key} failed: ${errorMessage(err)}`, { cause: err });
    }
    // Load files earlier runs left are replaced by this run's first one.
    try {
      for await (const o of this.store.list(cfg.bucket, `${cfg.prefix}${LAYOUT.load}/`)) this.loadKeys.push(o.key);
    } catch (err) {
      console.log(`series-sum: could not list the old load files: ${errorMessage(err)}`);
    }
    const stateFiles = [LAYOUT.stateFile, LAYOUT.logFile].map((f) => `${LAYOUT.state}/${f}`);
    try {
      await this.checkpointer.restore({ files: stateFiles });
    } catch (err) {
      throw new Error(`downloading the last state from ${cfg.bucket}/${cfg.prefix}${LAYOUT.state}/ failed: ${errorMessage(err)}`, { cause: err });
    }
  }

  async saved(files: string[]): Promise<void> {
    for (const f of files) this.last.delete(this.rel(f));
    await this.checkpointer.save(files);
  }

  overloaded(): string | undefined {
    const s = this.checkpointer.stats();
    if (s.pending > this.cfg.maxPending) return `${s.pending} uploads are waiting (more than ${this.cfg.maxPending}); upload speed ${s.bytesPerSecond} B/s`;
    if (s.errors > this.cfg.maxUploadErrors) return `${s.errors} uploads failed (more than ${this.cfg.maxUploadErrors})`;
    return undefined;
  }

  /**
   * Uploads the output, and waits until it and every file saved before it is in the bucket; a
   * file whose latest upload failed is saved again (a few rounds). Throws if some did not land.
   */
  async finish(files: string[]): Promise<void> {
    await this.saved(files);
    for (let round = 1; ; round++) {
      await this.checkpointer.flush();
      const failed = [...this.last.entries()].filter(([, outcome]) => outcome === 'error').map(([rel]) => rel);
      if (failed.length === 0) {
        await Promise.all(this.deleting);
        return;
      }
      if (round >= FINISH_ROUNDS) throw new Error(`could not upload ${failed.join(', ')} after ${FINISH_ROUNDS} rounds`);
      await this.saved(failed.map((rel) => path.join(this.cfg.workDir, ...rel.split('/'))));
    }
  }

  /** Waits for the uploads in the queue, at most FLUSH_TIMEOUT seconds. */
  async interrupted(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.cfg.flushTimeoutSeconds * 1000)));
    const r = await Promise.race([this.checkpointer.flush().then(() => 'flushed' as const), timeout]);
    clearTimeout(timer);
    if (r === 'timeout') console.log(`series-sum: uploads still running after ${this.cfg.flushTimeoutSeconds} s: exiting anyway`);
  }

  async close(): Promise<void> {
    // After a signal the queue may still hold uploads: close() would wait for them, so only a
    // clean finish closes; otherwise the process exit ends the upload thread.
    const s = this.checkpointer.stats();
    if (s.pending === 0 && s.inFlight === 0) await this.checkpointer.close();
    await removeFolder(this.cfg.workDir);
  }
}

/** Reallocation through SaladCloud's IMDS; off SaladCloud (SALAD_MACHINE_ID unset or LOCAL) it exits 1. */
export function reallocator(cfg: AppConfig, env: NodeJS.ProcessEnv = process.env): (reason: string) => Promise<void> {
  const imds = ImdsClient.fromEnv(env, { machineId: cfg.machineId === 'LOCAL' ? undefined : cfg.machineId });
  return async (reason) => {
    const ok = await imds.reallocate(`series-sum: ${reason}`);
    if (!ok) console.log('series-sum: the reallocation request failed: going on here');
  };
}
