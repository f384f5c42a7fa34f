export { DroverClient, storableReason, type ClientOptions, type ListJobsOptions, type Machine } from './client.js';
export { DroverApiError, DroverNetworkError } from './errors.js';
export type * from '@drover/protocol';
export { Checkpointer, CHECKPOINTER_DIR, type CheckpointerEvent, type CheckpointerOptions, type CheckpointerStats } from './checkpointer.js';
