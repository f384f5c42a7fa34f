import { resolve } from 'node:path';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './types.js';

export * from './types.js';
export { SqliteStore } from './sqlite.js';
export { PostgresStore } from './postgres.js';

export const DEFAULT_DATABASE = './.drover/drover.db';

/** A `postgres://` (or `postgresql://`) URL opens PostgreSQL; anything else is a SQLite file path. */
export function openStore(database: string, leaseFactor = 2, onError?: (err: Error) => void): Store {
  if (/^postgres(ql)?:\/\//i.test(database)) {
    return PostgresStore.open({ url: database, leaseFactor, ...(onError ? { onError } : {}) });
  }
  return SqliteStore.open(database === ':memory:' ? database : resolve(database), leaseFactor);
}
