// A sync rule's `pattern` as a glob (`checkpoint-*`, `*.bin`, `**/*.pt`, `?`, `[0-9]`, `{a,b}`),
// matched with minimatch (npm's own glob matcher). The reference compiled these patterns as
// regular expressions, so `*.bin` threw. minimatch rather than picomatch: picomatch passes regex
// groups through (`(x)+` matched `x`) and reads a leading `[!a]` as "`!` or `a`".
import { Minimatch } from 'minimatch';

/** Tests a path relative to the sync rule's local_path (or prefix), written with `/`. */
export type PathMatcher = (relativePath: string) => boolean;

/**
 * Compiles a sync pattern. An absent or empty pattern matches everything.
 *
 * Like .gitignore, a pattern selects a file when it matches the file's relative path or the path of
 * any folder the file lies in, so `checkpoint-*` selects everything inside `checkpoint-500/`.
 * A pattern without a slash is matched against single names at any depth: `*.bin` selects
 * `model.bin` and `a/b/model.bin`, and `checkpoint-*` selects `runs/checkpoint-500/model.pt`.
 * A pattern with a slash is anchored at the top: `data/*.pt` does not select `x/data/a.pt` (start
 * it with a `**` segment for that). `*` and `?` never cross a `/`, `**` does, and dot files are
 * matched like any other file. A leading `!` or `#` is literal (no negation, no comments).
 */
export function compileGlob(pattern?: string | null): PathMatcher {
  if (pattern === undefined || pattern === null || pattern === '') return () => true;
  let glob = pattern;
  while (glob.startsWith('./')) glob = glob.slice(2);
  glob = glob.replace(/\/+$/, '');
  const anchored = glob.includes('/');
  glob = glob.replace(/^\/+/, '');
  if (glob === '') return () => true;
  const mm = new Minimatch(glob, { dot: true, nonegate: true, nocomment: true, platform: 'linux' });
  const isMatch = (p: string) => mm.match(p);

  return (relativePath: string) => {
    const parts = relativePath.split('/').filter((s) => s !== '' && s !== '.');
    if (!anchored) return parts.some((name) => isMatch(name));
    for (let i = 1; i <= parts.length; i++) {
      if (isMatch(parts.slice(0, i).join('/'))) return true;
    }
    return false;
  };
}
