// One AWS SQS queue through AWS SDK v3, as the worker's SQS source and the CLI's queue commands use
// it: where the queue is (its URL, or sqs://<name> looked up), the calls Drover makes, each retried
// through @drover/common's `retry` (the SDK's own retries are off, as the storage engine's are), and
// what an error means (the message is gone from this receiver, or SQS is out of reach for now).
// FIFO queues (<name>.fifo) work too: every message Drover sends gets its own message group, so
// jobs run side by side and a hand-on copy is never held behind the message it replaces.
import { randomUUID } from 'node:crypto';
import {
  ChangeMessageVisibilityCommand, DeleteMessageCommand, GetQueueAttributesCommand, GetQueueUrlCommand,
  PurgeQueueCommand, ReceiveMessageCommand, SendMessageBatchCommand, SendMessageCommand, SQSClient,
  type Message, type MessageAttributeValue, type QueueAttributeName,
} from '@aws-sdk/client-sqs';
import { retry, type Backoff, type RetryInfo } from '@drover/common';
import { parseQueueSpec, SqsSettingError, type QueueSpec } from './sqs-spec.js';

// As the storage package does: the SDK's notice about future Node versions would land as plain
// text inside a worker's JSON log.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** How to reach SQS: the endpoint (AWS's for the region when unset), region and keys (the SDK's own chain when unset). */
export interface SqsConnection {
  endpoint?: string | undefined;
  /** Wins over the queue URL's region. */
  region?: string | undefined;
  /** Used when neither `region` nor the queue URL names one. */
  fallbackRegion?: string | undefined;
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  /** Retries of each call on network errors, throttling and 5xx (default 3). */
  retries?: number | undefined;
  onRetry?: ((info: RetryInfo & { operation: string }) => void) | undefined;
}

/** Why the message cannot be extended or deleted with this receipt handle any more. */
export type Gone = 'taken' | 'visibility-cap';

/** The SDK's error fields Drover reads. */
interface AwsError {
  name?: string;
  message?: string;
  $fault?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** The receipt handle no longer holds the message: another receiver has it, it was deleted, or it expired. */
export function messageGone(err: unknown): Gone | undefined {
  const e = err as AwsError | null;
  if (!e || typeof e !== 'object') return undefined;
  const text = `${e.name ?? ''} ${e.message ?? ''}`;
  if (/beyond the limit|total visibility ?timeout/i.test(text)) return 'visibility-cap';
  if (e.name === 'MessageNotInflight' || e.name === 'ReceiptHandleIsInvalid') return 'taken';
  // AWS answers a stale handle with InvalidParameterValue "... is not available for visibility timeout change".
  if (e.$metadata?.httpStatusCode === 400 && /receipt ?handle|not available for visibility timeout change|message does not exist/i.test(text)) return 'taken';
  return undefined;
}

/** Network errors, throttling and 5xx are worth another try; an answer about the request is not. */
export function sqsRetryable(err: unknown): boolean {
  const e = err as AwsError | null;
  if (!e || typeof e !== 'object') return false;
  if (e.name === 'AbortError') return false;
  const status = e.$metadata?.httpStatusCode;
  if (status === undefined) return true;
  if (e.$retryable) return true;
  if (status >= 500 || status === 429) return true;
  return /throttl|OverLimit|RequestThrottled/i.test(e.name ?? '');
}

/** Credentials or permissions were refused: another try will not help. */
export function sqsAccessDenied(err: unknown): boolean {
  const e = err as AwsError | null;
  const status = e?.$metadata?.httpStatusCode;
  return status === 401 || status === 403 || /AccessDenied|InvalidClientTokenId|SignatureDoesNotMatch|UnrecognizedClient|InvalidSecurity|MissingAuthenticationToken/.test(e?.name ?? '');
}

export function queueMissing(err: unknown): boolean {
  const name = (err as AwsError | null)?.name ?? '';
  return name === 'QueueDoesNotExist' || name === 'AWS.SimpleQueueService.NonExistentQueue';
}

/** The message attributes Drover reads and writes: all of SQS type String. */
export type Attributes = Record<string, string>;

function toSqsAttributes(a: Attributes): Record<string, MessageAttributeValue> {
  return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, { DataType: 'String', StringValue: sqsText(v) }]));
}

