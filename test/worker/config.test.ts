// The worker's settings: Kelpie's variables, the seeds' Cloudflare aliases, flags over variables,
// and errors that name the setting.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { WORKER_SETTINGS, WorkerConfigError, optionName, resolveWorkerConfig } from '@drover/worker';

const required = { KELPIE_API_URL: 'http://127.0.0.1:8080', KELPIE_API_KEY: 'k', SALAD_CONTAINER_GROUP_ID: 'g' };

describe('worker configuration', () => {
  it('reads the Kelpie environment and applies the defaults', () => {
    const c = resolveWorkerConfig({}, { ...required, SALAD_MACHINE_ID: 'm-1', MAX_JOB_FAILURES: '7', KELPIE_RECREATE_BETWEEN_JOBS: 'true', DROVER_DATA_ROOT: '/tmp/dr' });
    assert.equal(c.apiUrl, 'http://127.0.0.1:8080');
    assert.equal(c.machineId, 'm-1');
    assert.equal(c.saladMachineId, 'm-1');
    assert.equal(c.maxJobFailures, 7);
    assert.equal(c.recreateBetweenJobs, true);
    assert.equal(c.maxRetries, 3);
    assert.equal(c.maxTimeWithNoWorkS, 0);
    assert.equal(c.inputDir, '/tmp/dr/input');
    assert.equal(c.checkpointDir, '/tmp/dr/checkpoint');
    assert.equal(c.stateFile, '/tmp/dr/.drover/kelpie-state.json');
    assert.equal(c.storage.storage, 's3');
    assert.equal(c.imdsUrl, 'http://169.254.169.254');
  });

  it('defaults MAX_JOB_FAILURES to 5 and gives a local machine id off SaladCloud', () => {
    const c = resolveWorkerConfig({}, { ...required, SALAD_MACHINE_ID: 'LOCAL' });
    assert.equal(c.maxJobFailures, 5);
    assert.equal(c.saladMachineId, 'LOCAL');
    assert.match(c.machineId, /^local-.+-\d+$/);
  });

  it('takes the Cloudflare variables of the seeds as aliases, AWS ones first', () => {
    const cf = { CLOUDFLARE_URL: 'https://acct.r2.cloudflarestorage.com', CLOUDFLARE_REGION: 'auto', CLOUDFLARE_ID: 'id', CLOUDFLARE_KEY: 'secret' };
    const c = resolveWorkerConfig({}, { ...required, ...cf });
    assert.deepEqual(c.storage, { storage: 's3', endpoint: 'https://acct.r2.cloudflarestorage.com', region: 'auto', accessKeyId: 'id', secretAccessKey: 'secret' });
    const both = resolveWorkerConfig({}, { ...required, ...cf, AWS_ENDPOINT_URL: 'http://127.0.0.1:9000', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' });
    assert.equal(both.storage.endpoint, 'http://127.0.0.1:9000');
    assert.equal(both.storage.accessKeyId, 'a');
  });

  it('lets a flag win over its variable', () => {
    const c = resolveWorkerConfig({ maxRetries: '9', apiUrl: 'http://other:1' }, { ...required, MAX_RETRIES: '2' });
    assert.equal(c.maxRetries, 9);
    assert.equal(c.apiUrl, 'http://other:1');
  });

  it('reads an API URL without a scheme as https, as Kelpie\'s docs write it', () => {
    assert.equal(resolveWorkerConfig({}, { ...required, KELPIE_API_URL: 'kelpie.saladexamples.com' }).apiUrl, 'https://kelpie.saladexamples.com');
  });

  it('names the setting in every error', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ MAX_RETRIES: 'abc' }, /MAX_RETRIES \(--max-retries\) must be a whole number/],
      [{ MAX_JOB_FAILURES: '0' }, /MAX_JOB_FAILURES .* >= 1/],
      [{ KELPIE_RECREATE_BETWEEN_JOBS: 'maybe' }, /KELPIE_RECREATE_BETWEEN_JOBS .* true or false/],
      [{ DROVER_LOG_LEVEL: 'loud' }, /DROVER_LOG_LEVEL .* one of/],
      [{ KELPIE_API_URL: 'ftp://x' }, /KELPIE_API_URL .* http\(s\) URL/],
      [{ AWS_ACCESS_KEY_ID: 'only-the-id' }, /--s3-access-key-id and --s3-secret-access-key/],
    ];
    for (const [env, re] of bad) assert.throws(() => resolveWorkerConfig({}, { ...required, ...env }), (e: Error) => e instanceof WorkerConfigError && re.test(e.message), JSON.stringify(env));
    assert.throws(() => resolveWorkerConfig({}, {}), /--api-url \(or KELPIE_API_URL\).*--api-key.*--container-group-id/);
    assert.throws(() => resolveWorkerConfig({ pollInterval: '0' }, required), /--poll-interval must be a number >= 0.1/);
  });

  it("reads Kelpie's file-watcher variables in milliseconds, as Kelpie does, beside Drover's own names in seconds", () => {
    const d = resolveWorkerConfig({}, required);
    assert.deepEqual([d.settleS, d.maxWaitS, d.scanIntervalS], [1, 5, 0.5], 'defaults: settle 1 s, max-wait 5 s, scans every 0.5 s');
    const k = resolveWorkerConfig({}, { ...required, FILE_WATCHER_MAX_WAIT_MS: '2500', FILE_WATCHER_STABILITY_CHECK_MS: '100', FILE_WATCHER_DEBOUNCE_MS: '200' });
    assert.equal(k.maxWaitS, 2.5);
    assert.equal(k.scanIntervalS, 0.1);
    assert.equal(k.settleS, 0.5, "Kelpie's quiet time: the debounce, then 3 unchanged checks");
    assert.equal(resolveWorkerConfig({}, { ...required, FILE_WATCHER_STABILITY_CHECK_MS: '50' }).settleS, 0.15, "Kelpie's defaults: debounce 0, 3 × 50 ms");
    const both = resolveWorkerConfig({}, { ...required, FILE_WATCHER_MAX_WAIT_MS: '2500', DROVER_SYNC_MAX_WAIT_S: '9', FILE_WATCHER_DEBOUNCE_MS: '200', DROVER_SYNC_SETTLE_S: '2' });
    assert.equal(both.maxWaitS, 2.5, "Kelpie's name first");
    assert.equal(both.settleS, 2, 'an explicit settle time wins over the derived one');
    assert.equal(resolveWorkerConfig({}, { ...required, DROVER_SYNC_MAX_WAIT_S: '9' }).maxWaitS, 9);
    assert.equal(resolveWorkerConfig({ maxWait: '0.25' }, { ...required, FILE_WATCHER_MAX_WAIT_MS: '2500' }).maxWaitS, 0.25, 'the flag is in seconds and wins');
    assert.equal(resolveWorkerConfig({}, { ...required, DROVER_SYNC_SCAN_INTERVAL_S: '0.2' }).settleS, 1, "Drover's scan interval leaves the settle time alone");
    assert.throws(() => resolveWorkerConfig({}, { ...required, FILE_WATCHER_MAX_WAIT_MS: 'soon' }), /FILE_WATCHER_MAX_WAIT_MS \(--max-wait\) must be a number >= 0 \(ms\)/);
    assert.throws(() => resolveWorkerConfig({}, { ...required, FILE_WATCHER_STABILITY_CHECK_MS: '5' }), /FILE_WATCHER_STABILITY_CHECK_MS \(--scan-interval\) must be a number >= 20 \(ms\)/);
  });

  it("reads Kelpie's HEARTBEAT_INTERVAL_S as the idle poll interval, and DROVER_IMDS_URL=off as no IMDS", () => {
    assert.equal(resolveWorkerConfig({}, { ...required, HEARTBEAT_INTERVAL_S: '4' }).pollIntervalS, 4);
    assert.equal(resolveWorkerConfig({}, { ...required, DROVER_IMDS_URL: 'off' }).imdsUrl, 'off');
  });

  it('says that a SaladCloud key does not authenticate with a Drover coordinator', () => {
    assert.throws(() => resolveWorkerConfig({}, { KELPIE_API_URL: 'http://x', SALAD_CONTAINER_GROUP_ID: 'g', SALAD_API_KEY: 's', SALAD_PROJECT: 'p' }), /--api-key \(or KELPIE_API_KEY\).*SALAD_API_KEY \/ SALAD_PROJECT authenticate with Kelpie's hosted API only/);
  });

  it('resolves relative folders against the working directory', () => {
    const c = resolveWorkerConfig({ dataRoot: 'rel/root' }, required);
    assert.equal(c.dataRoot, path.resolve('rel/root'));
  });

  it('has one flag per setting, each with a variable', () => {
    const names = WORKER_SETTINGS.map((s) => optionName(s.flag));
    assert.equal(new Set(names).size, names.length);
    for (const s of WORKER_SETTINGS) assert.ok(s.env.length > 0, s.flag);
    assert.equal(optionName('--max-time-with-no-work <s>'), 'maxTimeWithNoWork');
  });

  const queueUrl = 'https://sqs.us-east-2.amazonaws.com/123456789012/rx-test.fifo';

  it('takes jobs from an SQS queue without a coordinator, with the seeds\' demo app 2 variables', () => {
    const c = resolveWorkerConfig({}, { QUEUE_URL: queueUrl, AWS_ID: 'id', AWS_KEY: 'key', DROVER_SQS_STATUS_BUCKET: 'b', CLOUDFLARE_ID: 'r2id', CLOUDFLARE_KEY: 'r2key', CLOUDFLARE_REGION: 'auto' });
    assert.equal(c.apiUrl, '');
    assert.equal(c.sqs?.queue, queueUrl);
    assert.equal(c.sqs?.statusBucket, 'b');
    assert.equal(c.sqs?.statusPrefix, undefined);
    assert.equal(c.sqs?.visibilityCapS, 43_200);
    assert.deepEqual([c.sqs?.connection.accessKeyId, c.sqs?.connection.secretAccessKey], ['id', 'key']);
    // R2's "auto" region is no SQS region: the queue URL's region is used instead.
    assert.equal(c.sqs?.connection.fallbackRegion, undefined);
    assert.deepEqual([c.storage.accessKeyId, c.storage.region], ['r2id', 'auto']);
    const flags = resolveWorkerConfig({ queue: 'sqs://jobs', sqsStatusPrefix: 'status', sqsVisibilityCap: '60' }, { DROVER_SQS_STATUS_BUCKET: 'b', AWS_REGION: 'eu-west-1' });
    assert.deepEqual([flags.sqs?.queue, flags.sqs?.statusPrefix, flags.sqs?.visibilityCapS, flags.sqs?.connection.fallbackRegion], ['sqs://jobs', 'status/', 60, 'eu-west-1']);
  });

  it('needs a status bucket and a queue it can read with --queue, and the coordinator settings only without it', () => {
    assert.throws(() => resolveWorkerConfig({}, { DROVER_SQS_QUEUE_URL: queueUrl }), /missing required setting: --sqs-status-bucket/);
    assert.throws(() => resolveWorkerConfig({}, { DROVER_SQS_QUEUE_URL: 'https://example.com/not-a-queue', DROVER_SQS_STATUS_BUCKET: 'b' }), /DROVER_SQS_QUEUE_URL .*is not an SQS queue URL/);
    assert.throws(() => resolveWorkerConfig({ queue: 'sqs://bad name' }, { DROVER_SQS_STATUS_BUCKET: 'b' }), (e: unknown) => e instanceof WorkerConfigError && /--queue/.test(e.message));
    assert.throws(() => resolveWorkerConfig({}, { DROVER_SQS_QUEUE_URL: queueUrl, DROVER_SQS_STATUS_BUCKET: 'b', AWS_ID: 'only' }), /--sqs-access-key-id and --sqs-secret-access-key/);
    assert.throws(() => resolveWorkerConfig({}, {}), /--api-url .*--api-key .*--container-group-id/);
  });
});
