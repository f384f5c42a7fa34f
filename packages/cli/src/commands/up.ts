// `drover up` (the whole system on this machine) and `drover demo` (up, then the seeds' demo run).
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type ClusterSettings, type LocalCluster, startLocalCluster, type WorkerLogLine } from '../cluster/local-cluster.js';
import { runDemo } from '../cluster/demo.js';
import { action, paint } from '../lib/output.js';

function wholeNumber(flag: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be a whole number from ${min} to ${max}`);
    return n;
  };
}

const LEVEL_STYLE: Record<number, Parameters<typeof paint>[0]> = { 40: 'yellow', 50: 'red', 60: 'red' };

/** A worker's JSON log line as one short human line: time, machine, message, job and a few fields. */
export function formatWorkerLine(machineId: string, line: WorkerLogLine): string {
  const time = new Date(line.time ?? Date.now()).toTimeString().slice(0, 8);
  const fields = ['job', 'pid', 'code', 'files', 'bytes', 'err']
    .filter((k) => line[k] !== undefined && line[k] !== null)
    .map((k) => `${k}=${k === 'job' ? String(line[k]).slice(0, 8) : String(line[k])}`);
  const text = `${line.msg}${fields.length ? `  ${fields.join(' ')}` : ''}`;
  const style = LEVEL_STYLE[line.level];
  return `${paint('gray', time)} ${paint('cyan', machineId.padEnd(8))} ${style ? paint(style, text) : text}\n`;
}

/** Stops the cluster on the first SIGINT/SIGTERM; a second one exits at once. */
function stopOnSignal(cluster: LocalCluster, what: string): Promise<void> {
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals > 1) process.exit(130);
      process.stderr.write(`\n${signal}: stopping ${what} (the workers release their jobs)...\n`);
      void cluster.stop().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

function clusterOptions(cmd: Command, defaults: { dir: string; port: number }): Command {
  return cmd
    .option('-w, --workers <n>', 'worker processes (with --autoscale: at most this many)', wholeNumber('--workers', 1, 64), 3)
    .option('-p, --port <port>', 'coordinator port (0 = any free port)', wholeNumber('--port', 0, 65535), defaults.port)
    .option('--host <host>', 'address the coordinator listens on', '127.0.0.1')
    .option('--dir <dir>', 'folder for the database, storage, worker data and logs', defaults.dir)
    .option('--group <id>', 'container group the workers serve', 'local')
    .option('--bucket <name>', 'storage bucket the jobs use', 'drover')
    .addOption(new Option('--profile <file>', 'where to write the profile later commands read (default <dir>/profile.json)'));
}

interface ClusterFlags {
  workers: number;
  port: number;
  host: string;
  dir: string;
  group: string;
  bucket: string;
  profile?: string;
}

function clusterSettings(flags: ClusterFlags): ClusterSettings {
  return {
    dir: flags.dir,
    workers: flags.workers,
    port: flags.port,
    host: flags.host,
    containerGroupId: flags.group,
    bucket: flags.bucket,
    profileFile: path.resolve(flags.profile ?? path.join(flags.dir, 'profile.json')),
    jobCwd: process.cwd(),
  };
}

function upCommand(): Command {
  return clusterOptions(
    new Command('up').summary('Run coordinator, storage and N workers on this machine').description(
      'Run the whole system on this machine: a coordinator on SQLite, local-folder storage and N workers. ' +
        'Writes a profile so later commands (submit, status, upload...) need no flags. Ctrl-C stops everything.',
    ),
    { dir: '.drover', port: 8080 },
  )
    .option('-q, --quiet', "don't print the workers' log lines (they are always in <dir>/logs/)")
    .option('--autoscale', 'start no worker now: the autoscaler starts up to --workers when jobs come and stops them when idle')
    .option('--idle-threshold <seconds>', 'with --autoscale, for a new rule: how long a worker stays after the last job ended', wholeNumber('--idle-threshold', 0, 3600), 60)
    .action(
      action('up', async (flags: ClusterFlags & { quiet?: boolean; autoscale?: boolean; idleThreshold: number }) => {
        const cluster = await startLocalCluster({
          ...clusterSettings(flags),
          ...(flags.autoscale ? { autoscale: { idleThresholdSeconds: flags.idleThreshold } } : {}),
          onWorkerLog: flags.quiet ? undefined : (id, line) => process.stdout.write(formatWorkerLine(id, line)),
          onScale: (e) =>
            process.stdout.write(
              `${paint('gray', new Date().toTimeString().slice(0, 8))} ${paint('magenta', 'autoscale')} ${e.kind === 'start' ? 'started' : 'stopping'} worker ${e.machineId} (group "${e.groupId}")\n`,
            ),
        });
        const stopped = stopOnSignal(cluster, 'the cluster');
        const rule = cluster.scalingRule;
        const workers = rule
          ? `autoscaled: ${rule.min_replicas}–${rule.max_replicas} workers in container group "${flags.group}", idle threshold ${rule.idle_threshold_seconds} s`
          : `${flags.workers} worker${flags.workers > 1 ? 's' : ''} in container group "${flags.group}"`;
        process.stdout.write(
          [
            `${paint('bold', 'Drover is up')} (${workers})`,
            `  API        ${cluster.url}`,
            `  dashboard  ${cluster.url}/ui/   (sign in with the key below)`,
            `  API docs   ${cluster.url}/docs`,
            `  API key    ${cluster.key}   (user "${cluster.username}")`,
            `  storage    ${cluster.storage}   (bucket "${flags.bucket}")`,
            `  profile    ${cluster.profileFile}   (drover submit/status/upload... read it)`,
            `  admin key  kept in the profile (admin_key): drover users create NAME --admin`,
            `  jobs run   in ${process.cwd()}   (their sync folders: ${path.resolve(flags.dir, 'workers')}/<worker>/)`,
            `  logs       ${path.resolve(flags.dir, 'logs')}`,
            ...(rule
              ? [
                  rule.provider === 'local'
                    ? `  scaling    drover scaling show ${flags.group}   (drover scaling set ${flags.group} --max 8 to change)`
                    : `  scaling    the group's rule has provider ${rule.provider}: no worker is started here (drover scaling set ${flags.group} --provider local)`,
                ]
              : []),
            'Ctrl-C stops the workers (they release their jobs) and the coordinator.',
            '',
          ].join('\n'),
        );
        await stopped;
        process.stdout.write('stopped\n');
      }),
    );
}

