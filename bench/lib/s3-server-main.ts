// Child process of s3-server.ts: fauxqs on 127.0.0.1 and a random port.
import { readdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { setPriority } from 'node:os';
import { buildApp } from 'fauxqs';

const nice = Number(process.argv.find((a) => a.startsWith('--nice='))?.slice('--nice='.length) ?? 0);
// Linux keeps a niceness per thread: set it on every thread there is (the V8 and libuv threads
// created later inherit it from the thread that starts them).
if (nice > 0) {
  for (const tid of readdirSync('/proc/self/task')) setPriority(Number(tid), nice);
}
const app = buildApp({ logger: false });
if (process.argv.includes('--rclone-shim')) {
  // rclone's CompleteMultipartUpload body, which fauxqs 1.9.2 misreads in two ways: Go's
  // encoding/xml writes the ETags' quotes as `&#34;` (fauxqs only unescapes `&quot;`), and
  // aws-sdk-go emits each part's <PartNumber> and <ETag> in either order (fauxqs reads only the
  // order of the first part and silently drops the others, so the object comes out short). Each
  // <Part> is rewritten as <PartNumber> then <ETag> with plain quotes. It touches one small XML body
  // per upload, costs nothing measurable and applies to both clients alike.
  app.addHook('preValidation', (req, _reply, done) => {
    const query = req.query as Record<string, string | undefined>;
    if (req.method === 'POST' && query.uploadId !== undefined && Buffer.isBuffer(req.body)) {
      const xml = req.body.toString('utf8').replace(/<Part>([\s\S]*?)<\/Part>/g, (whole, inner: string) => {
        const n = /<PartNumber>(\d+)<\/PartNumber>/.exec(inner)?.[1];
        const etag = /<ETag>([\s\S]*?)<\/ETag>/.exec(inner)?.[1];
        if (n === undefined || etag === undefined) return whole;
        return `<Part><PartNumber>${n}</PartNumber><ETag>${etag.replace(/&#(34|x22);/gi, '&quot;')}</ETag></Part>`;
      });
      req.body = Buffer.from(xml);
    }
    done();
  });
}
await app.listen({ port: 0, host: '127.0.0.1' });
process.send?.({ port: (app.server.address() as AddressInfo).port });
process.on('disconnect', () => {
  void app.close().finally(() => process.exit(0));
});
