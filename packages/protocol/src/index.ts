export * from './schemas.js';

/** Header carrying the API key, as the Kelpie API has it. `Authorization: Bearer` is accepted too. */
export const API_KEY_HEADER = 'x-kelpie-key';
/** Webhook signature headers (Drover). Signature = hex HMAC-SHA256(webhook_secret, `${timestamp}.${body}`). */
export const WEBHOOK_TIMESTAMP_HEADER = 'x-drover-timestamp';
export const WEBHOOK_SIGNATURE_HEADER = 'x-drover-signature';
export const WEBHOOK_EVENT_HEADER = 'x-drover-event';
export * from './sqs.js';