function demoCommand(): Command {
  return clusterOptions(
    new Command('demo').summary("Run the seeds' demo: series-sum jobs survive a kill -9, sums checked").description(
      "Run the seeds' demo end to end on this machine: start a local cluster, upload inputs for series-sum jobs, submit them, " +
        'kill -9 one worker mid-run and start a replacement, show live progress, and check every sum against the closed form. ' +
        'Exits 0 only if every sum is exact.',
    ),
    { dir: path.join('.drover', 'demo'), port: 0 },
  )
    .option('--jobs <n>', 'series-sum jobs', wholeNumber('--jobs', 1, 100), 5)
    .addOption(new Option('--mode <mode>', 'data management: worker (the sync block), app (the Checkpointer) or both, alternating').choices(['worker', 'app', 'both']).default('both'))
    .option('--step <seconds>', 'seconds per summation step', (v) => positive('--step', v), 0.1)
    .option('--steps <n>', 'steps per job', wholeNumber('--steps', 1, 1_000_000), 100)
    .option('--timeout <seconds>', 'give up (exit 1) after this long', (v) => positive('--timeout', v), 110)
    .option('--no-kill', "don't kill a worker mid-run")
    .option('--queue <url>', "run the jobs through this AWS SQS queue (URL or sqs://<name>; it needs a dead-letter queue) instead of the coordinator: the seeds' demo app 2")
    .addHelpText(
      'after',
      '\nWith --queue, the SQS endpoint, region and keys come from the environment (AWS_ENDPOINT_URL_SQS, AWS_ID / AWS_ACCESS_KEY_ID, ...)\n' +
        'and the job records go to the demo\'s bucket. Use a queue of its own: the demo sends its jobs there.\n' +
        '\nExample (a local SQS server: npx fauxqs):\n' +
        '  AWS_ENDPOINT_URL_SQS=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \\\n' +
        '    drover demo --mode app --queue http://sqs.us-east-1.localhost:4566/000000000000/demo\n',
    )
    .action(
      action('demo', async (flags: ClusterFlags & { jobs: number; mode: 'worker' | 'app' | 'both'; step: number; steps: number; timeout: number; kill: boolean; queue?: string }) => {
        const ok = await runDemo({
          ...(flags.queue !== undefined ? { queue: flags.queue } : {}),
          ...clusterSettings(flags),
          jobs: flags.jobs,
          mode: flags.mode,
          stepSeconds: flags.step,
          steps: flags.steps,
          timeoutS: flags.timeout,
          kill: flags.kill,
        });
        process.exit(ok ? 0 : 1);
      }),
    );
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !(n > 0)) throw new InvalidArgumentError(`${flag} must be a number > 0`);
  return n;
}

export function clusterCommands(): Command[] {
  return [upCommand(), demoCommand()];
}
