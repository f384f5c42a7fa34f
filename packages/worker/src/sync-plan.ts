// What data a job wants moved, resolved against this worker's folders: the `sync` block, or
// Kelpie's legacy input/checkpoint/output fields when there is none. `sync: {}` means the app
// manages its own data. Every local_path is confined to the data root (or a legacy folder).
import { SYNC_PHASE_DIRECTION, type Job, type SyncEntry } from '@drover/protocol';
import { compileGlob, type PathMatcher } from './glob.js';
import path from 'node:path';
import { PathNotAllowedError, resolveLocalPath } from './paths.js';

/** The worker's own folder inside the data root (state file, snapshots, folders set aside). */
export const INTERNAL_DIR = '.drover';

export interface SyncRule {
  bucket: string;
  prefix: string;
  /** Absolute real path of the folder. */
  localPath: string;
  pattern?: string;
  matches: PathMatcher;
}

export interface SyncPlan {
  before: SyncRule[];
  during: SyncRule[];
  after: SyncRule[];
  /** Every distinct folder the job's rules use, purged before and after the job. */
  folders: string[];
}

export interface WorkerFolders {
  dataRoot: string;
  inputDir: string;
  outputDir: string;
  checkpointDir: string;
}

/**
 * The job's sync block is unusable (a direction that does not fit its phase). A Drover coordinator
 * refuses such a job at submission; a Kelpie coordinator may hand one out.
 */
export class SyncPlanError extends Error {
  override name = 'SyncPlanError';
}

/** The job's rules in the sync block's shape: its own block, or one built from the legacy fields. */
export function syncBlockOf(job: Job, folders: WorkerFolders): { before: SyncEntry[]; during: SyncEntry[]; after: SyncEntry[] } {
  if (job.sync) return { before: job.sync.before ?? [], during: job.sync.during ?? [], after: job.sync.after ?? [] };
  const block = { before: [] as SyncEntry[], during: [] as SyncEntry[], after: [] as SyncEntry[] };
  const entry = (bucket: string, prefix: string | null, local: string, direction: 'download' | 'upload'): SyncEntry => ({
    bucket, prefix: prefix ?? '', local_path: local, direction,
  });
  if (job.input_bucket) block.before.push(entry(job.input_bucket, job.input_prefix, folders.inputDir, 'download'));
  if (job.checkpoint_bucket) {
    block.before.push(entry(job.checkpoint_bucket, job.checkpoint_prefix, folders.checkpointDir, 'download'));
    block.during.push(entry(job.checkpoint_bucket, job.checkpoint_prefix, folders.checkpointDir, 'upload'));
  }
  if (job.output_bucket) {
    // Kelpie syncs the output folder while the job runs and once more after it exits.
    block.during.push(entry(job.output_bucket, job.output_prefix, folders.outputDir, 'upload'));
    block.after.push(entry(job.output_bucket, job.output_prefix, folders.outputDir, 'upload'));
  }
  return block;
}

/** Resolves and checks every rule; throws PathNotAllowedError or SyncPlanError. */
export async function planSync(job: Job, folders: WorkerFolders): Promise<SyncPlan> {
  const block = syncBlockOf(job, folders);
  const roots = { dataRoot: folders.dataRoot, legacyDirs: [folders.inputDir, folders.outputDir, folders.checkpointDir] };
  const plan: SyncPlan = { before: [], during: [], after: [], folders: [] };
  for (const phase of ['before', 'during', 'after'] as const) {
    for (const [i, e] of block[phase].entries()) {
      if (e.direction !== SYNC_PHASE_DIRECTION[phase]) {
        throw new SyncPlanError(`sync.${phase}[${i}] has direction "${e.direction}"; ${phase}-sync entries must be "${SYNC_PHASE_DIRECTION[phase]}"`);
      }
      const localPath = await resolveLocalPath(e.local_path, roots);
      const inRoot = path.relative(folders.dataRoot, localPath).split(path.sep)[0];
      if (inRoot === INTERNAL_DIR) {
        throw new PathNotAllowedError(e.local_path, folders.dataRoot, `${INTERNAL_DIR}/ inside the data root is the worker's own folder`);
      }
      let matches: PathMatcher;
      try {
        matches = compileGlob(e.pattern);
      } catch (err) {
        throw new SyncPlanError(`sync.${phase}[${i}].pattern ${JSON.stringify(e.pattern)} is not a valid glob: ${(err as Error).message}`);
      }
      plan[phase].push({ bucket: e.bucket, prefix: e.prefix, localPath, ...(e.pattern ? { pattern: e.pattern } : {}), matches });
      if (!plan.folders.includes(localPath)) plan.folders.push(localPath);
    }
  }
  return plan;
}
