// API tokens: `drv_<id>_<secret>`. Only SHA-256(secret) is stored; a presented token is found
// by its id and its secret compared in constant time.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Store, UserRow } from '../store/types.js';

const TOKEN_RE = /^drv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const CACHE_MS = 10_000;

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function sameHash(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, 'hex');
  const b = Buffer.from(bHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export function newToken(): { id: string; token: string; secretHash: string } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `drv_${id}_${secret}`, secretHash: sha256Hex(secret) };
}

export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

export class Authenticator {
  /** verified tokens, briefly, so the hot path (heartbeats) does not query the database each time */
  private readonly cache = new Map<string, { hash: string; user: UserRow; until: number }>();
  private envAdmin: { hash: string; user: UserRow } | undefined;

  constructor(private readonly store: Store) {}

  /**
   * Make sure an admin exists. With `envKey` (DROVER_ADMIN_KEY) that key is the admin's;
   * otherwise a first start generates one and returns it, to be printed once.
   */
  async bootstrapAdmin(envKey: string | undefined, now: number): Promise<{ generatedKey?: string; admin: UserRow }> {
    let admin = await this.store.findAdmin();
    let generatedKey: string | undefined;
    if (!admin) {
      const candidate = { id: randomUUID(), username: 'admin', created: now, admin: 1, webhook_secret: newWebhookSecret() };
      try {
        await this.store.createUser(candidate);
        admin = candidate;
      } catch (e) {
        // another replica starting on the same new database made it first
        admin = await this.store.findAdmin();
        if (!admin) throw e;
      }
      if (admin === candidate && !envKey) {
        const t = newToken();
        await this.store.createToken({ id: t.id, user_id: admin.id, secret_hash: t.secretHash, created: now });
        generatedKey = t.token;
      }
    }
    if (envKey) this.envAdmin = { hash: sha256Hex(envKey), user: admin };
    return { admin, ...(generatedKey ? { generatedKey } : {}) };
  }

  async issueToken(userId: string, now: number): Promise<{ token: string; id: string }> {
    const t = newToken();
    await this.store.createToken({ id: t.id, user_id: userId, secret_hash: t.secretHash, created: now });
    return { token: t.token, id: t.id };
  }

  /** A token was revoked: this process stops accepting it at once (other replicas within CACHE_MS). */
  forgetToken(id: string): void {
    this.cache.delete(id);
  }

  /** A user was deleted: none of its tokens is accepted here any more. */
  forgetUser(userId: string): void {
    for (const [id, entry] of this.cache) if (entry.user.id === userId) this.cache.delete(id);
  }

  /** The user a presented key belongs to, or undefined. */
  async authenticate(key: string, now: number): Promise<UserRow | undefined> {
    if (this.envAdmin && sameHash(sha256Hex(key), this.envAdmin.hash)) return this.envAdmin.user;
    const m = TOKEN_RE.exec(key);
    if (!m) return undefined;
    const [, id, secret] = m as unknown as [string, string, string];
    const presented = sha256Hex(secret);
    const cached = this.cache.get(id);
    if (cached && cached.until > now) return sameHash(presented, cached.hash) ? cached.user : undefined;
    const record = await this.store.getToken(id);
    if (!record) return undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(id, { hash: record.secret_hash, user: record.user, until: now + CACHE_MS });
    return sameHash(presented, record.secret_hash) ? record.user : undefined;
  }
}
