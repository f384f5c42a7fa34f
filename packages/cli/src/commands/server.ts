import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_DATABASE, startServer, type AutoscalingOptions } from '@drover/server';

/** A whole number in [min, max], checked before anything starts (so the error names the flag). */
function wholeNumber(name: string, min: number, max?: number) {
  const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`${name} must be a whole number ${range}`);
    }
    return n;
  };
}

/** SaladCloud's organization and project names. */
function saladName(flag: string) {
  return (v: string) => {
    if (!/^[a-z][a-z0-9-]{0,61}[a-z0-9]$/.test(v)) throw new InvalidArgumentError(`${flag} must be a SaladCloud name: lower-case letters, digits and -, 2 to 63 characters`);
    return v;
  };
}

function seconds(flag: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !(n >= min) || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number of seconds >= ${min}`);
    return n;
  };
}

interface AutoscaleFlags {
  autoscale: boolean;
  saladApiUrl?: string;
  saladApiKeyFile?: string;
  saladOrganization?: string;
  saladProject?: string;
  autoscaleInterval: number;
  autoscaleLease: number;
}

/** The autoscaler's settings. The SaladCloud key comes from SALAD_API_KEY or a file, never a flag (flags show in `ps`). */
function autoscaling(o: AutoscaleFlags, cmd: Command): AutoscalingOptions {
  let apiKey = process.env.SALAD_API_KEY || undefined;
  if (o.saladApiKeyFile !== undefined) {
    try {
      apiKey = readFileSync(o.saladApiKeyFile, 'utf8').trim();
    } catch (e) {
      cmd.error(`drover ${cmd.name()}: --salad-api-key-file: cannot read ${o.saladApiKeyFile} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { exitCode: 2 });
    }
    if (!apiKey) cmd.error(`drover ${cmd.name()}: --salad-api-key-file: ${o.saladApiKeyFile} is empty`, { exitCode: 2 });
  }
  return {
    enabled: o.autoscale,
    intervalMs: Math.round(o.autoscaleInterval * 1000),
    leaseMs: Math.round(o.autoscaleLease * 1000),
    ...(apiKey
      ? {
          saladcloud: {
            apiKey,
            ...(o.saladApiUrl ? { baseUrl: o.saladApiUrl } : {}),
            ...(o.saladOrganization ? { organization: o.saladOrganization } : {}),
            ...(o.saladProject ? { project: o.saladProject } : {}),
          },
        }
      : {}),
  };
}

/** The autoscaler's flags. */
function autoscaleOptions(cmd: Command): Command {
  return cmd
    .option('--salad-api-url <url>', 'SaladCloud public API (env SALAD_API_URL)', process.env.SALAD_API_URL || undefined)
    .option('--salad-api-key-file <file>', 'read the SaladCloud API key from this file instead of SALAD_API_KEY')
    .option('--salad-organization <name>', 'SaladCloud organization of rules that name none (env SALAD_ORGANIZATION)', saladName('--salad-organization'), process.env.SALAD_ORGANIZATION || undefined)
    .option('--salad-project <name>', 'SaladCloud project of rules that name none (env SALAD_PROJECT)', saladName('--salad-project'), process.env.SALAD_PROJECT || undefined)
    .option('--autoscale-interval <seconds>', 'every scaling rule is evaluated at least this often', seconds('--autoscale-interval', 1), 30)
    .option('--autoscale-lease <seconds>', "how long another coordinator waits before taking over a group whose decider went silent", seconds('--autoscale-lease', 1), 30);
}

