// How times, ages and sizes read on the page.
export function age(iso: string | null, now: number): string {
  if (!iso) return '—';
  return ago(now - Date.parse(iso));
}

export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function time(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export const shortId = (id: string) => id.slice(0, 8);

export const percent = (f: number) => `${(f * 100).toFixed(f < 0.1 ? 1 : 0)} %`;
