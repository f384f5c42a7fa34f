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
});
