// `@drover/worker/sqs`: the SQS job source and the queue and record access it is built on, for the
// CLI's queue commands and for tests. A subpath of its own, so that importing `@drover/worker` (an
// app's ImdsClient, the CLI's worker command) does not load the AWS SQS SDK.
export { SqsSource, SQS_LEASE_FACTOR, SQS_VISIBILITY_CAP_S, type SqsSourceSettings } from './source/sqs.js';
export {
  SqsQueue, SqsBatchError, attributesOf, messageGone, queueMissing, sqsAccessDenied, sqsRetryable, sqsText,
  type Attributes, type Gone, type QueueCounts, type Received, type SqsConnection,
} from './source/sqs-queue.js';
export { parseQueueSpec, sqsFallbackRegion, SqsSettingError, type QueueSpec } from './source/sqs-spec.js';
export { BadRecordError, SqsRecords } from './source/sqs-records.js';
