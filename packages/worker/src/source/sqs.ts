// An AWS SQS queue as the worker's job source (`drover worker --queue`; the seeds' demo app 2), with
// what SQS lacks for long jobs made up here (docs/sqs.md has the whole protocol and its guarantees):
//
// - Lease = visibility. A message is received hidden for a few seconds, then hidden for
//   2 × heartbeat_interval, and every heartbeat hides it for that long again
//   (ChangeMessageVisibility). A node that dies lets its job show again within that time, not after
//   a visibility timeout of hours. A receipt handle that no longer works means another node received
//   the message: the lease is lost, and the run is dropped (the fence refuses its writes).
// - The 12-hour cap. SQS never hides a message for more than 12 hours from its receive. Before that,
//   the job moves to a copy of its message without stopping: the holder sends the copy (marked as a
//   hand-on from it), a node that receives the copy passes its receipt handle back through the
//   bucket (or the holder receives the copy itself), the record is pointed at the copy, and only
//   then is the old message deleted.
// - Failures and status. SQS's ApproximateReceiveCount counts every lapse, so real failures are
//   counted in the job's record in the bucket (and carried as attributes by every message the worker
//   sends); at max_failures the message goes to the dead-letter queue with the reason. The record is
//   also what `drover status --queue` shows. A machine that failed a job is banned from it there.
// - Cancel. SQS cannot reach one message: `drover jobs cancel --queue` leaves a request beside the
//   record, which the holder reads after a heartbeat and a receiver reads before it claims.
import { performance } from 'node:perf_hooks';
import { FAILURE_REASON_MAX, JOB_DEFAULTS, SQS_ATTRIBUTES, defaultSqsStatusPrefix, type Job, type JobDefinition, type Progress, type SqsJobRecord } from '@drover/protocol';
import { checkJobDefinition } from '@drover/protocol/job-check';
import { storableReason } from '@drover/sdk';
import { errorMessage, type ObjectStore } from '@drover/storage';
import type { Logger } from 'pino';
import { WorkerConfigError } from '../config.js';
import { AccessDeniedError, ReportRefusedError, type ClaimOptions, type JobLease, type JobSource } from './job-source.js';
import { queueMissing, sqsAccessDenied, SqsQueue, type Attributes, type Gone, type Received, type SqsConnection } from './sqs-queue.js';
import { SqsSettingError } from './sqs-spec.js';
import { BadRecordError, SqsRecords } from './sqs-records.js';

/** The lease is this many heartbeat intervals, as the coordinator's default lease factor. */
export const SQS_LEASE_FACTOR = 2;
/** How long a message stays hidden between its receive and the lease being set from its job's heartbeat_interval. */
const RECEIVE_VISIBILITY_S = 10;
/** SQS's own cap on a message's visibility, counted from its receive. */
export const SQS_VISIBILITY_CAP_S = 12 * 3600;
/** Replaced message ids a record keeps (a receiver deletes those messages on sight). */
const REPLACED_KEPT = 20;
/** Machines a record keeps as banned from the job (those that failed it, newest last). */
const BANNED_KEPT = 50;
/**
 * How long a node that failed a job hides the job's message when it receives it again: long enough
 * not to spin on it alone, short enough that another node's receive gets it at once.
 */
const BANNED_VISIBILITY_S = 2;

export interface SqsSourceSettings {
  /** The queue's URL, or sqs://<name>. */
  queue: string;
  /** Where jobs that failed max_failures times (and malformed messages) go; the queue's RedrivePolicy target when unset. */
  deadLetterQueue?: string | undefined;
  statusBucket: string;
  /** Default `.drover-sqs/<queue name>/`. */
  statusPrefix?: string | undefined;
  /** SQS's 12 hours; shorter only to test the hand-on. */
  visibilityCapS: number;
  connection: SqsConnection;
}

const iso = (ms = Date.now()) => new Date(ms).toISOString();
const count = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : 0);

