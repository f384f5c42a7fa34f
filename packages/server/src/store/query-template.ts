// A query shape built and compiled once per store. Kysely builds and compiles every query anew,
// which on the hot paths (claim, heartbeat, completion) cost the SQLite store as much as running
// them; a template compiles its shape on first use with marker values and afterwards only swaps in
// the real parameters.
import { CompiledQuery, type Kysely } from 'kysely';
import type { Database } from './schema.js';

const MARK = '\u0000drover-param-';

/** A query builder (`compile()`) or a raw `sql` fragment (`compile(db)`). */
interface Buildable {
  compile(db: Kysely<Database>): CompiledQuery<unknown>;
}

interface Shape {
  sql: string;
  slots: number[];
  fixed: readonly unknown[];
}

/**
 * `build` gets the store (`C`, whose database and settings shape the SQL) and the arguments; it
 * must give the same SQL for any arguments: no branching on them. The shape is kept per store.
 */
export class QueryTemplate<C extends { readonly db: Kysely<Database> }, A extends unknown[]> {
  private readonly shapes = new WeakMap<C, Shape>();

  constructor(private readonly build: (store: C, ...args: A) => Buildable) {}

  bind<R>(store: C, ...args: A): CompiledQuery<R> {
    let shape = this.shapes.get(store);
    if (!shape) {
      const marked = args.map((_, i) => `${MARK}${i}`) as unknown as A;
      const compiled = this.build(store, ...marked).compile(store.db);
      const slots = compiled.parameters.map((p) =>
        typeof p === 'string' && p.startsWith(MARK) ? Number(p.slice(MARK.length)) : -1,
      );
      shape = { sql: compiled.sql, slots, fixed: compiled.parameters };
      this.shapes.set(store, shape);
    }
    const { sql, slots, fixed } = shape;
    return CompiledQuery.raw(sql, slots.map((slot, i) => (slot >= 0 ? args[slot] : fixed[i]))) as CompiledQuery<R>;
  }
}
