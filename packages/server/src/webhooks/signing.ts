import { createHmac, timingSafeEqual } from 'node:crypto';

/** `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, as sent in X-Drover-Signature. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** For receivers: check a signature, and that the timestamp is recent (replay protection). */
export function verifyWebhook(
  secret: string,
  timestamp: string | number,
  body: string,
  signature: string,
  toleranceSeconds = 300,
  nowMs = Date.now(),
): boolean {
  const ts = Number(timestamp);
  if (!Number.isFinite(ts) || Math.abs(nowMs / 1000 - ts) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, ts, body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