/** A message this receiver holds: its handle, and when its visibility cap started counting. */
interface Held {
  messageId: string;
  receiptHandle: string;
  /** performance.now() at (or before) the receive. */
  receivedAt: number;
}

/** What a receiver does with a message, given the job's record. */
type Decision =
  | { act: 'claim' }
  | { act: 'relay' }
  | { act: 'finish-dead-letter' }
  | { act: 'delete'; why: string }
  | { act: 'leave'; why: string };

/** A message body's job definition with the defaults the lease depends on filled in. */
type ParsedDefinition = JobDefinition & { max_failures: number; heartbeat_interval: number };

/** The job document a JobRun works from, built from the message's definition and the record. */
function jobDocument(id: string, def: ParsedDefinition, r: SqsJobRecord): Job {
  return {
    id,
    user_id: '',
    status: 'running',
    created: r.created,
    started: r.started,
    completed: null,
    canceled: null,
    failed: null,
    heartbeat: r.heartbeat,
    num_failures: r.num_failures,
    num_heartbeats: r.num_heartbeats,
    machine_id: r.machine_id,
    command: def.command,
    arguments: def.arguments ?? [],
    environment: def.environment ?? {},
    container_group_id: def.container_group_id,
    webhook: def.webhook ?? null,
    max_failures: def.max_failures,
    heartbeat_interval: def.heartbeat_interval,
    lease_timeout: r.lease_timeout,
    compression: def.compression ?? JOB_DEFAULTS.compression,
    sync: def.sync ?? null,
    input_bucket: def.input_bucket ?? null,
    input_prefix: def.input_prefix ?? null,
    checkpoint_bucket: def.checkpoint_bucket ?? null,
    checkpoint_prefix: def.checkpoint_prefix ?? null,
    output_bucket: def.output_bucket ?? null,
    output_prefix: def.output_prefix ?? null,
    attempt: r.attempt,
    progress: r.progress,
  };
}

/** The body as a job definition, or why it is not one. */
function parseBody(body: string): { def: JobDefinition } | { problem: string } {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch (err) {
    return { problem: `the message body is not JSON (${(err as Error).message}): a Drover job definition was expected` };
  }
  const p = checkJobDefinition(v);
  if (p) return { problem: `the message body is not a Drover job definition: ${p.field === '' ? 'the job' : `field ${p.field}`} ${p.message}` };
  return { def: v as JobDefinition };
}

export class SqsSource implements JobSource {
  readonly description: string;
  readonly capMs: number;
  /** Jobs this machine has left alone since it failed them (said once at info). */
  private readonly declined = new Set<string>();

  private constructor(
    readonly queue: SqsQueue,
    readonly deadLetters: SqsQueue,
    readonly records: SqsRecords,
    readonly machineId: string,
    readonly log: Logger,
    capS: number,
    private readonly longPollS: number,
  ) {
    this.description = queue.description;
    this.capMs = capS * 1000;
  }

