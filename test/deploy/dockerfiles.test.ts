// The images of deploy/ (docker build cannot run here: no Docker engine): each Dockerfile is
// linted by dockerfile-utils (the checks of the Docker language server) and parsed by
// dockerfile-ast, and the properties docs/saladcloud.md promises are checked: the coordinator's
// image is multi-stage, runs as a non-root user, keeps its database on a volume and has a
// HEALTHCHECK whose command really tells a serving coordinator from a dead one; the worker example
// ADDs the single-file binary to a GPU image and runs it as its command, with no Node.js installed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { DockerfileParser, type Dockerfile, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { REPO_ROOT, freePort, startTestServer, type TestServer } from '@drover/testing/server';

const run = promisify(execFile);

function load(file: string): { text: string; doc: Dockerfile } {
  const text = readFileSync(join(REPO_ROOT, file), 'utf8');
  return { text, doc: DockerfileParser.parse(text) };
}

/** The instructions after the last FROM (what the image runs with). */
function finalStage(doc: Dockerfile): Instruction[] {
  const all = doc.getInstructions();
  const lastFrom = all.map((i) => i.getKeyword()).lastIndexOf('FROM');
  return all.slice(lastFrom);
}

const args = (i: Instruction) => i.getArguments().map((a) => a.getValue());
/** An exec-form (JSON array) instruction's strings. */
const execForm = (i: Instruction): string[] => JSON.parse(i.getArgumentsContent() ?? '[]') as string[];
const flags = (i: Instruction): Record<string, string | null> =>
  Object.fromEntries(((i as unknown as { getFlags?: () => { getName(): string; getValue(): string | null }[] }).getFlags?.() ?? []).map((f) => [f.getName(), f.getValue()]));
const one = (stage: Instruction[], keyword: string): Instruction => {
  const found = stage.filter((i) => i.getKeyword() === keyword);
  assert.equal(found.length, 1, `exactly one ${keyword}`);
  return found[0]!;
};

for (const file of ['deploy/coordinator/Dockerfile', 'deploy/worker/Dockerfile']) {
  it(`${file} has no problem the Docker language server's checks find`, () => {
    const problems = validate(load(file).text);
    assert.deepEqual(problems.map((p) => `line ${p.range.start.line + 1}: ${p.message}`), []);
  });
}

