// DROVER_PROGRESS_FILE: the app may write `{"fraction": 0.42, "message": "epoch 3/8"}` there; each
// heartbeat carries what it last held. A file that is missing, half-written or malformed sends
// no progress rather than failing the heartbeat.
import { readFile } from 'node:fs/promises';
import type { Progress } from '@drover/protocol';

const MAX_BYTES = 64 * 1024;

export async function readProgressFile(file: string): Promise<Progress | undefined> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > MAX_BYTES) return undefined;
    text = buf.toString('utf8');
  } catch {
    return undefined;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { fraction, message } = v as { fraction?: unknown; message?: unknown };
  if (typeof fraction !== 'number' || !Number.isFinite(fraction)) return undefined;
  const p: Progress = { fraction: Math.min(1, Math.max(0, fraction)) };
  if (typeof message === 'string') p.message = message.slice(0, 1024);
  return p;
}
