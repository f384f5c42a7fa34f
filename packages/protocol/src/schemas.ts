// One schema per wire shape. The server validates and serializes with these, the OpenAPI
// document is generated from them and the SDK's types are derived from them.
import { Type, type Static, type TSchema, type TString, type TInteger, type TNumber } from '@sinclair/typebox';

/** A primitive that may also be JSON null, as `type: [T, "null"]` (cheaper to serialize than anyOf). */
function Nullable<T extends TString | TInteger | TNumber>(schema: T) {
  return Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type, 'null'] });
}

export const JOB_STATUSES = ['pending', 'running', 'completed', 'canceled', 'failed'] as const;
export const JobStatus = Type.Union(JOB_STATUSES.map((s) => Type.Literal(s)), { $id: 'JobStatus' });
export type JobStatus = (typeof JOB_STATUSES)[number];

export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'Short error kind, e.g. "bad_request", "not_found"' }),
    message: Type.String({ description: 'What went wrong, naming the offending field where there is one' }),
    index: Type.Optional(Type.Integer({ description: 'For /jobs/batch: the index of the rejected item' })),
  },
  { $id: 'Error' },
);
export type ErrorBody = Static<typeof ErrorBody>;

// No control characters, and no lone UTF-16 surrogate (patterns are matched per code point): a
// lone surrogate cannot be stored as UTF-8, and each database would store something else.
const Identifier = (description: string) =>
  Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f\\ud800-\\udfff]+$', description });

const syncEntryOf = <D extends TSchema>(direction: D) => Type.Object(
  {
    bucket: Type.String({ minLength: 1, maxLength: 255 }),
    prefix: Type.String({ maxLength: 1024 }),
    local_path: Type.String({ minLength: 1, maxLength: 4096 }),
    direction,
    pattern: Type.Optional(Type.String({ maxLength: 1024, description: 'Glob, e.g. "checkpoint-*" or "*.bin"' })),
  },
  { additionalProperties: false },
);
export const SyncEntry = syncEntryOf(Type.Union([Type.Literal('download'), Type.Literal('upload')]));
export type SyncEntry = Static<typeof SyncEntry>;

/** The direction each phase moves data in; an entry with the other one could never run. */
export const SYNC_PHASE_DIRECTION = { before: 'download', during: 'upload', after: 'upload' } as const;

const SyncList = (direction: 'download' | 'upload') =>
  Type.Array(syncEntryOf(Type.Literal(direction)), { maxItems: 100, description: `Every entry's direction is "${direction}"` });
export const SyncBlock = Type.Object(
  {
    before: Type.Optional(SyncList(SYNC_PHASE_DIRECTION.before)),
    during: Type.Optional(SyncList(SYNC_PHASE_DIRECTION.during)),
    after: Type.Optional(SyncList(SYNC_PHASE_DIRECTION.after)),
  },
  { additionalProperties: false, description: '`{}` means the application manages its own data' },
);
export type SyncBlock = Static<typeof SyncBlock>;

const legacyFields = {
  input_bucket: Type.Optional(Type.String({ maxLength: 255 })),
  input_prefix: Type.Optional(Type.String({ maxLength: 1024 })),
  checkpoint_bucket: Type.Optional(Type.String({ maxLength: 255 })),
  checkpoint_prefix: Type.Optional(Type.String({ maxLength: 1024 })),
  output_bucket: Type.Optional(Type.String({ maxLength: 255 })),
  output_prefix: Type.Optional(Type.String({ maxLength: 1024 })),
};
export const LEGACY_FIELDS = Object.keys(legacyFields) as (keyof typeof legacyFields)[];

export const JOB_DEFAULTS = { max_failures: 3, heartbeat_interval: 30, compression: false } as const;

