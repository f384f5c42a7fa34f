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
    local_path: Type.String({ minLength: 1, maxLength: 4096, description: 'Relative to the worker\'s data root, or absolute inside it; no ".." segments (see parentSegmentPaths)' }),
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

/** `..` as a whole segment of a path, with either slash. */
const PARENT_SEGMENT = /(^|[/\\])\.\.([/\\]|$)/;
export const PARENT_SEGMENT_MESSAGE = 'must not contain ".." segments (a local_path stays inside the worker\'s data root)';

/**
 * Where a job definition's sync entries name a local_path with a `..` segment, as JSON-pointer-like
 * paths (`sync/before/0/local_path`). Refused at submission, by the coordinator and the CLI alike:
 * the worker confines every path (absolute ones too) to its data root, but saying so at once beats
 * a job that fails on a node. Not a schema `pattern`: job documents stored before the rule carry
 * such paths, and a pattern on the shared schema would make them unreadable.
 */
export function parentSegmentPaths(def: { sync?: { before?: readonly { local_path: string }[]; during?: readonly { local_path: string }[]; after?: readonly { local_path: string }[] } | null }): string[] {
  const out: string[] = [];
  for (const phase of ['before', 'during', 'after'] as const) {
    for (const [i, e] of (def.sync?.[phase] ?? []).entries()) if (PARENT_SEGMENT.test(e.local_path)) out.push(`sync/${phase}/${i}/local_path`);
  }
  return out;
}

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
    notice: Type.Optional(Type.String({ description: 'Drover (on a submission and GET /jobs/:id of a pending job): why it may wait, e.g. no worker has polled its container group lately' })),
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

export const CompletedBody = Type.Object(
  {
    ...reportingMachine,
    progress: Type.Optional(Type.Ref(Progress, { description: "Drover: the app's last progress, so a finished job shows where it ended" })),
  },
  { $id: 'CompletedBody' },
);
export type CompletedBody = Static<typeof CompletedBody>;

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

/**
 * The body of a webhook (Kelpie's): sent for running, completed, failed and canceled. Not an
 * OpenAPI component (no route carries it); its fields, in this order, are what every store writes.
 */
