// The benchmarks' checks of their command-line flags, so a typo stops the run with one line naming
// the flag (exit 2, as the CLI's usage errors) instead of measuring NaN or printing a stack trace.

/** Stops the benchmark: one line on stderr, exit code 2. */
export function badFlag(message: string): never {
  console.error(message);
  process.exit(2);
}

/** `--name` as a whole number no smaller than `min` (1 unless given), or a usage error naming the flag. */
export function wholeFlag(name: string, v: string | undefined, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) badFlag(`--${name} must be a whole number >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}