  /** Finds the queue and its dead-letter queue; a setting that cannot work is a WorkerConfigError. */
  static async open(s: SqsSourceSettings, o: { store: ObjectStore; machineId: string; log: Logger; longPollS: number }): Promise<SqsSource> {
    const onRetry = (r: { operation: string; attempt: number; delayMs: number; error: unknown }) =>
      o.log.warn({ op: r.operation, attempt: r.attempt, delayMs: r.delayMs, err: errorMessage(r.error) }, 'sqs: retrying');
    const conn = { ...s.connection, onRetry };
    const fail = (what: string, err: unknown): never => {
      if (err instanceof SqsSettingError) throw new WorkerConfigError(`${what}: ${err.message}`);
      if (queueMissing(err)) throw new WorkerConfigError(`${what}: the queue does not exist`);
      if (sqsAccessDenied(err)) throw new WorkerConfigError(`${what}: SQS refuses the credentials (${errorMessage(err)}): check AWS_ID / AWS_ACCESS_KEY_ID and the key's permissions`);
      throw new Error(`${what}: ${errorMessage(err)}`, { cause: err });
    };
    let queue: SqsQueue;
    let redrive: Awaited<ReturnType<SqsQueue['redrivePolicy']>>;
    try {
      queue = await SqsQueue.open(s.queue, conn);
      redrive = await queue.redrivePolicy();
    } catch (err) {
      return fail(`the SQS queue (--queue / DROVER_SQS_QUEUE_URL) ${s.queue}`, err);
    }
    const dlqSpec = s.deadLetterQueue ?? redrive?.deadLetterQueueUrl;
    if (dlqSpec === undefined) {
      throw new WorkerConfigError(
        `the SQS queue ${queue.url} has no dead-letter queue: set --sqs-dead-letter-queue (DROVER_SQS_DEAD_LETTER_QUEUE_URL) or give the queue a RedrivePolicy ` +
          '(jobs that fail max_failures times, and messages that are not job definitions, go there)',
      );
    }
    let deadLetters: SqsQueue;
    try {
      deadLetters = await queue.sibling(dlqSpec);
      await deadLetters.counts(); // it exists, and the keys may read it
    } catch (err) {
      return fail(`the dead-letter queue ${dlqSpec}`, err);
    }
    if (redrive && redrive.maxReceiveCount < 100) {
      o.log.warn(
        { maxReceiveCount: redrive.maxReceiveCount },
        "sqs: the queue's RedrivePolicy moves a message to the dead-letter queue after maxReceiveCount receives, and every lapse, release and hand-on " +
          'is a receive: set maxReceiveCount high (e.g. 1000) and let max_failures decide',
      );
    }
    const records = new SqsRecords(o.store, s.statusBucket, s.statusPrefix ?? defaultSqsStatusPrefix(queue.name), {
      retries: s.connection.retries,
      onRetry: (r) => o.log.warn({ op: r.operation, attempt: r.attempt, delayMs: r.delayMs, err: errorMessage(r.error) }, 'sqs: job record: retrying'),
    });
    o.log.info({ queue: queue.url, deadLetterQueue: deadLetters.url, records: records.location, visibilityCapS: s.visibilityCapS }, 'sqs: job source ready');
    return new SqsSource(queue, deadLetters, records, o.machineId, o.log, s.visibilityCapS, o.longPollS);
  }

  get waits(): boolean {
    return this.longPollS > 0;
  }

  /** Receives until a message is a job this node takes, or the wait is over. */
  async claim({ waitS, signal }: ClaimOptions): Promise<JobLease | undefined> {
    const deadline = performance.now() + waitS * 1000;
    for (;;) {
      let got: Received[];
      try {
        got = await this.queue.receive({ max: 1, waitS: Math.ceil((deadline - performance.now()) / 1000), visibilityS: RECEIVE_VISIBILITY_S, signal });
      } catch (err) {
        if (sqsAccessDenied(err)) throw new AccessDeniedError(`SQS refuses the credentials for ${this.queue.url} (${errorMessage(err)}): check AWS_ID / AWS_ACCESS_KEY_ID`);
        throw err;
      }
      for (const m of got) {
        const lease = await this.consider(m).catch(async (err: unknown) => {
          // Not decided: let another receive look at it soon rather than after the lease.
          await this.queue.changeVisibility(m.receiptHandle, 0).catch(() => undefined);
          throw err;
        });
        if (lease) return lease;
      }
      if (signal.aborted || performance.now() >= deadline) return undefined;
    }
  }