export const WebhookBody = Type.Object(
  {
    status: Type.Union([Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed'), Type.Literal('canceled')]),
    job_id: Type.String({ format: 'uuid' }),
    machine_id: NullableString,
    container_group_id: Type.String(),
  },
  { $id: 'WebhookBody' },
);
export type WebhookBody = Static<typeof WebhookBody>;
export type WebhookEvent = WebhookBody['status'];

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

/** POST /users/:id/token: Kelpie's clients send {org_name, project_name}; accepted and not needed here. */
export const CreateTokenBody = Type.Optional(
  Type.Object({ org_name: Type.Optional(Type.String()), project_name: Type.Optional(Type.String()) }),
);
export type CreateTokenBody = Static<typeof CreateTokenBody>;

export const TokenResponse = Type.Object(
  { token: Type.String(), id: Type.Optional(Type.String({ description: "Drover: the token's id (the part after drv_), to list or revoke it by" })) },
  { $id: 'TokenResponse' },
);
export type TokenResponse = Static<typeof TokenResponse>;

/** A token's id: the 16 hex digits after `drv_` in the token itself. */
export const TokenIdParams = Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{16}$', description: 'The 16 hex digits after drv_ in the token' }) });

export const TokenInfo = Type.Object(
  { id: Type.String(), created: Type.String({ format: 'date-time' }) },
  { $id: 'TokenInfo', description: 'A token as listed: its id and when it was issued (never its secret)' },
);
export type TokenInfo = Static<typeof TokenInfo>;
export const TokenList = Type.Object({ tokens: Type.Array(Type.Ref(TokenInfo)) }, { $id: 'TokenList' });
export type TokenList = Static<typeof TokenList>;

export const HealthResponse = Type.Object(
  { status: Type.Literal('ok'), store: Type.String() },
  { $id: 'HealthResponse' },
);

// ---- job logs (Drover): a job's stdout and stderr, shipped by the worker in batches, kept per attempt ----

export const LOG_STREAMS = ['stdout', 'stderr'] as const;
export type LogStream = (typeof LOG_STREAMS)[number];
/** Longest line kept, in characters; the worker cuts longer ones (ending them with "…"). */
export const LOG_LINE_MAX = 8192;
/** Most lines in one batch. */
export const LOG_BATCH_MAX_LINES = 2000;
/** The coordinator keeps this many bytes of output per attempt by default (--log-cap-mib); later lines are dropped and the log says so. */
export const DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024;

const LogText = Type.String({
  maxLength: LOG_LINE_MAX,
  // Tabs are fine; other control characters and lone surrogates are not storable text.
  pattern: '^[^\\u0000-\\u0008\\u000a-\\u001f\\ud800-\\udfff]*$',
});
const LogStreamSchema = Type.Union(LOG_STREAMS.map((s) => Type.Literal(s)));

/** One line of a job's output as the worker sends it. `seq` counts the attempt's lines from 0. */
export const LogLineIn = Type.Object(
  {
    seq: Type.Integer({ minimum: 0 }),
    at: Type.String({ format: 'date-time' }),
    stream: LogStreamSchema,
    text: LogText,
  },
  { additionalProperties: false },
);
export type LogLineIn = Static<typeof LogLineIn>;

export const LogBatch = Type.Object(
  {
    ...reportingMachine,
    attempt: Type.Integer({ minimum: 1, description: 'The attempt (lease number) whose output this is' }),
    lines: Type.Array(LogLineIn, { maxItems: LOG_BATCH_MAX_LINES }),
    dropped: Type.Optional(Type.Integer({ minimum: 0, description: 'Lines the worker had to drop since its last batch (its buffer was full)' })),
  },
  { $id: 'LogBatch', additionalProperties: false },
);
export type LogBatch = Static<typeof LogBatch>;

const logCapFields = {
  cap_bytes: Type.Integer({ description: 'Bytes of output kept per attempt; later lines are dropped' }),
  stored_bytes: Type.Integer({ description: 'Bytes of this attempt\'s output kept so far' }),
  truncated: Type.Boolean({ description: 'The attempt reached cap_bytes: lines after it were dropped' }),
};

export const LogBatchResponse = Type.Object(
  {
    accepted: Type.Integer({ description: 'Lines stored from this batch (a line already stored, from a retried batch, is not stored twice)' }),
    ...logCapFields,
  },
  { $id: 'LogBatchResponse' },
);
export type LogBatchResponse = Static<typeof LogBatchResponse>;

export const LogLine = Type.Object(
  { seq: Type.Integer(), at: Type.String({ format: 'date-time' }), stream: LogStreamSchema, text: Type.String() },
  { $id: 'LogLine' },
);
export type LogLine = Static<typeof LogLine>;

export const MAX_LOG_WAIT_SECONDS = 30;
export const LogQuery = Type.Object(
  {
    attempt: Type.Optional(Type.Integer({ minimum: 1, description: 'Which attempt (default: the newest one with output, else the current one)' })),
    after: Type.Integer({ minimum: -1, default: -1, description: 'Lines after this seq (the previous page\'s `next`); -1: from the start' }),
    limit: Type.Integer({ minimum: 1, maximum: 5000, default: 1000 }),
    tail: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000, description: 'The last N lines instead (ignores after)' })),
    wait: Type.Optional(
      Type.Number({ minimum: 0, maximum: MAX_LOG_WAIT_SECONDS, description: 'Follow: when there is no line after `after`, wait up to this many seconds for one' }),
    ),
  },
  { additionalProperties: false },
);
export type LogQuery = Static<typeof LogQuery>;

export const LogPage = Type.Object(
  {
    job_id: Type.String({ format: 'uuid' }),
    attempt: Type.Integer({ description: 'The attempt these lines are from (0: the job has not run yet)' }),
    attempts: Type.Array(Type.Integer(), { description: 'Every attempt with output' }),
    machine_id: NullableString,
    lines: Type.Array(Type.Ref(LogLine)),
    next: Type.Integer({ description: 'Pass as `after` for the following lines' }),
    more: Type.Boolean({ description: 'More lines are stored after these (ask again at once)' }),
    done: Type.Boolean({ description: 'The attempt is over (the job finished or moved on): no more lines will come' }),
    dropped_lines: Type.Integer({ description: 'Lines not kept: over the cap, or dropped by the worker when its buffer was full' }),
    ...logCapFields,
  },
  { $id: 'LogPage' },
);
export type LogPage = Static<typeof LogPage>;

// ---- the dashboard's read models (Drover) ----

const statusCounts = Type.Object(Object.fromEntries(JOB_STATUSES.map((s) => [s, Type.Integer()])) as Record<JobStatus, TInteger>);