describe('the coordinator image (deploy/coordinator/Dockerfile)', () => {
  const { doc } = load('deploy/coordinator/Dockerfile');
  const stage = finalStage(doc);
  let server: TestServer;
  before(async () => {
    server = await startTestServer('sqlite');
  });
  after(() => server?.close());

  it('is built in a build stage and run from a slim Node 20 stage that copies only from it, with no compiler or install', () => {
    const froms = doc.getFROMs();
    assert.equal(froms.length, 2);
    assert.equal(froms[0]!.getBuildStage(), 'build');
    for (const f of froms) assert.match(f.getImageName() ?? '', /^node$/);
    assert.match(froms[1]!.getImageTag() ?? '', /^20-.*slim$/);
    const build = doc.getInstructions().slice(0, doc.getInstructions().indexOf(froms[1]!));
    const buildRuns = build.filter((i) => i.getKeyword() === 'RUN').map((i) => i.getArgumentsContent() ?? '').join('\n');
    assert.match(buildRuns, /npm ci\b/);
    assert.match(buildRuns, /npm prune --omit=dev/);
    // What the build stage copies from the context exists in the repository, and .dockerignore keeps node_modules out.
    for (const copy of build.filter((i) => i.getKeyword() === 'COPY')) {
      for (const src of args(copy).slice(0, -1)) assert.ok(existsSync(join(REPO_ROOT, src)), `COPY source ${src} exists`);
    }
    assert.match(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'), /^\*\*\/node_modules$/m);
    const finalCopies = stage.filter((i) => i.getKeyword() === 'COPY');
    assert.ok(finalCopies.length > 0);
    for (const c of finalCopies) assert.equal(flags(c).from, 'build', `${c.getArgumentsContent()} comes from the build stage`);
    assert.ok(!stage.some((i) => i.getKeyword() === 'RUN' && /apt-get install|g\+\+|npm (ci|install)/.test(i.getArgumentsContent() ?? '')), 'no compiler or install in the run stage');
  });

  it('runs as a non-root user with the SQLite database on a volume', () => {
    const user = args(one(stage, 'USER'))[0]!;
    assert.ok(!['root', '0', '0:0'].includes(user), `USER ${user} is not root`);
    const env = stage.filter((i) => i.getKeyword() === 'ENV').map((i) => i.getArgumentsContent() ?? '').join(' ');
    const database = /DROVER_DATABASE=(\S+)/.exec(env)?.[1];
    assert.ok(database, 'DROVER_DATABASE is set');
    const volumes = execForm(one(stage, 'VOLUME'));
    assert.ok(volumes.includes(posix.dirname(database)), `the database's folder ${posix.dirname(database)} is a VOLUME (${volumes.join(', ')})`);
    // The folder is made and handed to that user before USER, so the volume starts out writable by it.
    const runs = stage.filter((i) => i.getKeyword() === 'RUN').map((i) => i.getArgumentsContent() ?? '').join('\n');
    assert.match(runs, new RegExp(`chown ${user}(:\\S+)? ${posix.dirname(database)}`));
  });

  it('starts drover server on the exposed port, and its HEALTHCHECK command passes on a serving coordinator and fails on a dead one', async () => {
    const entry = execForm(one(stage, 'ENTRYPOINT'));
    const cmd = execForm(one(stage, 'CMD'));
    assert.deepEqual(entry, ['node', '/opt/drover/packages/cli/bin/drover.js']);
    assert.equal(cmd[0], 'server');
    const port = cmd[cmd.indexOf('--port') + 1];
    assert.equal(cmd[cmd.indexOf('--host') + 1], '0.0.0.0');
    assert.deepEqual(args(one(stage, 'EXPOSE')), [port]);

    const check = one(stage, 'HEALTHCHECK');
    const probe = JSON.parse(/CMD\s+(\[.*\])\s*$/s.exec(check.getArgumentsContent() ?? '')![1]!) as string[];
    assert.equal(probe[0], 'node');
    const script = probe[2]!;
    assert.ok(script.includes(`http://127.0.0.1:${port}/healthz`), `the probe asks /healthz on port ${port}`);
    // The same script, pointed at a real coordinator and at a port nobody listens on.
    const at = (url: string) => run(process.execPath, [probe[1]!, script.replace(`http://127.0.0.1:${port}`, url)]).then(() => 0, (e: { code: number }) => e.code);
    assert.equal(await at(server.url), 0);
    assert.equal(await at(`http://127.0.0.1:${await freePort()}`), 1);
  });
});

describe('the worker example (deploy/worker/Dockerfile)', () => {
  const { doc } = load('deploy/worker/Dockerfile');
  const stage = finalStage(doc);

  it("ADDs the drover-worker binary to the user's image and runs it as the image's command, installing no Node.js", () => {
    assert.equal(doc.getFROMs().length, 1);
    assert.equal(doc.getFROMs()[0]!.getImageName(), '${BASE_IMAGE}');
    assert.ok(doc.getInitialARGs().some((a) => a.getProperty()?.getName() === 'BASE_IMAGE'), 'the base image is a build argument');
    const add = one(stage, 'ADD');
    assert.deepEqual(args(add), ['drover-worker', '/drover-worker']);
    assert.equal(flags(add).chmod, '755');
    assert.deepEqual(execForm(one(stage, 'CMD')), ['/drover-worker']);
    assert.ok(!stage.some((i) => i.getKeyword() === 'RUN'), 'nothing is installed: no node, no npm, no compiler');
  });
});