  /** What to do with one received message: claim it, relay it, clean it up or leave it. */
  private async consider(m: Received): Promise<JobLease | undefined> {
    const log = this.log.child({ message: m.messageId });
    const jobId = m.attributes[SQS_ATTRIBUTES.jobId] ?? m.messageId;
    const parsed = parseBody(m.body);
    if ('problem' in parsed) {
      const rec = await this.records.get(jobId).catch(() => undefined);
      if (rec?.status === 'dead-lettered' && rec.dead_letter_message_id) {
        log.info({ job: jobId }, 'sqs: deleting a message of a job that needs it no more');
        await this.queue.delete(m.receiptHandle); // a second delivery of one already moved
        return undefined;
      }
      log.warn({ job: jobId, reason: parsed.problem }, 'sqs: not a job: moving the message to the dead-letter queue');
      await this.deadLetter(this.malformedRecord(jobId, m), m.body, m.receiptHandle, parsed.problem);
      return undefined;
    }
    const def: ParsedDefinition = { ...parsed.def, max_failures: parsed.def.max_failures ?? JOB_DEFAULTS.max_failures, heartbeat_interval: parsed.def.heartbeat_interval ?? JOB_DEFAULTS.heartbeat_interval };
    const leaseS = SQS_LEASE_FACTOR * def.heartbeat_interval;
    const held: Held = { messageId: m.messageId, receiptHandle: m.receiptHandle, receivedAt: m.receivedAt };
    const provedAt = performance.now();
    const hidden = await this.extend(held, leaseS);
    if (hidden !== 'ok') {
      log.debug({ job: jobId, gone: hidden }, 'sqs: the message went to another receiver before the lease was set');
      return undefined;
    }
    let rec: SqsJobRecord | undefined;
    try {
      rec = await this.records.get(jobId);
    } catch (err) {
      if (!(err instanceof BadRecordError)) throw err;
      log.warn({ job: jobId, err: err.message }, 'sqs: the job record is unreadable: it is written anew');
    }
    const d = this.decide(m, rec);
    switch (d.act) {
      case 'delete':
        log.info({ job: jobId, why: d.why }, 'sqs: deleting a message of a job that needs it no more');
        await this.queue.delete(m.receiptHandle);
        return undefined;
      case 'leave':
        log.warn({ job: jobId, why: d.why }, 'sqs: leaving a message this node cannot place');
        return undefined;
      case 'relay':
        await this.records.putRelay(jobId, { message_id: m.messageId, receipt_handle: m.receiptHandle, received_at: m.receivedAtWall, relayed_by: this.machineId });
        log.info({ job: jobId, holder: m.attributes[SQS_ATTRIBUTES.handOnFrom] }, 'sqs: a hand-on copy of a running job: its receipt handle is relayed to the node running it');
        return undefined;
      case 'finish-dead-letter': {
        const r = rec as SqsJobRecord;
        await this.deadLetter(r, m.body, m.receiptHandle, r.last_error ?? `failed ${r.num_failures} times`);
        return undefined;
      }
      case 'claim':
        break;
    }
    const failures = rec?.num_failures ?? count(m.attributes[SQS_ATTRIBUTES.failures]);
    if (failures >= def.max_failures) {
      // The last failure was counted but the node died before moving the message.
      const r = rec ?? this.recordOf(jobId, m, def, leaseS);
      await this.deadLetter({ ...r, num_failures: failures }, m.body, m.receiptHandle, `failed ${failures} times (max_failures ${def.max_failures})${r.last_error ? `; last: ${r.last_error}` : ''}`);
      return undefined;
    }
    if (await this.records.cancelRequested(jobId)) {
      await this.cancel(rec ?? this.recordOf(jobId, m, def, leaseS), m.receiptHandle);
      return undefined;
    }
    if (rec?.banned_machines?.includes(this.machineId)) {
      // This machine failed the job before: as the coordinator bans it, it leaves the job to others.
      if (this.declined.size > 1000) this.declined.clear();
      const first = !this.declined.has(jobId);
      this.declined.add(jobId);
      log[first ? 'info' : 'debug']({ job: jobId }, 'sqs: this machine failed the job before: leaving it to another node');
      await this.queue.changeVisibility(m.receiptHandle, BANNED_VISIBILITY_S);
      return undefined;
    }
    const now = iso();
    const record: SqsJobRecord = {
      ...(rec ?? this.recordOf(jobId, m, def, leaseS)),
      status: 'running',
      message_id: m.messageId,
      attempt: Math.max(rec?.attempt ?? 0, count(m.attributes[SQS_ATTRIBUTES.attempt])) + 1,
      num_failures: failures,
      max_failures: def.max_failures,
      heartbeat_interval: def.heartbeat_interval,
      lease_timeout: leaseS,
      machine_id: this.machineId,
      command: def.command,
      arguments: def.arguments ?? [],
      started: rec?.started ?? now,
      heartbeat: now,
      updated: now,
    };
    await this.records.put(record);
    if (def.webhook !== undefined) log.warn({ job: jobId }, 'sqs: the job names a webhook; jobs from an SQS queue send none (drover status --queue shows their state)');
    return new SqsLease(this, held, m.body, jobDocument(jobId, def, record), record, provedAt, leaseS);
  }