export const ContainerGroupSummary = Type.Object(
  {
    container_group_id: Type.String(),
    jobs: statusCounts,
    queue_depth: Type.Integer({ description: 'Jobs a machine could claim now: pending, or running with no live lease' }),
    running_machines: Type.Integer({ description: 'Machines holding a live lease on a job of this group' }),
    banned_machines: Type.Integer({ description: 'Machines banned from at least one job of this group (they failed it)' }),
    oldest_heartbeat_age_s: Type.Union([Type.Number(), Type.Null()], { description: 'Seconds since the stalest heartbeat among running jobs' }),
  },
  { $id: 'ContainerGroupSummary' },
);
export type ContainerGroupSummary = Static<typeof ContainerGroupSummary>;
export const ContainerGroupList = Type.Object({ groups: Type.Array(Type.Ref(ContainerGroupSummary)) }, { $id: 'ContainerGroupList' });
export type ContainerGroupList = Static<typeof ContainerGroupList>;

export const GroupMachine = Type.Object(
  {
    machine_id: Type.String(),
    job_id: Type.String({ format: 'uuid' }),
    attempt: Type.Integer(),
    heartbeat: Timestamp,
    lease_live: Type.Boolean(),
  },
  { $id: 'GroupMachine' },
);
export const BannedMachine = Type.Object(
  { machine_id: Type.String(), jobs: Type.Integer({ description: 'Jobs of this group it failed' }), last: Type.String({ format: 'date-time' }) },
  { $id: 'BannedMachine' },
);
export const ContainerGroupDetail = Type.Object(
  {
    summary: Type.Ref(ContainerGroupSummary),
    machines: Type.Array(Type.Ref(GroupMachine), { description: 'Machines holding its running jobs (at most 200)' }),
    banned: Type.Array(Type.Ref(BannedMachine), { description: 'Machines banned from its jobs, most jobs first (at most 200)' }),
  },
  { $id: 'ContainerGroupDetail' },
);
export type ContainerGroupDetail = Static<typeof ContainerGroupDetail>;

export const JobHistoryQuery = Type.Object(
  {
    hours: Type.Number({ minimum: 0.1, maximum: 24 * 90, default: 24 }),
    buckets: Type.Integer({ minimum: 2, maximum: 500, default: 48 }),
    container_group_id: Type.Optional(Identifier('Only jobs of this container group')),
  },
  { additionalProperties: false },
);
export type JobHistoryQuery = Static<typeof JobHistoryQuery>;
export const JobHistory = Type.Object(
  {
    times: Type.Array(Type.String({ format: 'date-time' }), { description: 'The end of each bucket' }),
    series: Type.Object(Object.fromEntries(JOB_STATUSES.map((s) => [s, Type.Array(Type.Integer())])) as Record<JobStatus, ReturnType<typeof Type.Array<TInteger>>>, {
      description: 'Jobs in each status at the end of each bucket (purged jobs are gone from every bucket)',
    }),
  },
  { $id: 'JobHistory' },
);
export type JobHistory = Static<typeof JobHistory>;

export const HANDOVER_CAUSES = ['lease_expired', 'released', 'failed_attempt'] as const;
export const Handover = Type.Object(
  {
    job_id: Type.String({ format: 'uuid' }),
    container_group_id: Type.String(),
    attempt: Type.Integer({ description: 'The attempt that took the job over' }),
    at: Type.String({ format: 'date-time' }),
    cause: Type.Union(HANDOVER_CAUSES.map((c) => Type.Literal(c))),
    from_machine: NullableString,
    to_machine: Type.String(),
    progress_before: Type.Union([Type.Number(), Type.Null()], { description: 'Last progress the previous attempt reported' }),
    progress_resumed: Type.Union([Type.Number(), Type.Null()], { description: 'First progress the new attempt reported (null until it does)' }),
    redone: Type.Union([Type.Number(), Type.Null()], { description: 'progress_before − progress_resumed (≥ 0): the fraction of the job done again' }),
  },
  { $id: 'Handover' },
);
export type Handover = Static<typeof Handover>;
export const HandoverList = Type.Object({ handovers: Type.Array(Type.Ref(Handover)) }, { $id: 'HandoverList' });
export type HandoverList = Static<typeof HandoverList>;
export const HandoverQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    container_group_id: Type.Optional(Identifier('Only jobs of this container group')),
    job_id: Type.Optional(Type.String({ format: 'uuid' })),
  },
  { additionalProperties: false },
);
export type HandoverQuery = Static<typeof HandoverQuery>;
// Autoscaling (Kelpie's /scaling-rules, with Drover's additions). Kelpie's four fields keep its
// names, bounds and defaults; its rule document's org_name / project_name / container_group_name
// (which Kelpie took from the key's organization) are where a rule says which SaladCloud group it
// drives.
export const SCALING_PROVIDERS = ['saladcloud', 'local', 'none'] as const;
export type ScalingProviderName = (typeof SCALING_PROVIDERS)[number];
export const ScalingProvider = Type.Union(SCALING_PROVIDERS.map((p) => Type.Literal(p)), {
  $id: 'ScalingProvider',
  description:
    'Drover: what the rule drives. `saladcloud`: a SaladCloud container group (the coordinator holds the API key); ' +
    '`local`: `drover worker` processes of `drover up --autoscale`; `none`: decisions are recorded, nothing is changed',
});

