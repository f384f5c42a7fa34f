export { SaladCloudClient, SaladCloudError, parseRetryAfter, type SaladCloudClientOptions, type SaladCloudErrorKind } from './client.js';
export { RateLimiter } from './rate-limit.js';
export * from './types.js';