  /**
   * The rules a receiver follows (docs/sqs.md, "Receiving"): a message is claimed only when the
   * record names it (or there is no record yet); at any moment at most one message of a job is
   * claimable, and only one node holds it.
   */
  private decide(m: Received, rec: SqsJobRecord | undefined): Decision {
    const handOnFrom = m.attributes[SQS_ATTRIBUTES.handOnFrom];
    if (!rec) return handOnFrom !== undefined ? { act: 'relay' } : { act: 'claim' };
    if (rec.status === 'completed') return { act: 'delete', why: 'the job is completed' };
    if (rec.status === 'canceled') return { act: 'delete', why: 'the job is canceled' };
    if (rec.status === 'dead-lettered') return rec.dead_letter_message_id ? { act: 'delete', why: 'the job is in the dead-letter queue' } : { act: 'finish-dead-letter' };
    if (rec.message_id === m.messageId) {
      // SQS may deliver one message twice at once: a holder that renews its lease writes its record
      // every heartbeat (half a lease), and one that lapsed has been silent for a whole lease.
      const beatAgo = rec.heartbeat === null ? Infinity : Date.now() - Date.parse(rec.heartbeat);
      if (rec.machine_id !== null && rec.machine_id !== this.machineId && beatAgo < (rec.lease_timeout * 1000) / 2) {
        return { act: 'leave', why: `${rec.machine_id} holds it (heartbeat ${Math.round(beatAgo)} ms ago): a second delivery` };
      }
      return { act: 'claim' };
    }
    if (rec.replaced_message_ids.includes(m.messageId)) return { act: 'delete', why: 'a hand-on replaced this message' };
    if (handOnFrom !== undefined) {
      const previous = m.attributes[SQS_ATTRIBUTES.previous] ?? '';
      const attempt = count(m.attributes[SQS_ATTRIBUTES.attempt]);
      if (previous === rec.message_id && attempt === rec.attempt && handOnFrom === rec.machine_id) return { act: 'relay' };
      if (attempt < rec.attempt || rec.replaced_message_ids.includes(previous) || (previous === rec.message_id && handOnFrom !== rec.machine_id)) {
        return { act: 'delete', why: 'a hand-on copy its sender no longer needs' };
      }
    }
    return { act: 'leave', why: `the job's record names message ${rec.message_id}` };
  }

  private newRecord(jobId: string, m: Received, def: Pick<SqsJobRecord, 'command' | 'arguments' | 'max_failures' | 'heartbeat_interval' | 'lease_timeout'>): SqsJobRecord {
    const now = iso();
    return {
      id: jobId,
      queue_url: this.queue.url,
      status: 'running',
      message_id: m.messageId,
      replaced_message_ids: [],
      attempt: count(m.attributes[SQS_ATTRIBUTES.attempt]),
      num_failures: count(m.attributes[SQS_ATTRIBUTES.failures]),
      ...def,
      machine_id: null,
      created: iso(m.sentAt),
      started: null,
      heartbeat: null,
      num_heartbeats: 0,
      completed: null,
      dead_lettered: null,
      hand_ons: 0,
      progress: null,
      last_error: null,
      dead_letter_queue_url: null,
      dead_letter_message_id: null,
      updated: now,
    };
  }