export const SCALING_DEFAULTS = {
  min_replicas: 0,
  max_replicas: 100,
  idle_threshold_seconds: 300,
  jobs_per_replica: 1,
  cooldown_seconds: 0,
  enabled: true,
} as const;
/** SaladCloud's bound on a container group's replicas (ContainerGroupReplicas). */
export const MAX_REPLICAS = 500;

/** SaladCloud's organization, project and container group names: `^[a-z][a-z0-9-]{0,61}[a-z0-9]$`. */
const SaladName = (description: string) =>
  Type.String({ minLength: 2, maxLength: 63, pattern: '^[a-z][a-z0-9-]{0,61}[a-z0-9]$', description });

/**
 * The settings a rule body may carry. `withDefaults` names the defaults in the descriptions (of a
 * creation; a PATCH changes only what it names). They are not schema `default`s: filled in by the
 * validator, they could not be told from values the client gave, which error messages name.
 */
function scalingSettings(withDefaults: boolean) {
  const about = (text: string, v: number | boolean) => ({ description: withDefaults ? `${text} (default ${v})` : text });
  return {
    min_replicas: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_REPLICAS, ...about('Fewest replicas, also with no work', SCALING_DEFAULTS.min_replicas) })),
    max_replicas: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_REPLICAS, ...about('Most replicas', SCALING_DEFAULTS.max_replicas) })),
    idle_threshold_seconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 3600,
        ...about('A job that ended keeps its replica this long, for the jobs that follow it', SCALING_DEFAULTS.idle_threshold_seconds),
      }),
    ),
    provider: Type.Optional(
      Type.Ref(ScalingProvider, {
        description: 'Default: saladcloud if the coordinator has a SaladCloud key, else local under `drover up --autoscale`, else none',
      }),
    ),
    org_name: Type.Optional(SaladName("SaladCloud organization (saladcloud; default: the coordinator's --salad-organization)")),
    project_name: Type.Optional(SaladName("SaladCloud project (saladcloud; default: the coordinator's --salad-project)")),
    container_group_name: Type.Optional(
      SaladName("SaladCloud container group name (saladcloud); omitted, the group is found by container_group_id in the project's list"),
    ),
    jobs_per_replica: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000,
        ...about('Drover: jobs one replica is meant to work through; replicas = ceil(jobs / jobs_per_replica)', SCALING_DEFAULTS.jobs_per_replica),
      }),
    ),
    cooldown_seconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 3600,
        ...about('Drover: no scale-down sooner than this after the last change (scale-ups never wait)', SCALING_DEFAULTS.cooldown_seconds),
      }),
    ),
    enabled: Type.Optional(Type.Boolean(about('Drover: false pauses the rule; true re-enables one the autoscaler disabled', SCALING_DEFAULTS.enabled))),
  };
}

export const CreateScalingRuleBody = Type.Object(
  {
    container_group_id: Identifier("The container group whose jobs drive the rule (SaladCloud: the group's id)"),
    ...scalingSettings(true),
  },
  { $id: 'CreateScalingRuleBody', additionalProperties: false },
);
export type CreateScalingRuleBody = Static<typeof CreateScalingRuleBody>;

export const PatchScalingRuleBody = Type.Object(
  {
    container_group_id: Type.Optional(Identifier("If given, must be the path's: a rule cannot move to another group")),
    ...scalingSettings(false),
  },
  { $id: 'PatchScalingRuleBody', additionalProperties: false },
);
export type PatchScalingRuleBody = Static<typeof PatchScalingRuleBody>;