export const JobDefinition = Type.Object(
  {
    command: Type.String({ minLength: 1, maxLength: 4096 }),
    arguments: Type.Optional(Type.Array(Type.String({ maxLength: 65536 }), { maxItems: 4096, default: [] })),
    // Names are checked with propertyNames: a record keyed by a pattern alone (patternProperties)
    // would let any other name through, with a value of any type.
    environment: Type.Optional(
      Type.Record(Type.String(), Type.String({ maxLength: 65536 }), {
        propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]{0,255}$' },
        maxProperties: 4096,
        default: {},
        description: 'Environment variables for the job; names must be valid shell identifiers',
      }),
    ),
    container_group_id: Identifier('The container group whose nodes may run this job'),
    webhook: Type.Optional(Type.String({ format: 'uri', maxLength: 2048, pattern: '^https?://' })),
    max_failures: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: JOB_DEFAULTS.max_failures })),
    heartbeat_interval: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 86400, default: JOB_DEFAULTS.heartbeat_interval, description: 'seconds' }),
    ),
    compression: Type.Optional(Type.Boolean({ default: JOB_DEFAULTS.compression })),
    sync: Type.Optional(SyncBlock),
    ...legacyFields,
  },
  { $id: 'JobDefinition', additionalProperties: false },
);
export type JobDefinition = Static<typeof JobDefinition>;

export const JobBatch = Type.Array(Type.Ref(JobDefinition), { minItems: 1, maxItems: 1000, $id: 'JobBatch' });

export const Progress = Type.Object(
  {
    fraction: Type.Number({ minimum: 0, maximum: 1 }),
    message: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false, $id: 'Progress' },
);
export type Progress = Static<typeof Progress>;

const Timestamp = Nullable(Type.String({ format: 'date-time' }));
const NullableString = Nullable(Type.String());

export const Job = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    user_id: Type.String(),
    status: Type.Ref(JobStatus),
    created: Type.String({ format: 'date-time' }),
    started: Timestamp,
    completed: Timestamp,
    canceled: Timestamp,
    failed: Timestamp,
    heartbeat: Timestamp,
    num_failures: Type.Integer(),
    num_heartbeats: Type.Integer(),
    machine_id: NullableString,
    command: Type.String(),
    arguments: Type.Array(Type.String()),
    environment: Type.Record(Type.String(), Type.String()),
    container_group_id: Type.String(),
    webhook: NullableString,
    max_failures: Type.Integer(),
    heartbeat_interval: Type.Integer(),
    lease_timeout: Type.Optional(Type.Number({ description: 'Drover: seconds without a heartbeat after which the lease lapses and another machine may take the job (a Kelpie coordinator does not send it)' })),
    compression: Type.Boolean(),
    sync: Type.Union([SyncBlock, Type.Null()]),
    input_bucket: NullableString,
    input_prefix: NullableString,
    checkpoint_bucket: NullableString,
    checkpoint_prefix: NullableString,
    output_bucket: NullableString,
    output_prefix: NullableString,
    attempt: Type.Integer({ description: 'Drover: lease number, +1 on every claim' }),
    progress: Type.Union([Type.Ref(Progress), Type.Null()], { description: 'Drover: last progress from a heartbeat' }),
  },
  { $id: 'Job' },
);
export type Job = Static<typeof Job>;

export const JobList = Type.Object(
  {
    _count: Type.Integer({ description: 'Number of jobs in this page' }),
    jobs: Type.Array(Type.Ref(Job)),
  },
  { $id: 'JobList' },
);
export type JobList = Static<typeof JobList>;

export const JobArray = Type.Array(Type.Ref(Job), { $id: 'JobArray' });

export const ListJobsQuery = Type.Object(
  {
    status: Type.Optional(Type.Ref(JobStatus)),
    container_group_id: Type.Optional(Identifier('Only jobs of this container group')),
    page_size: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    page: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 }),
    asc: Type.Boolean({ default: false, description: 'Sort by created, ascending' }),
  },
  { additionalProperties: false },
);
export type ListJobsQuery = Static<typeof ListJobsQuery>;

export const MAX_WAIT_SECONDS = 60;
export const WorkQuery = Type.Object(
  {
    machine_id: Identifier('The asking node (SALAD_MACHINE_ID)'),
    container_group_id: Identifier('The asking node\'s container group (SALAD_CONTAINER_GROUP_ID)'),
    wait: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: MAX_WAIT_SECONDS,
        description: 'Drover: long-poll up to this many seconds for a claimable job',
      }),
    ),
  },
  { additionalProperties: false },
);
export type WorkQuery = Static<typeof WorkQuery>;

