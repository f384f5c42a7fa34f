// The job records of an SQS queue: one small JSON object per job in the status bucket
// (<prefix>jobs/<job id>.json), written by the worker that holds the job (its visibility is the
// lease, so there is one writer at a time) and read by the next receiver and by `drover status
// --queue`. Beside them, <prefix>relays/<job id>.json passes a hand-on copy's receipt handle from the
// node that received it to the node running the job, and <prefix>cancels/<job id>.json asks for the
// job to be canceled (written by the CLI). Every call is retried through `retry`.
import { text } from 'node:stream/consumers';
import { retry, type Backoff, type RetryInfo } from '@drover/common';
import { SqsCancel, SqsJobRecord, SqsRelay, sqsCancelKey, sqsRecordKey, sqsRelayKey } from '@drover/protocol';
import { InvalidKeyError, NotFoundError, type ObjectStore } from '@drover/storage';
import { Value } from '@sinclair/typebox/value';

const BACKOFF: Backoff = { baseMs: 200, maxMs: 3000, jitter: 'full' };

/** A record in the bucket that is not one (a hand edit, another program's object). */
export class BadRecordError extends Error {
  override name = 'BadRecordError';
}

export class SqsRecords {
  constructor(
    readonly store: ObjectStore,
    readonly bucket: string,
    readonly prefix: string,
    private readonly o: { retries?: number; onRetry?: (r: RetryInfo & { operation: string }) => void } = {},
  ) {}

  /** For logs. */
  get location(): string {
    return `${this.bucket}/${this.prefix}`;
  }

  private retried<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    return retry(fn, {
      attempts: (this.o.retries ?? 3) + 1,
      backoff: BACKOFF,
      // A missing object or a key the store refuses is an answer, not a failure.
      retryable: (err) => !(err instanceof NotFoundError || err instanceof InvalidKeyError || err instanceof BadRecordError),
      onRetry: (r) => this.o.onRetry?.({ ...r, operation }),
    });
  }

  private async read<T>(key: string, check: (v: unknown) => v is T): Promise<T | undefined> {
    return this.retried(`read ${key}`, async () => {
      let body: string;
      try {
        body = await text(await this.store.getStream(this.bucket, key));
      } catch (err) {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      }
      let v: unknown;
      try {
        v = JSON.parse(body);
      } catch {
        throw new BadRecordError(`${this.bucket}/${key} is not JSON`);
      }
      if (!check(v)) throw new BadRecordError(`${this.bucket}/${key} is not a Drover SQS record`);
      return v;
    });
  }

  private write(key: string, value: unknown): Promise<void> {
    const body = Buffer.from(`${JSON.stringify(value)}\n`);
    return this.retried(`write ${key}`, async () => {
      await this.store.put(this.bucket, key, body, { contentType: 'application/json' });
    });
  }

  get(jobId: string): Promise<SqsJobRecord | undefined> {
    return this.read(sqsRecordKey(this.prefix, jobId), (v): v is SqsJobRecord => Value.Check(SqsJobRecord, v));
  }

  put(record: SqsJobRecord): Promise<void> {
    return this.write(sqsRecordKey(this.prefix, record.id), record);
  }

  getRelay(jobId: string): Promise<SqsRelay | undefined> {
    return this.read(sqsRelayKey(this.prefix, jobId), (v): v is SqsRelay => Value.Check(SqsRelay, v));
  }

  putRelay(jobId: string, relay: SqsRelay): Promise<void> {
    return this.write(sqsRelayKey(this.prefix, jobId), relay);
  }

  deleteRelay(jobId: string): Promise<void> {
    return this.retried('delete relay', () => this.store.delete(this.bucket, sqsRelayKey(this.prefix, jobId)));
  }

  /** Whether the job was asked to be canceled: any object at its request's key (even an unreadable one) is a request. */
  async cancelRequested(jobId: string): Promise<boolean> {
    try {
      return (await this.read(sqsCancelKey(this.prefix, jobId), (v): v is SqsCancel => Value.Check(SqsCancel, v))) !== undefined;
    } catch (err) {
      if (err instanceof BadRecordError) return true;
      throw err;
    }
  }

  putCancel(jobId: string, cancel: SqsCancel): Promise<void> {
    return this.write(sqsCancelKey(this.prefix, jobId), cancel);
  }

  deleteCancel(jobId: string): Promise<void> {
    return this.retried('delete cancel', () => this.store.delete(this.bucket, sqsCancelKey(this.prefix, jobId)));
  }
}
