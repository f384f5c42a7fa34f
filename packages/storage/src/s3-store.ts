// S3Store: the ObjectStore on any S3-protocol service through AWS SDK v3. `forcePathStyle` puts
// the bucket in the path (http://host/bucket/key), which R2, MinIO and loopback test servers want.
// The SDK's own retries are off by default (maxAttempts 1): the transfer engine retries whole
// steps with backoff and jitter, and two layers of retries would multiply.
// With a custom endpoint addressed path-style (R2, MinIO, loopback), the hot requests (GetObject,
// HeadObject, PutObject, UploadPart) skip the SDK's middleware stack and go out as plain signed
// HTTP requests (s3-direct.ts), with the same error shapes; everything else uses the SDK.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand,
  S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { GET_TO_FILE, type GetToFile } from './file-get.js';
import { DirectS3 } from './s3-direct.js';
import { hasWorkers } from './worker-pool.js';
import {
  ChangedError, InvalidKeyError, InvalidRangeError, NotFoundError,
  type CompletedPart, type GetOptions, type MultipartApi, type ObjectInfo, type ObjectStore, type PutBody, type PutOptions,
} from './object-store.js';

// Drover pins its AWS SDK version (package-lock.json). The SDK's notice that versions published
// after January 2027 will need Node 22 is for whoever upgrades it; printed at the first client, it
// lands as eight lines of plain text inside a worker's JSON log. Set the variable to "false" to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3StoreOptions {
  /** e.g. https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:9000; omit for AWS. */
  endpoint?: string;
  region?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Bucket in the path instead of the host name (R2, MinIO, loopback servers). */
  forcePathStyle?: boolean;
  /** SDK-level attempts per request; default 1 (the transfer engine does the retrying). */
  maxAttempts?: number;
  /** Socket idle timeout per request, ms; default 60 000. */
  requestTimeoutMs?: number;
  connectionTimeoutMs?: number;
  /** Use an existing client instead of building one from the options above. */
  client?: S3Client;
  /**
   * Send GetObject, HeadObject, PutObject and UploadPart as plain signed HTTP requests instead of
   * through the SDK (much less CPU per request). Default true; it applies only to a client built
   * from `endpoint` with `forcePathStyle` (never to AWS's own endpoints or a given `client`).
   */
  directRequests?: boolean;
}

function unquote(etag: string | undefined): string | undefined {
  return etag === undefined ? undefined : etag.replace(/^"|"$/g, '');
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404;
}

/** The engine's errors for a failed GetObject: NotFound (404), Changed (412), InvalidRange (416). */
function mapGetError(err: unknown, bucket: string, key: string): unknown {
  if (isNotFound(err)) return new NotFoundError(bucket, key, { cause: err });
  if (statusOf(err) === 412) return new ChangedError(bucket, key, { cause: err });
  if (statusOf(err) === 416) return new InvalidRangeError(`range not satisfiable for ${bucket}/${key}`, { cause: err });
  return err;
}

function checkKey(key: string): void {
  if (!key) throw new InvalidKeyError('empty key');
  if (key.includes('\0')) throw new InvalidKeyError(`key contains a NUL byte: ${JSON.stringify(key)}`);
}

/** The endpoint as a URL when requests may bypass the SDK (custom endpoint, path-style), else undefined. */
function directEndpoint(opts: S3StoreOptions): URL | undefined {
  if (opts.client || opts.directRequests === false || !opts.forcePathStyle || !opts.endpoint) return undefined;
  try {
    const url = new URL(opts.endpoint);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.username) return undefined;
    return url;
  } catch {
    return undefined;
  }
}

export class S3Store implements ObjectStore {
  readonly client: S3Client;
  readonly multipart: MultipartApi;
  /** The lean request path, when this store's endpoint allows it. */
  private readonly direct: DirectS3 | undefined;
  /** Whole-object GETs into a file, in a worker thread (lean path only). */
  readonly [GET_TO_FILE]?: GetToFile;

