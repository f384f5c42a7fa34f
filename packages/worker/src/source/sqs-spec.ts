// Where an SQS queue is, as a user writes it: parsed without loading the AWS SDK, so the worker's
// settings are checked (and `drover worker --help` shown) before anything heavy loads.

export class SqsSettingError extends Error {
  override name = 'SqsSettingError';
}

/** A queue as written by the user: its URL, or only its name (`sqs://<name>`) to look up. */
export interface QueueSpec {
  url?: string;
  name: string;
  /** The region the URL names (sqs.<region>.amazonaws.com, or a loopback sqs.<region>.localhost). */
  region?: string;
}

const QUEUE_NAME = /^[A-Za-z0-9_-]{1,80}$|^[A-Za-z0-9_-]{1,75}\.fifo$/;
const SPEC_HELP = 'an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>) or sqs://<name>';

/** Parses `https://…/<account>/<name>`, `http://…` (a loopback server), `sqs://<name>` or `sqs://<host>/<account>/<name>` (https). */
export function parseQueueSpec(spec: string): QueueSpec {
  const s = spec.trim();
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new SqsSettingError(`${JSON.stringify(spec)} is not ${SPEC_HELP}`);
  }
  if (u.protocol === 'sqs:' && (u.pathname === '' || u.pathname === '/')) {
    if (!QUEUE_NAME.test(u.hostname)) throw new SqsSettingError(`${JSON.stringify(spec)}: ${JSON.stringify(u.hostname)} is not an SQS queue name (letters, digits, - and _, at most 80; .fifo for a FIFO queue)`);
    // URL lower-cases the host; queue names are case-sensitive.
    return { name: s.slice('sqs://'.length).replace(/\/$/, '') };
  }
  if (u.protocol === 'sqs:') u = new URL(`https://${s.slice('sqs://'.length)}`);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new SqsSettingError(`${JSON.stringify(spec)} is not ${SPEC_HELP}`);
  const parts = u.pathname.split('/').filter((p) => p !== '');
  const name = parts.at(-1) ?? '';
  if (parts.length !== 2 || !QUEUE_NAME.test(name) || u.search !== '' || u.username !== '') {
    throw new SqsSettingError(`${JSON.stringify(spec)} is not ${SPEC_HELP}`);
  }
  const region = /^sqs\.([a-z0-9-]+)\./.exec(u.hostname)?.[1] ?? /^([a-z]{2}(?:-[a-z]+)+-\d)\.queue\.amazonaws\.com$/.exec(u.hostname)?.[1];
  return { url: `${u.origin}${u.pathname.replace(/\/$/, '')}`, name, ...(region ? { region } : {}) };
}

/** AWS_REGION (or AWS_DEFAULT_REGION) for SQS when the queue URL names no region; R2's "auto" is no SQS region. */
export function sqsFallbackRegion(env: NodeJS.ProcessEnv): string | undefined {
  return [env.AWS_REGION, env.AWS_DEFAULT_REGION].map((r) => r?.trim()).find((r) => r !== undefined && r !== '' && r !== 'auto');
}