export const ScalingRule = Type.Object(
  {
    container_group_id: Type.String(),
    min_replicas: Type.Integer(),
    max_replicas: Type.Integer(),
    idle_threshold_seconds: Type.Integer(),
    user_id: Type.String(),
    created: Type.String({ format: 'date-time' }),
    updated: Type.String({ format: 'date-time' }),
    org_name: NullableString,
    project_name: NullableString,
    container_group_name: Nullable(Type.String({ description: 'null until the autoscaler has found it by id' })),
    provider: Type.Ref(ScalingProvider),
    jobs_per_replica: Type.Integer(),
    cooldown_seconds: Type.Integer(),
    enabled: Type.Boolean(),
    disabled_reason: Nullable(Type.String({ description: 'Drover: why the autoscaler disabled the rule (e.g. the group answers 404)' })),
    replicas: Nullable(Type.Integer({ description: 'Drover: replicas the provider reported or was set to at the last decision' })),
    provider_status: Nullable(Type.String({ description: 'Drover: the group\'s status at the last decision (SaladCloud current_state.status)' })),
    evaluated: Timestamp,
  },
  { $id: 'ScalingRule' },
);
export type ScalingRule = Static<typeof ScalingRule>;

export const ScalingRuleList = Type.Object(
  { _count: Type.Integer({ description: 'Number of rules' }), rules: Type.Array(Type.Ref(ScalingRule)) },
  { $id: 'ScalingRuleList' },
);
export type ScalingRuleList = Static<typeof ScalingRuleList>;

export const SCALING_ACTIONS = ['start', 'stop', 'resize', 'none', 'disable'] as const;
export type ScalingAction = (typeof SCALING_ACTIONS)[number];
export const SCALING_OUTCOMES = ['applied', 'unchanged', 'error', 'interrupted', 'pending'] as const;
export type ScalingOutcome = (typeof SCALING_OUTCOMES)[number];
export const SCALING_TRIGGERS = ['work', 'timer', 'rule', 'start'] as const;
export type ScalingTrigger = (typeof SCALING_TRIGGERS)[number];

export const ScalingDecision = Type.Object(
  {
    id: Type.Integer(),
    container_group_id: Type.String(),
    at: Type.String({ format: 'date-time' }),
    trigger: Type.Union(SCALING_TRIGGERS.map((t) => Type.Literal(t)), {
      description: 'work: jobs were queued or handed back; timer: the idle re-evaluation; rule: the rule changed; start: a coordinator started',
    }),
    provider: Type.Ref(ScalingProvider),
    pending: Type.Integer({ description: 'Pending jobs of the group' }),
    running: Type.Integer({ description: 'Running jobs of the group' }),
    recently_ended: Type.Integer({ description: 'Jobs that ended within idle_threshold_seconds' }),
    desired: Type.Integer({ description: 'clamp(ceil((pending + running + recently_ended) / jobs_per_replica), min, max)' }),
    from: Nullable(Type.Integer({ description: 'Replicas before (0 for a stopped group; null if unknown)' })),
    to: Nullable(Type.Integer({ description: 'Replicas after (null if unknown)' })),
    action: Type.Union(SCALING_ACTIONS.map((a) => Type.Literal(a))),
    outcome: Type.Union(SCALING_OUTCOMES.map((o) => Type.Literal(o)), {
      description: 'applied; unchanged (nothing to do); error; pending (in progress); interrupted (its coordinator stopped mid-decision)',
    }),
    reason: Type.String({ description: 'Why, in one sentence' }),
    error: NullableString,
    coordinator: Type.String({ description: 'The coordinator process that decided (host:pid)' }),
  },
  { $id: 'ScalingDecision' },
);
export type ScalingDecision = Static<typeof ScalingDecision>;

export const ScalingDecisionList = Type.Object(
  { _count: Type.Integer(), decisions: Type.Array(Type.Ref(ScalingDecision), { description: 'Newest first' }) },
  { $id: 'ScalingDecisionList' },
);
export type ScalingDecisionList = Static<typeof ScalingDecisionList>;

export const ScalingDecisionsQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
    before: Type.Optional(Type.Integer({ minimum: 1, description: 'Only decisions with a smaller id (paging)' })),
  },
  { additionalProperties: false },
);
export type ScalingDecisionsQuery = Static<typeof ScalingDecisionsQuery>;

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
  CompletedBody,
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
  TokenInfo,
  TokenList,
  HealthResponse,
  LogBatch,
  LogBatchResponse,
  LogLine,
  LogPage,
  ContainerGroupSummary,
  ContainerGroupList,
  GroupMachine,
  BannedMachine,
  ContainerGroupDetail,
  JobHistory,
  Handover,
  HandoverList,
  ScalingProvider,
  CreateScalingRuleBody,
  PatchScalingRuleBody,
  ScalingRule,
  ScalingRuleList,
  ScalingDecision,
  ScalingDecisionList,
];