  private malformedRecord(jobId: string, m: Received): SqsJobRecord {
    return this.newRecord(jobId, m, { command: null, arguments: [], max_failures: 0, heartbeat_interval: 0, lease_timeout: 0 });
  }

  private recordOf(jobId: string, m: Received, def: ParsedDefinition, leaseS: number): SqsJobRecord {
    return this.newRecord(jobId, m, { command: def.command, arguments: def.arguments ?? [], max_failures: def.max_failures, heartbeat_interval: def.heartbeat_interval, lease_timeout: leaseS });
  }

  /** Hides a held message for `seconds` more, never past its visibility cap. */
  async extend(h: Held, seconds: number): Promise<'ok' | Gone> {
    const leftS = Math.floor((h.receivedAt + this.capMs - performance.now()) / 1000);
    if (leftS < 1) return 'visibility-cap';
    return this.queue.changeVisibility(h.receiptHandle, Math.min(seconds, leftS));
  }

  /**
   * `drover jobs cancel --queue` asked for the job to end: the record says canceled, then the
   * message is deleted (so nobody receives it again), then the request goes.
   */
  async cancel(rec: SqsJobRecord, receiptHandle: string): Promise<SqsJobRecord> {
    const now = iso();
    const record: SqsJobRecord = { ...rec, status: 'canceled', machine_id: null, canceled: now, updated: now };
    await this.records.put(record);
    await this.queue.delete(receiptHandle);
    await this.records.deleteCancel(rec.id).catch(() => undefined);
    this.log.info({ job: rec.id }, 'sqs: job canceled (drover jobs cancel): its message is deleted');
    return record;
  }

  /**
   * Moves the message to the dead-letter queue, the record first (so a node dying half way leaves a
   * record that says what is left to do), then the dead letter, its id, and the delete.
   */
  async deadLetter(rec: SqsJobRecord, body: string, receiptHandle: string, reason: string): Promise<SqsJobRecord> {
    const why = storableReason(reason).slice(0, FAILURE_REASON_MAX);
    let record: SqsJobRecord = {
      ...rec,
      status: 'dead-lettered',
      machine_id: null,
      dead_lettered: rec.dead_lettered ?? iso(),
      last_error: rec.last_error ?? why,
      dead_letter_queue_url: this.deadLetters.url,
      dead_letter_message_id: null,
      updated: iso(),
    };
    await this.records.put(record);
    const attributes: Attributes = {
      [SQS_ATTRIBUTES.jobId]: rec.id,
      [SQS_ATTRIBUTES.attempt]: String(rec.attempt),
      [SQS_ATTRIBUTES.failures]: String(rec.num_failures),
      [SQS_ATTRIBUTES.deadLetterReason]: why,
      [SQS_ATTRIBUTES.sourceQueue]: this.queue.url,
    };
    const id = await this.deadLetters.send(body, attributes);
    record = { ...record, dead_letter_message_id: id, updated: iso() };
    await this.records.put(record);
    await this.queue.delete(receiptHandle);
    this.log.warn({ job: rec.id, deadLetter: id, reason: why }, 'sqs: job moved to the dead-letter queue');
    return record;
  }
}

/** One claimed attempt on SQS: the held message's visibility is the lease. */
class SqsLease implements JobLease {
  private current: Held;
  /** A hand-on copy this node holds, until the record names it and the old message is deleted. */
  private successor: Held | undefined;
  /** A hand-on copy sent and not yet held. */
  private handOn: { messageId: string } | undefined;
  private record: SqsJobRecord;
  /** The record write and the hand-on, off the heartbeat's path (one at a time). */
  private chore: Promise<void> | undefined;
  private ended = false;
  /** A cancel request was found (by the background chore): the next heartbeat ends the attempt. */
  private cancelAsked = false;
  private readonly log: Logger;
  readonly leaseMs: number;
  /** Start handing on this long before the cap. */
  private readonly marginMs: number;