  constructor(opts: S3StoreOptions = {}) {
    this.client =
      opts.client ??
      new S3Client({
        endpoint: opts.endpoint,
        region: opts.region ?? 'auto',
        credentials: opts.credentials,
        forcePathStyle: opts.forcePathStyle ?? false,
        maxAttempts: opts.maxAttempts ?? 1,
        // R2 and most S3-compatible servers reject the SDK's newer default trailing checksums.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        requestHandler: {
          requestTimeout: opts.requestTimeoutMs ?? 60_000,
          connectionTimeout: opts.connectionTimeoutMs ?? 10_000,
        },
      });
    const client = this.client;
    const endpoint = directEndpoint(opts);
    const direct = endpoint
      ? new DirectS3(client, endpoint, { requestTimeoutMs: opts.requestTimeoutMs ?? 60_000, connectionTimeoutMs: opts.connectionTimeoutMs ?? 10_000 })
      : undefined;
    this.direct = direct;
    if (direct && hasWorkers()) {
      this[GET_TO_FILE] = async (bucket, key, file, o) => {
        checkKey(key);
        try {
          return await direct.getToFile(bucket, key, file, o);
        } catch (err) {
          throw mapGetError(err, bucket, key);
        }
      };
    }
    if (direct) {
      // Callers release a store with `store.client.destroy()`; let that close our connections too.
      const destroyClient = client.destroy.bind(client);
      client.destroy = () => {
        direct.destroy();
        destroyClient();
      };
    }
    this.multipart = {
      async create(bucket, key, o) {
        checkKey(key);
        const out = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: o?.contentType, Metadata: o?.metadata }));
        if (!out.UploadId) throw new Error(`CreateMultipartUpload for ${bucket}/${key} returned no UploadId`);
        return out.UploadId;
      },
      async uploadPart(bucket, key, uploadId, partNumber, body, md5) {
        if (direct) {
          const etag = await direct.uploadPart(bucket, key, uploadId, partNumber, body, md5);
          if (!etag) throw new Error(`UploadPart ${partNumber} of ${bucket}/${key} returned no ETag`);
          return etag;
        }
        const out = await client.send(
          new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length, ContentMD5: md5 }),
        );
        if (!out.ETag) throw new Error(`UploadPart ${partNumber} of ${bucket}/${key} returned no ETag`);
        return out.ETag;
      },
      async complete(bucket, key, uploadId, parts: CompletedPart[]) {
        const out = await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket, Key: key, UploadId: uploadId,
            MultipartUpload: { Parts: [...parts].sort((a, b) => a.partNumber - b.partNumber).map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
          }),
        );
        return { etag: unquote(out.ETag) };
      },
      async abort(bucket, key, uploadId) {
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
      },
    };
  }

  async *list(bucket: string, prefix = ''): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, ContinuationToken: token }),
      );
      for (const o of out.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key, size: o.Size ?? 0, etag: unquote(o.ETag), lastModified: o.LastModified ?? new Date(0) };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async head(bucket: string, key: string): Promise<ObjectInfo> {
    checkKey(key);
    try {
      if (this.direct) return { key, ...(await this.direct.head(bucket, key)) };
      const out = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { key, size: out.ContentLength ?? 0, etag: unquote(out.ETag), lastModified: out.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(bucket, key, { cause: err });
      throw err;
    }
  }

  async getStream(bucket: string, key: string, opts: GetOptions = {}): Promise<Readable> {
    checkKey(key);
    const { range } = opts;
    if (range && (range.start < 0 || range.end < range.start)) {
      throw new InvalidRangeError(`invalid range ${range.start}-${range.end}`);
    }
    try {
      if (this.direct) return await this.direct.get(bucket, key, range, opts.ifMatch);
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: bucket, Key: key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
          IfMatch: opts.ifMatch === undefined ? undefined : `"${opts.ifMatch}"`,
        }),
      );
      if (!(out.Body instanceof Readable)) throw new Error(`GetObject ${bucket}/${key} returned no Node stream`);
      return out.Body;
    } catch (err) {
      throw mapGetError(err, bucket, key);
    }
  }

  async put(bucket: string, key: string, body: PutBody, opts: PutOptions = {}): Promise<{ etag?: string }> {
    checkKey(key);
    let payload: Buffer | Uint8Array | Readable;
    let size = opts.size;
    if (body instanceof Readable || Buffer.isBuffer(body) || body instanceof Uint8Array) {
      payload = body;
      if (!(body instanceof Readable)) size ??= body.length;
    } else {
      size ??= (await stat(body.file)).size;
      if (this.direct) return { etag: await this.direct.put(bucket, key, body, size, opts) };
      payload = createReadStream(body.file);
    }
    if (this.direct && size !== undefined) return { etag: await this.direct.put(bucket, key, payload, size, opts) };
    const out = await this.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: payload, ContentLength: size, ContentMD5: opts.md5, ContentType: opts.contentType, Metadata: opts.metadata }),
    );
    return { etag: unquote(out.ETag) };
  }

  async delete(bucket: string, key: string): Promise<void> {
    checkKey(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }
}
