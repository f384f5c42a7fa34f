// A query shape built and compiled once. Kysely builds and compiles every query anew, which on
// the hot paths (claim, heartbeat, completion) cost the SQLite store as much as running them;
// a template compiles its shape on first use with marker values and afterwards only swaps in
// the real parameters.
import { CompiledQuery, type Compilable } from 'kysely';

const MARK = '\u0000drover-param-';

export class QueryTemplate<A extends unknown[]> {
  private shape: { sql: string; slots: number[]; fixed: readonly unknown[] } | undefined;

  /** `build` must give the same SQL for any arguments: no branching on them. */
  constructor(private readonly build: (...args: A) => Compilable<unknown>) {}

  bind<R>(...args: A): CompiledQuery<R> {
    if (!this.shape) {
      const marked = args.map((_, i) => `${MARK}${i}`) as unknown as A;
      const compiled = this.build(...marked).compile();
      const slots = compiled.parameters.map((p) =>
        typeof p === 'string' && p.startsWith(MARK) ? Number(p.slice(MARK.length)) : -1,
      );
      this.shape = { sql: compiled.sql, slots, fixed: compiled.parameters };
    }
    const { sql, slots, fixed } = this.shape;
    return CompiledQuery.raw(sql, slots.map((slot, i) => (slot >= 0 ? args[slot] : fixed[i]))) as CompiledQuery<R>;
  }
}
