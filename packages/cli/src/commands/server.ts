import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_DATABASE, startServer } from '@drover/server';

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

export function serverCommand(): Command {
  return new Command('server')
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
    .addOption(
      new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
    )
    .addHelpText(
      'after',
      '\nEnvironment:\n  DROVER_ADMIN_KEY   the admin\'s API key; if unset, a first start generates one and prints it once\n  DROVER_DATABASE    default for --database\n',
    )
    .action(async (o: { port: number; host: string; database: string; allowPrivateWebhooks: boolean; bodyLimit: number; leaseFactor: number; logLevel: string }) => {
      const server = await startServer({
        port: o.port,
        host: o.host,
        database: o.database,
        adminKey: process.env.DROVER_ADMIN_KEY || undefined,
        allowPrivateWebhooks: o.allowPrivateWebhooks,
        bodyLimit: o.bodyLimit,
        leaseFactor: o.leaseFactor,
        logLevel: o.logLevel,
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
      process.stdout.write(`drover coordinator on ${server.url} (store: ${server.store.kind}); API docs at ${server.url}/docs\n`);
    });
}
