export { DroverClient, storableReason, type ClientOptions, type ListJobsOptions, type Machine } from './client.js';
export { DroverApiError, DroverNetworkError } from './errors.js';
export type * from '@drover/protocol';
