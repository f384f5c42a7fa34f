export { backoffDelay, retry, type Backoff, type RetryInfo, type RetryOptions } from './retry.js';