export function serverCommand(): Command {
  const cmd = new Command('server')
    .summary('Run the coordinator (SQLite or PostgreSQL)')
    .description('Run the coordinator: the Kelpie-compatible job API, scheduler and webhook sender')
    .option('-p, --port <port>', 'port to listen on', wholeNumber('--port', 0, 65535), 8080)
    .option('--host <host>', 'address to listen on', '0.0.0.0')
    .option(
      '-d, --database <db>',
      'SQLite file path (the embedded default) or a postgres:// URL',
      process.env.DROVER_DATABASE ?? DEFAULT_DATABASE,
    )
    .option('--allow-private-webhooks', 'allow webhook URLs on loopback/private addresses (testing only)', false)
    .option('--body-limit <bytes>', 'largest request body accepted', wholeNumber('--body-limit', 1), 1024 * 1024)
    .option(
      '--lease-factor <n>',
      'a lease lapses after n × the job\'s heartbeat_interval without a heartbeat',
      (v) => {
        const n = Number(v);
        if (!(n >= 1)) throw new InvalidArgumentError('--lease-factor must be a number >= 1');
        return n;
      },
      2,
    )
    .option('--log-cap-mib <MiB>', "MiB of a job's output kept per attempt (later lines are dropped, and the log says so)", wholeNumber('--log-cap-mib', 1, 1024), 10)
    .addOption(
      new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
    )
    .option('--no-autoscale', 'serve the scaling rules but never act on them (another coordinator does)')
    .option('--metrics-host <host>', 'also serve GET /metrics without a key on this address (on the API port it needs the admin key)')
    .option('--metrics-port <port>', 'port of --metrics-host', wholeNumber('--metrics-port', 0, 65535), 9464);
  autoscaleOptions(cmd)
    .addHelpText(
      'after',
      '\nEnvironment:\n  DROVER_ADMIN_KEY   the admin\'s API key; if unset, a first start generates one and prints it once\n  DROVER_DATABASE    default for --database\n' +
        '  SALAD_API_KEY      SaladCloud API key: scaling rules with provider saladcloud start, stop and resize your container groups\n',
    )
    .action(async (o: { port: number; host: string; database: string; allowPrivateWebhooks: boolean; bodyLimit: number; leaseFactor: number; logCapMib: number; logLevel: string; metricsHost?: string; metricsPort: number } & AutoscaleFlags) => {
      const server = await startServer({
        port: o.port,
        host: o.host,
        database: o.database,
        adminKey: process.env.DROVER_ADMIN_KEY || undefined,
        allowPrivateWebhooks: o.allowPrivateWebhooks,
        bodyLimit: o.bodyLimit,
        leaseFactor: o.leaseFactor,
        logCapBytes: o.logCapMib * 1024 * 1024,
        logLevel: o.logLevel,
        autoscaling: autoscaling(o, cmd),
        ...(o.metricsHost ? { metricsListen: { host: o.metricsHost, port: o.metricsPort } } : {}),
      });
      // Handle signals before announcing that we are up: whoever waits for the announcement may
      // signal at once, and an unhandled SIGTERM would kill the process mid-request.
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        server.app.log.info({ signal }, 'shutting down: finishing in-flight requests');
        server.close().then(
          () => process.exit(0),
          (err: Error) => {
            process.stderr.write(`drover: shutdown failed: ${err.message}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      if (server.generatedAdminKey) {
        process.stdout.write(
          `\nAdmin API key (shown once; only its hash is stored):\n\n  ${server.generatedAdminKey}\n\n` +
            'Keep it: it creates users and their keys. Set DROVER_ADMIN_KEY to choose your own.\n\n',
        );
      }
      process.stdout.write(`drover coordinator on ${server.url} (store: ${server.store.kind}); dashboard at ${server.url}/ui/, API docs at ${server.url}/docs\n`);
      process.stdout.write(server.metricsUrl ? `metrics: ${server.metricsUrl} (no key)\n` : 'metrics: GET /metrics with the admin key (or --metrics-host for a listener without one)\n');
      process.stdout.write(`${describeAutoscaling(server.autoscaler.has('saladcloud'), o)}\n`);
    });
  return cmd;
}

/** One line on what this coordinator's autoscaler drives (never the key). */
function describeAutoscaling(salad: boolean, o: AutoscaleFlags): string {
  if (!o.autoscale) return 'autoscaling: off here (--no-autoscale)';
  if (!salad) return 'autoscaling: no SaladCloud API key (SALAD_API_KEY): rules with provider none are evaluated and recorded only';
  const where = o.saladOrganization ? ` (default ${o.saladOrganization}/${o.saladProject ?? '?'})` : '';
  return `autoscaling: SaladCloud container groups${where}, every ${o.autoscaleInterval} s and within moments of new work`;
}
