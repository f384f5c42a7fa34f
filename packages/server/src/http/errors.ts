// One error shape for every failure: `{error, message}` with a message that names the field.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance } from 'fastify';

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly error: string,
    message: string,
    readonly index?: number,
  ) {
    super(message);
  }
}

export const notFound = (what = 'job') => new HttpError(404, 'not_found', `${what} not found`);

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  /** set on the errors of a `propertyNames` check: the offending key */
  propertyName?: string;
}

/** "body/command must be string", "body/max_failure is not a known field", "querystring/status must be one of …". */
export function describeValidation(context: string, errors: AjvError[]): { message: string; index?: number } {
  // anyOf/union failures report one error per branch; the most specific one is the most useful
  const e =
    errors.find((x) => x.keyword === 'additionalProperties' || x.keyword === 'required') ??
    errors.find((x) => x.keyword !== 'anyOf' && x.keyword !== 'const') ??
    errors[0]!;
  const path = `${context}${e.instancePath}`;
  const indexMatch = context === 'body' ? /^\/(\d+)(?:\/|$)/.exec(e.instancePath) : null;
  const index = indexMatch ? Number(indexMatch[1]) : undefined;
  let message: string;
  if (e.keyword === 'additionalProperties') {
    message = `${path}/${String(e.params.additionalProperty)} is not a known field`;
  } else if (e.keyword === 'required') {
    message = `${path}/${String(e.params.missingProperty)} is required`;
  } else if (e.keyword === 'const' || e.keyword === 'anyOf') {
    const allowed = errors.filter((x) => x.keyword === 'const').map((x) => JSON.stringify(x.params.allowedValue));
    message = allowed.length === 1 ? `${path} must be ${allowed[0]}`
      : allowed.length ? `${path} must be one of ${allowed.join(', ')}` : `${path} ${e.message ?? 'is invalid'}`;
  } else if (e.keyword === 'propertyNames' || e.propertyName !== undefined) {
    // e.g. environment names: the failing check is on the key, not on a value
    const key = e.propertyName ?? e.params.propertyName;
    const why = e.keyword === 'propertyNames' ? '' : `: ${e.message ?? 'is invalid'}`;
    message = `${path} has an invalid key ${JSON.stringify(key)}${why}`;
  } else {
    message = `${path} ${e.message ?? 'is invalid'}`;
  }
  return index === undefined ? { message } : { message, index };
}

const CLIENT_ERRORS: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'bad_json'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'bad_json'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'bad_request'],
  FST_ERR_CTP_INVALID_TYPE: [400, 'bad_request'],
};

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (headers over 16 KiB, a bad
 * Content-Length or chunk size, a malformed request line): the same `{error, message}` as every
 * other refusal, where Fastify's default adds `statusCode` and names the error differently.
 */
export function clientErrorHandler(err: Error & { code?: string; rawPacket?: unknown }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, error, message]: [number, string, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'request headers exceed the server\'s limit (16 KiB)']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'the request took too long to arrive']
        : [400, 'bad_request', `malformed HTTP request${err.code ? ` (${err.code})` : ''}`];
  // An answer to HEAD has no body (a client would take the body for the next answer); the method
  // is only known if the refused bytes start with the request line, as they do when one read holds it.
  const head = Buffer.isBuffer(err.rawPacket) && err.rawPacket.subarray(0, 5).toString('latin1') === 'HEAD ';
  const body = JSON.stringify({ error, message });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${head ? '' : body}`,
    );
  }
  socket.destroy(err);
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError & { validation?: AjvError[]; validationContext?: string }, req, reply) => {
    if (err instanceof HttpError) {
      return reply
        .code(err.statusCode)
        .send({ error: err.error, message: err.message, ...(err.index !== undefined ? { index: err.index } : {}) });
    }
    if (err.validation) {
      const { message, index } = describeValidation(err.validationContext ?? 'request', err.validation);
      return reply.code(400).send({ error: 'bad_request', message, ...(index !== undefined ? { index } : {}) });
    }
    const known = err.code ? CLIENT_ERRORS[err.code] : undefined;
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = req.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit;
      return reply.code(413).send({ error: 'payload_too_large', message: `request body too large: the limit is ${limit} bytes` });
    }
    if (known) return reply.code(known[0]).send({ error: known[1], message: err.message });
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: 'bad_request', message: err.message });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: 'internal', message: 'internal server error' });
  });

  // Every route's methods and path pattern, so a request with the wrong method on a path that
  // exists is told which methods it has (405 with Allow) rather than that nothing is there.
  const routes: { method: string; path: RegExp }[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) routes.push({ method, path: routePattern(r.url) });
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = [...new Set(routes.filter((r) => r.path.test(path)).map((r) => r.method))];
    if (allowed.length > 0 && !allowed.includes(req.method)) {
      return reply.code(405).header('allow', allowed.join(', ')).send({ error: 'method_not_allowed', message: `${req.method} is not allowed on ${path}: use ${allowed.join(' or ')}` });
    }
    return reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${path}` });
  });
}

/** A Fastify route path (`/jobs/:id`, `/docs/*`) as a regular expression over request paths. */
function routePattern(url: string): RegExp {
  const body = url
    .split('/')
    .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${body}$`);
}