export function attributesOf(m: Message): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) if (typeof v.StringValue === 'string') out[k] = v.StringValue;
  return out;
}

/** Text SQS accepts: #x9, #xA, #xD, #x20–#xD7FF, #xE000–#xFFFD and #x10000 up; anything else becomes U+FFFD. */
export function sqsText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

export interface Received {
  messageId: string;
  receiptHandle: string;
  body: string;
  attributes: Attributes;
  /** SQS's SentTimestamp (epoch ms). */
  sentAt: number;
  /**
   * performance.now() of the receive, for the message's visibility cap: a second before the answer
   * came (no earlier than the request; a long-poll may have waited up to 20 s before SQS had it).
   */
  receivedAt: number;
  /** Date.now() at the same moment. */
  receivedAtWall: number;
}

export interface QueueCounts {
  /** Messages a receive could get now (ApproximateNumberOfMessages). */
  available: number;
  /** Received and not yet deleted or visible again (ApproximateNumberOfMessagesNotVisible): jobs running, or being looked at. */
  inFlight: number;
  /** Sent with a delay that has not passed (ApproximateNumberOfMessagesDelayed). */
  delayed: number;
}

/** A call's deadline beyond the time it may wait on purpose (a long-poll). */
const CALL_TIMEOUT_MS = 15_000;
const CALL_BACKOFF: Backoff = { baseMs: 200, maxMs: 3000, jitter: 'full' };
/** How long before its answer arrived a received message is taken to have been received. */
const RECEIVE_MARGIN_MS = 1000;

export class SqsQueue {
  readonly fifo: boolean;

  private constructor(
    readonly client: SQSClient,
    readonly url: string,
    readonly name: string,
    readonly region: string,
    private readonly conn: SqsConnection,
  ) {
    this.fifo = name.endsWith('.fifo');
  }

  /** Opens the queue a spec names (an sqs://<name> is looked up with GetQueueUrl). */
  static async open(spec: string | QueueSpec, conn: SqsConnection = {}): Promise<SqsQueue> {
    const q = typeof spec === 'string' ? parseQueueSpec(spec) : spec;
    if (conn.endpoint !== undefined) {
      let u: URL | undefined;
      try {
        u = new URL(conn.endpoint);
      } catch {
        u = undefined;
      }
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new SqsSettingError(`the SQS endpoint ${JSON.stringify(conn.endpoint)} is not an http(s) URL`);
    }
    if ((conn.accessKeyId === undefined) !== (conn.secretAccessKey === undefined)) {
      throw new SqsSettingError('set both the SQS access key id and secret access key, or neither (to use the AWS SDK\'s credential chain)');
    }
    const region = conn.region ?? q.region ?? conn.fallbackRegion ?? 'us-east-1';
    const client = new SQSClient({
      region,
      ...(conn.endpoint !== undefined ? { endpoint: conn.endpoint } : {}),
      ...(conn.accessKeyId !== undefined && conn.secretAccessKey !== undefined
        ? { credentials: { accessKeyId: conn.accessKeyId, secretAccessKey: conn.secretAccessKey } }
        : {}),
      maxAttempts: 1,
      requestHandler: { connectionTimeout: 10_000 },
    });
    const probe = new SqsQueue(client, q.url ?? '', q.name, region, conn);
    if (q.url !== undefined) return probe;
    const got = await probe.call('GetQueueUrl', (signal) => client.send(new GetQueueUrlCommand({ QueueName: q.name }), { abortSignal: signal }));
    if (!got.QueueUrl) throw new SqsSettingError(`SQS gave no URL for queue ${q.name}`);
    return new SqsQueue(client, got.QueueUrl, q.name, region, conn);
  }

  /** For logs: the queue, never a key. */
  get description(): string {
    return `sqs ${this.url}${this.conn.endpoint ? ` (endpoint ${this.conn.endpoint})` : ''}`;
  }

