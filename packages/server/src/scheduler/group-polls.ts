// When each container group last had a worker asking for its work, so that a job queued for a
// group nobody serves (a typo in `-g`, a group whose nodes never started) says so at once instead
// of waiting in silence. Kept in the database (every replica sees the polls of the others),
// written at most once a minute per group by each coordinator: a long-poll every 20 s from 50
// nodes costs one write a minute.
import type { Store } from '../store/types.js';

/** No poll for this long: the group's pending jobs get a notice. */
export const UNSERVED_AFTER_MS = 5 * 60_000;
const WRITE_EVERY_MS = 60_000;
const MAX_REMEMBERED = 10_000;

export class GroupPolls {
  /** `user\0group` → when this process last wrote a poll of it. */
  private readonly written = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** A worker of the user asked for the group's work. Never delays or fails the claim. */
  seen(userId: string, groupId: string, now: number): void {
    const key = `${userId}\0${groupId}`;
    const last = this.written.get(key);
    if (last !== undefined && now - last < WRITE_EVERY_MS) return;
    if (this.written.size >= MAX_REMEMBERED) this.written.clear();
    this.written.set(key, now);
    this.store.recordPoll(userId, groupId, now).catch(this.onError);
  }

  /** What a pending job of the group is told when no worker asked for the group's work lately. */
  async notice(userId: string, groupId: string, now: number): Promise<string | undefined> {
    const mine = this.written.get(`${userId}\0${groupId}`);
    if (mine !== undefined && now - mine < UNSERVED_AFTER_MS) return undefined;
    const last = await this.store.lastPoll(userId, groupId);
    if (last !== undefined && now - last < UNSERVED_AFTER_MS) return undefined;
    const minutes = UNSERVED_AFTER_MS / 60_000;
    const when = last === undefined ? 'none ever has' : `the last one did ${Math.round((now - last) / 60_000)} minutes ago`;
    return `no worker has polled container group "${groupId}" in the last ${minutes} minutes (${when}): check the group id, or start a worker for it`;
  }
}
