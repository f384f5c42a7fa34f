// The job folders' housekeeping: emptied between jobs (they may be mount points or legacy folders,
// so never removed), and moved aside when a job exits so the next job starts with empty ones
// while the finished one's last uploads run.
import { cp, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** Empties a folder without removing it (it may be a mount point or a legacy folder). */
export async function emptyFolder(dir: string): Promise<void> {
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
export async function moveAside(folders: readonly string[], asideRoot: string): Promise<(p: string) => string> {
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

