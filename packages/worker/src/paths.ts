// Where a job's `local_path` may point. The worker purges a job's local paths after the job, so a
// path outside the worker's own folders (the reference accepted even `/`) would delete the node.
import { lstat, realpath } from 'node:fs/promises';
import path from 'node:path';

export interface LocalPathRoots {
  /** The worker's data folder; relative `local_path`s are taken relative to it. Must be absolute. */
  dataRoot: string;
  /** Kelpie's legacy INPUT_DIR, OUTPUT_DIR and CHECKPOINT_DIR, when set (unset entries are ignored). */
  legacyDirs?: readonly (string | undefined | null)[];
}

/** A `local_path` that would lie outside the data root and the legacy folders. */
export class PathNotAllowedError extends Error {
  override name = 'PathNotAllowedError';
  constructor(
    readonly path: string,
    readonly root: string,
    readonly reason: string,
    legacyDirs: readonly string[] = [],
  ) {
    const also = legacyDirs.length > 0 ? ` (or one of ${legacyDirs.join(', ')})` : '';
    super(`local_path ${JSON.stringify(path)} is not allowed: ${reason}; it must lie inside the data root ${root}${also}`);
  }
}

/** `child` is `parent` or lies below it (both absolute and normalized). */
function within(child: string, parent: string): boolean {
  if (child === parent) return true;
  const rel = path.relative(parent, child);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/**
 * The real path of `p` with every symlink resolved: realpath of its longest existing prefix plus
 * the part that does not exist yet. Returns undefined when an existing entry cannot be resolved
 * (a dangling symlink or a loop: creating the folder later would follow it somewhere unknown).
 */
async function realPathOf(p: string): Promise<string | undefined> {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return path.join(await realpath(cur), ...rest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return undefined;
      // The entry is absent, unless it is a symlink whose target is absent.
      const exists = await lstat(cur).then(
        () => true,
        () => false,
      );
      if (exists && code === 'ENOENT') return undefined;
      const parent = path.dirname(cur);
      if (parent === cur) return path.join(cur, ...rest);
      rest.unshift(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * Resolves a job's `local_path` to the absolute real path the worker will use, or throws
 * PathNotAllowedError. Allowed: anything strictly inside the data root (the root itself would be
 * purged with everything in it) and anything inside or equal to a legacy folder. Refused: NUL
 * bytes, the filesystem root, `..` escapes, and symlinks whose target lies outside.
 */
export async function resolveLocalPath(localPath: string, roots: LocalPathRoots): Promise<string> {
  if (!path.isAbsolute(roots.dataRoot)) throw new Error(`the data root must be an absolute path, got ${JSON.stringify(roots.dataRoot)}`);
  const dataRoot = path.resolve(roots.dataRoot);
  // A legacy folder set to `/` or to a relative path would allow everything: it is not honoured.
  const legacy = (roots.legacyDirs ?? [])
    .filter((d): d is string => typeof d === 'string' && d !== '' && path.isAbsolute(d))
    .map((d) => path.resolve(d))
    .filter((d) => d !== path.parse(d).root);
  const refuse = (reason: string) => new PathNotAllowedError(localPath, dataRoot, reason, legacy);

  if (typeof localPath !== 'string' || localPath.trim() === '') throw refuse('it is empty');
  if (localPath.includes('\0')) throw refuse('it contains a NUL byte');

  const check = (candidate: string, real: string, legacyRoots: readonly string[]) => {
    if (candidate === path.parse(candidate).root) throw refuse('it is the filesystem root');
    if (candidate === real) throw refuse('it is the data root itself, which is purged after the job');
    if (within(candidate, real) || legacyRoots.some((d) => within(candidate, d))) return;
    throw refuse('it lies outside the allowed folders');
  };

  const candidate = path.resolve(dataRoot, localPath);
  check(candidate, dataRoot, legacy);

  const realCandidate = await realPathOf(candidate);
  if (realCandidate === undefined) throw refuse('it passes through a symlink that cannot be resolved');
  const realRoot = (await realPathOf(dataRoot)) ?? dataRoot;
  const realLegacy = await Promise.all(legacy.map(async (d) => (await realPathOf(d)) ?? d));
  if (realCandidate !== candidate) {
    try {
      check(realCandidate, realRoot, realLegacy);
    } catch (err) {
      if (err instanceof PathNotAllowedError) {
        throw refuse(`it leads through a symlink to ${realCandidate}, and ${err.reason}`);
      }
      throw err;
    }
  } else {
    check(realCandidate, realRoot, realLegacy);
  }
  return realCandidate;
}
