// The store contract suites' common ground: a migrated store on a fresh database for one describe
// block, a user of a test's own, and a job definition with every field a store row needs.
import { after, before } from 'node:test';
import { randomUUID } from 'node:crypto';
import { openStore, type NewJob, type Store } from '@drover/server';
import { freshDatabase, type StoreKind } from './server.js';

/** Explicit clock of the contract suites: tests pass `now`, nothing sleeps. */
export const T0 = 1_700_000_000_000;

/**
 * Registers before/after hooks in the calling describe block that open a migrated store of `kind`
 * on a fresh database and drop it afterwards; call the returned function inside tests.
 */
export function storeForSuite(kind: StoreKind, leaseFactor = 2): () => Store {
  let store: Store | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  before(async () => {
    const db = await freshDatabase(kind);
    cleanup = db.cleanup;
    store = openStore(db.database, leaseFactor);
    await store.migrate();
  });
  after(async () => {
    await store?.close();
    await cleanup?.();
  });
  return () => {
    if (!store) throw new Error('storeForSuite: the store is opened in before(); use it inside a test');
    return store;
  };
}

/** A new user (and a group name of its own), so tests in one database never see each other's jobs. */
export async function storeUser(store: Store, prefix: string): Promise<{ userId: string; group: string }> {
  const userId = randomUUID();
  await store.createUser({ id: userId, username: `${prefix}-${userId}`, created: T0, admin: 0, webhook_secret: 'secret' });
  return { userId, group: `g-${userId.slice(0, 8)}` };
}

/** A job for `group` as the server would store it after validation, with the defaults overridable. */
export function storeJob(group: string, extra: Partial<NewJob['definition']> = {}): NewJob {
  return {
    id: randomUUID(),
    definition: {
      command: 'python',
      arguments: ['train.py'],
      environment: {},
      container_group_id: group,
      max_failures: 3,
      heartbeat_interval: 30,
      compression: false,
      ...extra,
    },
  };
}