  /** One SQS call with retries; `timeoutMs` bounds each try. */
  async call<T>(operation: string, fn: (signal: AbortSignal) => Promise<T>, o: { signal?: AbortSignal | undefined; timeoutMs?: number } = {}): Promise<T> {
    return retry(
      () => fn(o.signal ? AbortSignal.any([o.signal, AbortSignal.timeout(o.timeoutMs ?? CALL_TIMEOUT_MS)]) : AbortSignal.timeout(o.timeoutMs ?? CALL_TIMEOUT_MS)),
      {
        attempts: (this.conn.retries ?? 3) + 1,
        backoff: CALL_BACKOFF,
        retryable: sqsRetryable,
        ...(o.signal ? { signal: o.signal } : {}),
        onRetry: (r) => this.conn.onRetry?.({ ...r, operation }),
      },
    );
  }

  /** Up to `max` messages (1–10), waiting up to `waitS` (0–20) for the first, hidden for `visibilityS`. */
  async receive(o: { max: number; waitS: number; visibilityS: number; signal?: AbortSignal | undefined }): Promise<Received[]> {
    const sentAt = performance.now();
    const waitS = Math.max(0, Math.min(20, Math.floor(o.waitS)));
    const out = await this.call(
      'ReceiveMessage',
      (signal) =>
        this.client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.url,
            MaxNumberOfMessages: Math.max(1, Math.min(10, o.max)),
            WaitTimeSeconds: waitS,
            VisibilityTimeout: o.visibilityS,
            MessageAttributeNames: ['All'],
            MessageSystemAttributeNames: ['SentTimestamp'],
          }),
          { abortSignal: signal },
        ),
      { signal: o.signal, timeoutMs: waitS * 1000 + CALL_TIMEOUT_MS },
    );
    const answeredAt = performance.now();
    const receivedAt = Math.max(sentAt, answeredAt - RECEIVE_MARGIN_MS);
    const receivedAtWall = Date.now() - (answeredAt - receivedAt);
    return (out.Messages ?? [])
      .filter((m): m is Message & { MessageId: string; ReceiptHandle: string } => typeof m.MessageId === 'string' && typeof m.ReceiptHandle === 'string')
      .map((m) => ({
        messageId: m.MessageId,
        receiptHandle: m.ReceiptHandle,
        body: m.Body ?? '',
        attributes: attributesOf(m),
        sentAt: Number(m.Attributes?.SentTimestamp ?? receivedAtWall),
        receivedAt,
        receivedAtWall,
      }));
  }

  /** Hides the message for `seconds` from now (0: visible at once); `gone` when this handle no longer holds it. */
  async changeVisibility(receiptHandle: string, seconds: number): Promise<'ok' | Gone> {
    try {
      await this.call('ChangeMessageVisibility', (signal) =>
        this.client.send(new ChangeMessageVisibilityCommand({ QueueUrl: this.url, ReceiptHandle: receiptHandle, VisibilityTimeout: Math.max(0, Math.floor(seconds)) }), { abortSignal: signal }),
      );
      return 'ok';
    } catch (err) {
      const gone = messageGone(err);
      if (gone) return gone;
      throw err;
    }
  }

  /** Deletes the message (a handle that no longer holds it: nothing happens, as SQS has it). */
  async delete(receiptHandle: string): Promise<void> {
    try {
      await this.call('DeleteMessage', (signal) => this.client.send(new DeleteMessageCommand({ QueueUrl: this.url, ReceiptHandle: receiptHandle }), { abortSignal: signal }));
    } catch (err) {
      if (!messageGone(err)) throw err;
    }
  }

  /** FIFO queues: a message group of its own (jobs run side by side) and a fresh deduplication id. */
  private fifoFields(): { MessageGroupId?: string; MessageDeduplicationId?: string } {
    return this.fifo ? { MessageGroupId: randomUUID(), MessageDeduplicationId: randomUUID() } : {};
  }

  /** Sends one message; resolves with its MessageId. */
  async send(body: string, attributes: Attributes = {}): Promise<string> {
    // One deduplication id for every try: a FIFO queue drops the copy a retry may send.
    const input = {
      QueueUrl: this.url,
      MessageBody: body,
      ...(Object.keys(attributes).length > 0 ? { MessageAttributes: toSqsAttributes(attributes) } : {}),
      ...this.fifoFields(),
    };
    const out = await this.call('SendMessage', (signal) => this.client.send(new SendMessageCommand(input), { abortSignal: signal }));
    if (!out.MessageId) throw new Error(`SQS gave no MessageId for a message sent to ${this.url}`);
    return out.MessageId;
  }

  /**
   * Sends up to 10 messages in one request; resolves with their MessageIds in order. Throws if any
   * was refused, naming it (the others were sent: their ids are on the error).
   */
  async sendBatch(bodies: readonly string[]): Promise<string[]> {
    if (bodies.length < 1 || bodies.length > 10) throw new RangeError('a batch holds 1 to 10 messages');
    // The same Ids on every try: entries SQS already took are not refused on a retry, only sent twice
    // (at-least-once), so a retry is only made when the whole request failed.
    const entries = bodies.map((b, i) => ({ Id: String(i), MessageBody: b, ...this.fifoFields() }));
    const out = await this.call('SendMessageBatch', (signal) => this.client.send(new SendMessageBatchCommand({ QueueUrl: this.url, Entries: entries }), { abortSignal: signal }));
    const ids = new Array<string | undefined>(bodies.length);
    for (const ok of out.Successful ?? []) ids[Number(ok.Id)] = ok.MessageId;
    const failed = out.Failed ?? [];
    if (failed.length > 0) {
      const first = failed[0]!;
      throw new SqsBatchError(`SQS refused message ${first.Id} of the batch: ${first.Code}${first.Message ? ` (${first.Message})` : ''}`, ids, Number(first.Id));
    }
    return ids.map((id, i) => {
      if (!id) throw new Error(`SQS gave no MessageId for message ${i} of the batch`);
      return id;
    });
  }

  async counts(): Promise<QueueCounts> {
    const out = await this.call('GetQueueAttributes', (signal) =>
      this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.url,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
        }),
        { abortSignal: signal },
      ),
    );
    const n = (k: QueueAttributeName) => Number(out.Attributes?.[k] ?? 0);
    return { available: n('ApproximateNumberOfMessages'), inFlight: n('ApproximateNumberOfMessagesNotVisible'), delayed: n('ApproximateNumberOfMessagesDelayed') };
  }

  /** The queue's RedrivePolicy: its dead-letter queue's URL and maxReceiveCount, if it has one. */
  async redrivePolicy(): Promise<{ deadLetterQueueUrl: string; maxReceiveCount: number } | undefined> {
    const out = await this.call('GetQueueAttributes', (signal) =>
      this.client.send(new GetQueueAttributesCommand({ QueueUrl: this.url, AttributeNames: ['RedrivePolicy'] }), { abortSignal: signal }),
    );
    const raw = out.Attributes?.RedrivePolicy;
    if (!raw) return undefined;
    let policy: { deadLetterTargetArn?: string; maxReceiveCount?: string | number };
    try {
      policy = JSON.parse(raw) as typeof policy;
    } catch {
      return undefined;
    }
    // arn:aws:sqs:<region>:<account>:<name> → the URL, on this queue's host.
    const arn = /^arn:[^:]+:sqs:([^:]*):(\d+):(.+)$/.exec(policy.deadLetterTargetArn ?? '');
    if (!arn) return undefined;
    const base = new URL(this.url);
    const [, region, account, name] = arn as unknown as [string, string, string, string];
    if (region !== '' && region !== this.region) base.hostname = base.hostname.replace(`sqs.${this.region}.`, `sqs.${region}.`);
    return { deadLetterQueueUrl: `${base.origin}/${account}/${name}`, maxReceiveCount: Number(policy.maxReceiveCount ?? Infinity) };
  }

  /** A queue on the same connection (e.g. the dead-letter queue). */
  async sibling(spec: string): Promise<SqsQueue> {
    return SqsQueue.open(spec, { ...this.conn, fallbackRegion: this.region });
  }

  async purge(): Promise<void> {
    await this.call('PurgeQueue', (signal) => this.client.send(new PurgeQueueCommand({ QueueUrl: this.url }), { abortSignal: signal }));
  }

  close(): void {
    this.client.destroy();
  }
}

export class SqsBatchError extends Error {
  override name = 'SqsBatchError';
  constructor(
    message: string,
    /** The MessageIds of the entries SQS took (undefined for the refused ones). */
    readonly ids: (string | undefined)[],
    /** The index of the first refused entry. */
    readonly index: number,
  ) {
    super(message);
  }
}
