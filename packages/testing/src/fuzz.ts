// Shared parts of the property-based HTTP tests: value generators, a raw HTTP sender that sends
// paths and headers exactly as given (fetch would normalize `..` and refuse some bytes), and the
// check of the API's one error shape.
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';

// ---- generators -------------------------------------------------------------------------------

export const unicode = (maxLength: number) => fc.string({ unit: 'binary', maxLength });
/** Strings with lone UTF-16 surrogates, which no database stores as given. */
export const loneSurrogates = fc
  .string({
    unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
    minLength: 1,
    maxLength: 8,
  })
  // A high surrogate followed by a low one is a valid pair (one character, e.g. U+10000): at least
  // one must be alone.
  .filter((s) => /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s));
export const huge = fc
  .tuple(fc.constantFrom('x', 'é', '😀', '\u0000', '"', '\\'), fc.integer({ min: 4_000, max: 300_000 }))
  .map(([c, n]) => c.repeat(n));
/** Over the default body limit of 1 MiB on its own. */
export const overLimit = fc.constantFrom('x', 'é').map((c) => c.repeat(1024 * 1024 + 1));

/** Any value of any type, weighted towards the shapes a field might be confused with. */
export const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.anything(), weight: 4 },
  { arbitrary: unicode(40), weight: 3 },
  { arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }), weight: 1 },
  { arbitrary: loneSurrogates, weight: 1 },
  { arbitrary: fc.integer(), weight: 2 },
  { arbitrary: fc.double(), weight: 1 },
  { arbitrary: fc.boolean(), weight: 1 },
  { arbitrary: fc.constant(null), weight: 1 },
  { arbitrary: fc.array(unicode(10), { maxLength: 4 }), weight: 1 },
  { arbitrary: fc.dictionary(unicode(8), unicode(8), { maxKeys: 3 }), weight: 1 },
  { arbitrary: huge, weight: 1 },
);

/** Path-traversal and path-confusion pieces, alone or joined with random text. */
export const traversal: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '..', '.', '../', '..\\', '../../../../etc/passwd', '/etc/passwd', 'a/../../b', '....//', '%2e%2e/', '..%2f',
    '%252e%252e', '~/', '/', '//server/share', 'C:\\Windows\\System32', 'a/./b', '\u0000', 'a\u0000/../b', '..;/', '.\u2024./',
  ),
  fc.array(fc.oneof(fc.constantFrom('..', '.', '', '%2e%2e', '..\\'), fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/')),
);

/** What `identifier` schemas accept (container group and machine ids): 1-256 code points, no control character, no lone surrogate. */
export function isIdentifier(v: unknown): v is string {
  if (typeof v !== 'string' || v.length === 0) return false;
  const points = [...v].map((ch) => ch.codePointAt(0)!);
  return points.length <= 256 && points.every((c) => c >= 0x20 && (c < 0xd800 || c > 0xdfff));
}

/**
 * A path segment as a client would send it: percent-encoded, with a lone surrogate as its WTF-8
 * bytes (encodeURIComponent would throw), which the server cannot decode.
 */
export function encodeSegment(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    out +=
      c >= 0xd800 && c <= 0xdfff
        ? [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('')
        : encodeURIComponent(ch);
  }
  return out;
}

/** A header value node:http will send: any text, as the latin1 reading of its UTF-8 bytes, minus control characters. */
export const headerText = (s: string) => Buffer.from(s, 'utf8').toString('latin1').replace(/[^\t\x20-\x7e\x80-\xff]/g, '');

// ---- sending ----------------------------------------------------------------------------------

export interface FuzzRequest {
  method: string;
  /** sent as is: not normalized, not encoded */
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface Answer {
  status: number;
  text: string;
  /** undefined when the answer is not JSON */
  json: unknown;
  /** The response headers (send() only). */
  headers?: IncomingHttpHeaders;
}

const parsed = (status: number, text: string): Answer => {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status, text, json };
};

/** One request on a connection of its own (the server may close one after refusing a request); fails without an answer. */
export function send(baseUrl: string, r: FuzzRequest): Promise<Answer> {
  const u = new URL(baseUrl);
  const headers: Record<string, string> = { ...r.headers };
  if (r.body !== undefined) headers['content-length'] = String(Buffer.byteLength(r.body));
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: r.method, path: r.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ ...parsed(res.statusCode!, Buffer.concat(chunks).toString()), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', (e) => reject(new Error(`${r.method} ${r.path.slice(0, 200)}: ${e.message}`)));
    req.end(r.body);
  });
}

/**
 * Bytes written to a fresh connection as they are (malformed HTTP); resolves with the answer once
 * the server closes the connection (send `Connection: close`), or undefined if none came in 5 s.
 * (Half-closing instead would make the server abort the request.)
 */
export function sendRaw(baseUrl: string, bytes: string | Buffer): Promise<Answer | undefined> {
  const u = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(u.port), u.hostname, () => socket.write(bytes));
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})[^\r\n]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(text);
      if (!m) return resolve(undefined);
      const length = /^content-length:\s*(\d+)/im.exec(m[2]!);
      const body = Buffer.from(m[3]!, 'latin1').subarray(0, length ? Number(length[1]) : undefined).toString('utf8');
      resolve(parsed(Number(m[1]), body));
    });
  });
}

// ---- checks -----------------------------------------------------------------------------------

/** The API's error shape: exactly {error, message} plus, for a batch, an integer `index`. */
export function assertApiError(a: Answer, shown: string): void {
  const body = a.json as Record<string, unknown> | undefined;
  assert.ok(body && typeof body === 'object' && !Array.isArray(body), `JSON error body: ${shown}`);
  assert.equal(typeof body.error, 'string', `error is a string: ${shown}`);
  assert.equal(typeof body.message, 'string', `message is a string: ${shown}`);
  const extra = Object.keys(body).filter((k) => k !== 'error' && k !== 'message' && k !== 'index');
  assert.deepEqual(extra, [], `no other keys: ${shown}`);
  if ('index' in body) assert.ok(Number.isInteger(body.index), shown);
}

/** A request and its answer, short enough for an assertion message. */
export const show = (r: FuzzRequest, a: Answer) =>
  `${r.method} ${r.path.slice(0, 200)} ${JSON.stringify(r.headers ?? {}).slice(0, 200)} ${String(r.body ?? '').slice(0, 200)} → ${a.status} ${a.text.slice(0, 300)}`;
