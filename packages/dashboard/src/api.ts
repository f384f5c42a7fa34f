// The dashboard's one way to the API: fetch with the user's key in the X-Kelpie-Key header. The key
// lives in sessionStorage (this tab only, gone when it closes); it never goes into a URL.
import type { ErrorBody } from '@drover/protocol';

const KEY = 'drover.key';

export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  signIn: (key: string) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the key is refused, so the app can ask for another. */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(path: string, query: Record<string, string | number | boolean | undefined> = {}, signal?: AbortSignal): Promise<T> {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') qs.set(k, String(v));
  const key = session.key();
  const res = await fetch(`${path}${qs.size ? `?${qs}` : ''}`, {
    headers: { accept: 'application/json', ...(key ? { 'x-kelpie-key': key } : {}) },
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      message = (JSON.parse(text) as ErrorBody).message ?? message;
    } catch {
      /* not the API's error shape */
    }
    if (res.status === 401 || res.status === 403) onUnauthorized();
    throw new ApiError(res.status, message);
  }
  return JSON.parse(text) as T;
}
