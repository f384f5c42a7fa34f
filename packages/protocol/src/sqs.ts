// The shapes of Drover's jobs on an AWS SQS queue (`drover worker --queue`): what a message carries
// besides its body (a JobDefinition as JSON), and the small JSON record the worker keeps for each job
// in the bucket, which `drover status --queue` reads (SQS itself cannot say anything about one
// message). docs/sqs.md has the protocol these serve.
import { Type, type Static } from '@sinclair/typebox';
import { Progress } from './schemas.js';

/**
 * Message attributes (all of SQS type String) that the worker sets on the messages it sends: the
 * copy that hands a job on before SQS's 12-hour visibility cap, and the dead letter. A message
 * submitted by a client carries none of them: its job id is its own MessageId.
 */
export const SQS_ATTRIBUTES = {
  /** The job's id (the MessageId of its first message), on every message after the first. */
  jobId: 'drover-job-id',
  /** Claims of the job so far. */
  attempt: 'drover-attempt',
  /** Failed attempts so far (the app exited non-zero, or its outputs did not upload). */
  failures: 'drover-failures',
  /** On a hand-on copy: the machine that runs the job and sent the copy to go on under it. */
  handOnFrom: 'drover-hand-on-from',
  /** On a hand-on copy: the MessageId of the message it replaces. */
  previous: 'drover-previous-message-id',
  /** On a dead letter: why the job was given up. */
  deadLetterReason: 'drover-dead-letter-reason',
  /** On a dead letter: the queue it came from. */
  sourceQueue: 'drover-source-queue',
} as const;

/**
 * The environment variables of each SQS setting, in order, for the worker's settings table and the
 * CLI alike. QUEUE_URL, AWS_ID and AWS_KEY are the seeds' demo app 2's names.
 */
export const SQS_ENV = {
  queue: ['DROVER_SQS_QUEUE_URL', 'QUEUE_URL'],
  deadLetterQueue: ['DROVER_SQS_DEAD_LETTER_QUEUE_URL'],
  statusBucket: ['DROVER_SQS_STATUS_BUCKET'],
  statusPrefix: ['DROVER_SQS_STATUS_PREFIX'],
  visibilityCap: ['DROVER_SQS_VISIBILITY_CAP_S'],
  endpoint: ['AWS_ENDPOINT_URL_SQS', 'AWS_ENDPOINT_URL'],
  region: ['DROVER_SQS_REGION'],
  accessKeyId: ['AWS_ID', 'AWS_ACCESS_KEY_ID'],
  secretAccessKey: ['AWS_KEY', 'AWS_SECRET_ACCESS_KEY'],
} as const satisfies Record<string, readonly string[]>;

/** `pending` is implied: a job no worker has received yet has no record. */
export const SQS_JOB_STATUSES = ['running', 'completed', 'dead-lettered', 'canceled'] as const;
export type SqsJobStatus = (typeof SQS_JOB_STATUSES)[number];

// (No `format: date-time`: TypeBox's Value.Check, which reads these records, refuses formats it has not registered.)
const Timestamp = Type.Union([Type.String({ description: 'ISO 8601' }), Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

export const SqsJobRecord = Type.Object(
  {
    id: Type.String({ description: 'The job id: the MessageId of its first message' }),
    queue_url: Type.String(),
    status: Type.Union(SQS_JOB_STATUSES.map((s) => Type.Literal(s)), {
      description: 'running from the first claim until completed, dead-lettered or canceled (as Kelpie keeps a job running through re-assignments)',
    }),
    message_id: Type.String({ description: 'The message the job runs (or waits) under now; it changes at each hand-on' }),
    replaced_message_ids: Type.Array(Type.String(), { description: 'Messages a hand-on replaced (newest last, at most 20): a receiver deletes them' }),
    attempt: Type.Integer({ description: 'Claims so far (+1 on every claim)' }),
    num_failures: Type.Integer(),
    max_failures: Type.Integer(),
    banned_machines: Type.Optional(Type.Array(Type.String(), {
      description: 'Machines that failed the job (oldest first, at most 50): they leave it to other nodes, as the coordinator bans them. Absent in records of workers before it',
    })),
    heartbeat_interval: Type.Integer({ description: 'seconds' }),
    lease_timeout: Type.Integer({ description: 'seconds: the visibility each heartbeat extends the message by' }),
    machine_id: Type.Union([Type.String(), Type.Null()], { description: 'The machine running it; null while it waits in the queue' }),
    command: NullableString,
    arguments: Type.Array(Type.String()),
    created: Type.String({ description: 'When its first message was sent (ISO 8601)' }),
    started: Timestamp,
    heartbeat: Timestamp,
    num_heartbeats: Type.Integer(),
    completed: Timestamp,
    dead_lettered: Timestamp,
    canceled: Type.Optional(Timestamp),
    hand_ons: Type.Integer({ description: 'Times the running job moved to a new message before the visibility cap' }),
    progress: Type.Union([Progress, Type.Null()]),
    last_error: NullableString,
    dead_letter_queue_url: NullableString,
    dead_letter_message_id: Type.Union([Type.String(), Type.Null()], {
      description: 'Set once the dead letter is sent; a dead-lettered record without it means the move is still to be finished',
    }),
    updated: Type.String({ description: 'ISO 8601' }),
  },
  { $id: 'SqsJobRecord' },
);
export type SqsJobRecord = Static<typeof SqsJobRecord>;

/** A receipt handle passed from a node that received a hand-on copy to the node running the job. */
export const SqsRelay = Type.Object(
  {
    message_id: Type.String(),
    receipt_handle: Type.String(),
    /** Epoch ms of the receive: the copy's own 12-hour cap counts from then. */
    received_at: Type.Integer(),
    relayed_by: Type.String(),
  },
  { $id: 'SqsRelay' },
);
export type SqsRelay = Static<typeof SqsRelay>;

/**
 * A request to cancel one job (`drover jobs cancel --queue`), beside its record: SQS cannot reach
 * one message, so the node holding the job reads it at its next heartbeat, and a node that receives
 * the job's message later deletes the message instead of running it.
 */
export const SqsCancel = Type.Object(
  {
    requested: Type.String({ description: 'When it was asked for (ISO 8601)' }),
  },
  { $id: 'SqsCancel' },
);
export type SqsCancel = Static<typeof SqsCancel>;

/** Where a queue's records live in the status bucket unless configured otherwise. */
export function defaultSqsStatusPrefix(queueName: string): string {
  return `.drover-sqs/${queueName}/`;
}

export function sqsRecordKey(prefix: string, jobId: string): string {
  return `${prefix}jobs/${jobId}.json`;
}

export function sqsRelayKey(prefix: string, jobId: string): string {
  return `${prefix}relays/${jobId}.json`;
}

export function sqsCancelKey(prefix: string, jobId: string): string {
  return `${prefix}cancels/${jobId}.json`;
}