  constructor(
    private readonly src: SqsSource,
    held: Held,
    private readonly body: string,
    readonly job: Job,
    record: SqsJobRecord,
    readonly claimedAt: number,
    private readonly leaseS: number,
  ) {
    this.current = held;
    this.record = record;
    this.leaseMs = leaseS * 1000;
    this.marginMs = Math.min(src.capMs / 2, Math.max(15 * 60_000, 10 * this.leaseMs));
    this.log = src.log.child({ job: job.id, attempt: job.attempt });
  }

  async heartbeat(progress?: Progress): Promise<string> {
    if (this.cancelAsked) {
      await this.settle();
      this.record = await this.src.cancel(this.record, this.current.receiptHandle);
      await this.dropSuccessor();
      return 'canceled';
    }
    const held = this.current;
    const successor = this.successor;
    const [mine, copy] = await Promise.all([
      this.src.extend(held, this.leaseS),
      successor ? this.src.extend(successor, this.leaseS).catch(() => 'ok' as const) : undefined,
    ]);
    if (successor && copy !== undefined && copy !== 'ok' && this.successor === successor) {
      this.log.warn({ copy: successor.messageId, gone: copy }, 'sqs: lost the hand-on copy; handing on again');
      this.successor = undefined;
      // Named as replaced, so whoever receives it deletes it rather than relaying it here again.
      this.record = { ...this.record, replaced_message_ids: [...this.record.replaced_message_ids, successor.messageId].slice(-REPLACED_KEPT) };
    }
    if (mine !== 'ok' && held === this.current) return mine;
    const now = iso();
    this.record = { ...this.record, heartbeat: now, num_heartbeats: this.record.num_heartbeats + 1, progress: progress ?? this.record.progress, updated: now };
    this.kick();
    return 'running';
  }

