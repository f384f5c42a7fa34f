// A real SQS-protocol server for tests and benchmarks: fauxqs (the storage tests' S3 server speaks
// SQS too) behind the storage harness's proxy, with queues made per test and the environment a
// `drover worker --queue` or a `drover` client command needs to reach them.
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import { randomUUID } from 'node:crypto';
import { after, before } from 'node:test';
import { startBackend, type Backend } from './storage.js';
import { spawnWorker, type TestWorker } from './worker.js';

export interface TestQueue {
  url: string;
  name: string;
  deadLetterUrl: string;
}

export interface SqsHarness {
  s3: Backend;
  client: SQSClient;
  /** A fresh queue and its dead-letter queue (with `redrive`, as the queue's RedrivePolicy). */
  queue(o?: { fifo?: boolean; redrive?: boolean }): Promise<TestQueue>;
  /** DROVER_STORAGE, AWS_* (S3 and SQS on one endpoint) and the SQS settings for one queue. */
  env(q: TestQueue, extra?: Record<string, string>): Record<string, string>;
  /** Messages visible now, received and hidden for `hideS` (default 0: visible again at once). */
  peek(url: string, hideS?: number): Promise<Message[]>;
  counts(url: string): Promise<{ available: number; inFlight: number }>;
  close(): Promise<void>;
}

/** Starts fauxqs (through the storage harness), or speaks SQS to the one `existing` runs. */
export async function startSqs(existing?: Backend): Promise<SqsHarness> {
  const s3 = existing ?? (await startBackend('s3'));
  const endpoint = s3.env.AWS_ENDPOINT_URL as string;
  const client = new SQSClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  let n = 0;
  return {
    s3,
    client,
    async queue(o = {}) {
      const base = `q${++n}-${randomUUID().slice(0, 8)}`;
      const suffix = o.fifo ? '.fifo' : '';
      const fifo = o.fifo ? { FifoQueue: 'true' } : {};
      const dlq = await client.send(new CreateQueueCommand({ QueueName: `${base}-dlq${suffix}`, Attributes: fifo }));
      const dlqArn = `arn:aws:sqs:us-east-1:000000000000:${base}-dlq${suffix}`;
      const q = await client.send(
        new CreateQueueCommand({
          QueueName: `${base}${suffix}`,
          Attributes: { ...fifo, ...(o.redrive ? { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: '1000' }) } : {}) },
        }),
      );
      return { url: q.QueueUrl!, name: `${base}${suffix}`, deadLetterUrl: dlq.QueueUrl! };
    },
    env(q, extra = {}) {
      return {
        ...s3.env,
        DROVER_SQS_QUEUE_URL: q.url,
        DROVER_SQS_STATUS_BUCKET: s3.bucket,
        ...extra,
      };
    },
    async peek(url, hideS = 0) {
      const r = await client.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, VisibilityTimeout: hideS, MessageAttributeNames: ['All'], WaitTimeSeconds: 0 }));
      return r.Messages ?? [];
    },
    async counts(url) {
      const r = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
      return { available: Number(r.Attributes?.ApproximateNumberOfMessages ?? 0), inFlight: Number(r.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0) };
    },
    async close() {
      client.destroy();
      if (!existing) await s3.close();
    },
  };
}

/** A describe block's SQS server and the `drover worker --queue` processes it starts. */
export interface SqsStack extends Omit<SqsHarness, 'close'> {
  /** Every worker started through this stack, in order; each is killed (kill -9) when the block ends. */
  readonly workers: TestWorker[];
  /** A `drover worker` taking its jobs from `q` (no coordinator), with `env` added to its environment. */
  worker(q: TestQueue, env?: Record<string, string>): TestWorker;
}

/** Registers before/after hooks in the calling describe block; use the stack inside tests. */
export function sqsStack(): SqsStack {
  let h: SqsHarness | undefined;
  const workers: TestWorker[] = [];
  const started = () => {
    if (!h) throw new Error('sqsStack: the server starts in before(); use it inside a test');
    return h;
  };
  before(async () => {
    h = await startSqs();
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.killNode()));
    await h?.close();
  });
  return {
    get s3() {
      return started().s3;
    },
    get client() {
      return started().client;
    },
    queue: (o) => started().queue(o),
    env: (q, extra) => started().env(q, extra),
    peek: (url, hideS) => started().peek(url, hideS),
    counts: (url) => started().counts(url),
    workers,
    worker(q, env = {}) {
      const w = spawnWorker({ url: '', key: '', group: '', storageEnv: started().env(q, env) });
      workers.push(w);
      return w;
    },
  };
}