/** Who reports: every body a node sends about its job starts with these. */
const reportingMachine = {
  machine_id: Identifier('The reporting node'),
  container_group_id: Identifier('The reporting node\'s container group'),
};

export const MachineBody = Type.Object(reportingMachine, { $id: 'MachineBody' });
export type MachineBody = Static<typeof MachineBody>;

export const HeartbeatBody = Type.Object(
  {
    ...reportingMachine,
    progress: Type.Optional(Type.Ref(Progress)),
  },
  { $id: 'HeartbeatBody' },
);
export type HeartbeatBody = Static<typeof HeartbeatBody>;

/** Longest failure reason kept; a worker shortens longer ones. */
export const FAILURE_REASON_MAX = 2000;

export const FailedBody = Type.Object(
  {
    ...reportingMachine,
    reason: Type.Optional(
      Type.String({
        maxLength: FAILURE_REASON_MAX,
        // Newlines and tabs are fine; other control characters and lone surrogates are not storable text.
        pattern: '^[^\\u0000-\\u0008\\u000b-\\u001f\\ud800-\\udfff]*$',
        description: 'Drover: why the attempt failed (shown in the job\'s events), e.g. "exited with code 1"',
      }),
    ),
  },
  { $id: 'FailedBody' },
);
export type FailedBody = Static<typeof FailedBody>;

export const JobIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
export const ContainerGroupParams = Type.Object({ container_group_id: Identifier('Container group') });
export const UserIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

export const StatusResponse = Type.Object({ status: Type.Ref(JobStatus) }, { $id: 'StatusResponse' });
export const MessageResponse = Type.Object({ message: Type.String() }, { $id: 'MessageResponse' });
export const CountResponse = Type.Object({ count: Type.Integer() }, { $id: 'CountResponse' });

export const JOB_EVENT_TYPES = [
  'created',
  'claimed',
  'lease_expired',
  'released',
  'failed_attempt',
  'failed',
  'completed',
  'canceled',
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

export const JobEvent = Type.Object(
  {
    id: Type.Integer(),
    job_id: Type.String({ format: 'uuid' }),
    at: Type.String({ format: 'date-time' }),
    type: Type.Union(JOB_EVENT_TYPES.map((t) => Type.Literal(t))),
    machine_id: NullableString,
    attempt: Type.Integer(),
    reason: Type.Optional(Type.String({ description: 'Drover: failed_attempt and failed events, why the worker says the attempt failed' })),
  },
  { $id: 'JobEvent' },
);
export type JobEvent = Static<typeof JobEvent>;
export const JobEventList = Type.Object({ events: Type.Array(Type.Ref(JobEvent)) }, { $id: 'JobEventList' });
export type JobEventList = Static<typeof JobEventList>;

export const User = Type.Object(
  { id: Type.String({ format: 'uuid' }), username: Type.String(), created: Type.String({ format: 'date-time' }) },
  { $id: 'User' },
);
export type User = Static<typeof User>;

export const Me = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    username: Type.String(),
    created: Type.String({ format: 'date-time' }),
    admin: Type.Boolean(),
    webhook_secret: Type.String({ description: 'Drover: key of the HMAC-SHA256 signature on your webhooks' }),
  },
  { $id: 'Me' },
);
export type Me = Static<typeof Me>;

export const CreateUserBody = Type.Object(
  { username: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }) },
  { additionalProperties: false },
);
export type CreateUserBody = Static<typeof CreateUserBody>;

export const TokenResponse = Type.Object({ token: Type.String() }, { $id: 'TokenResponse' });
export type TokenResponse = Static<typeof TokenResponse>;

export const HealthResponse = Type.Object(
  { status: Type.Literal('ok'), store: Type.String() },
  { $id: 'HealthResponse' },
);

/** Every schema with an $id, to register once with the server (and emit as OpenAPI components). */
export const SHARED_SCHEMAS: TSchema[] = [
  JobStatus,
  ErrorBody,
  Progress,
  JobDefinition,
  Job,
  JobList,
  JobArray,
  JobBatch,
  MachineBody,
  FailedBody,
  HeartbeatBody,
  StatusResponse,
  MessageResponse,
  CountResponse,
  JobEvent,
  JobEventList,
  User,
  Me,
  TokenResponse,
  HealthResponse,
];