  private kick(): void {
    if (this.chore || this.ended) return;
    this.chore = this.housekeep()
      .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'sqs: writing the job record or handing on failed; trying again at the next heartbeat'))
      .finally(() => (this.chore = undefined));
  }

  private async housekeep(): Promise<void> {
    if (await this.src.records.cancelRequested(this.job.id)) {
      this.cancelAsked = true;
      this.log.info('sqs: the job was asked to be canceled: it stops at the next heartbeat');
      return;
    }
    const capLeftMs = this.current.receivedAt + this.src.capMs - performance.now();
    if (!this.successor && !this.handOn && capLeftMs <= this.marginMs) await this.sendCopy(capLeftMs);
    if (this.handOn && !this.successor) await this.findCopy();
    if (this.successor) await this.promote(this.successor);
    else await this.src.records.put(this.record);
  }

  /** The visibility cap is near: a copy of the message, for the job to go on under. */
  private async sendCopy(capLeftMs: number): Promise<void> {
    const id = await this.src.queue.send(this.body, {
      [SQS_ATTRIBUTES.jobId]: this.job.id,
      [SQS_ATTRIBUTES.attempt]: String(this.record.attempt),
      [SQS_ATTRIBUTES.failures]: String(this.record.num_failures),
      [SQS_ATTRIBUTES.handOnFrom]: this.src.machineId,
      [SQS_ATTRIBUTES.previous]: this.current.messageId,
    });
    this.handOn = { messageId: id };
    this.log.info({ copy: id, capLeftS: Math.round(capLeftMs / 1000) }, 'sqs: the visibility cap is near: sent a copy of the message to hand the job on to');
  }

  /** The copy's receipt handle: relayed by the node that received it, or received here. */
  private async findCopy(): Promise<void> {
    const want = this.handOn as { messageId: string };
    let found: Held | undefined;
    const relay = await this.src.records.getRelay(this.job.id);
    if (relay?.message_id === want.messageId) {
      found = { messageId: relay.message_id, receiptHandle: relay.receipt_handle, receivedAt: performance.now() - Math.max(0, Date.now() - relay.received_at) };
    } else {
      // No other node has taken it (none is idle, or none has looked yet): receive it here, giving
      // back what else comes. When an idle node took it first, its relay is there at the next beat.
      for (const m of await this.src.queue.receive({ max: 10, waitS: 0, visibilityS: this.leaseS })) {
        if (m.messageId === want.messageId) found = { messageId: m.messageId, receiptHandle: m.receiptHandle, receivedAt: m.receivedAt };
        else await this.src.queue.changeVisibility(m.receiptHandle, 0).catch(() => undefined);
      }
    }
    if (found && (await this.src.extend(found, this.leaseS)) === 'ok') {
      this.successor = found;
      this.handOn = undefined;
    }
  }

  /** The record names the copy; then the old message goes (a receiver deletes it too, if this node dies first). */
  private async promote(next: Held): Promise<void> {
    const old = this.current;
    const record: SqsJobRecord = {
      ...this.record,
      message_id: next.messageId,
      replaced_message_ids: [...this.record.replaced_message_ids, old.messageId].slice(-REPLACED_KEPT),
      hand_ons: this.record.hand_ons + 1,
      updated: iso(),
    };
    await this.src.records.put(record);
    this.record = record;
    this.current = next;
    this.successor = undefined;
    this.log.info({ from: old.messageId, to: next.messageId, handOns: record.hand_ons }, 'sqs: handed the job on to a new message; it keeps running here');
    await this.src.queue.delete(old.receiptHandle);
    await this.src.records.deleteRelay(this.job.id).catch(() => undefined);
  }

  /** No more background writes: the report writes the record last. */
  private async settle(): Promise<void> {
    this.ended = true;
    await this.chore;
  }

  /** The message is still this node's (a report from a node that lost it is refused). */
  private async prove(): Promise<void> {
    const r = await this.src.extend(this.current, this.leaseS);
    if (r !== 'ok') throw new ReportRefusedError(`the message is no longer held by this node (${r})`);
  }

  /** A copy held but not yet named by the record is dropped with the attempt. */
  private async dropSuccessor(): Promise<void> {
    const s = this.successor;
    this.successor = undefined;
    if (s) await this.src.queue.delete(s.receiptHandle).catch(() => undefined);
  }

  async complete(): Promise<void> {
    await this.settle();
    if (this.record.status !== 'completed') {
      await this.prove();
      const now = iso();
      const done: SqsJobRecord = { ...this.record, status: 'completed', completed: now, updated: now };
      await this.src.records.put(done);
      this.record = done;
    }
    await this.src.queue.delete(this.current.receiptHandle);
    await this.dropSuccessor();
  }

  async fail(reason?: string): Promise<void> {
    await this.settle();
    await this.prove();
    const why = storableReason(reason ?? 'the attempt failed');
    const failures = this.record.num_failures + 1;
    const banned = [...(this.record.banned_machines ?? []).filter((id) => id !== this.src.machineId), this.src.machineId].slice(-BANNED_KEPT);
    const rec: SqsJobRecord = { ...this.record, num_failures: failures, banned_machines: banned, last_error: why, updated: iso() };
    await this.dropSuccessor();
    if (failures >= this.job.max_failures) {
      this.record = await this.src.deadLetter(rec, this.body, this.current.receiptHandle, `failed ${failures} times (max_failures ${this.job.max_failures}); last: ${why}`);
      return;
    }
    const waiting: SqsJobRecord = { ...rec, machine_id: null };
    await this.src.records.put(waiting);
    this.record = waiting;
    // Visible again at once: the next node need not wait out the lease.
    await this.src.queue.changeVisibility(this.current.receiptHandle, 0);
  }

  async release(): Promise<void> {
    await this.settle();
    await this.prove();
    const waiting: SqsJobRecord = { ...this.record, machine_id: null, updated: iso() };
    await this.src.records.put(waiting);
    this.record = waiting;
    await this.dropSuccessor();
    await this.src.queue.changeVisibility(this.current.receiptHandle, 0);
  }
}
