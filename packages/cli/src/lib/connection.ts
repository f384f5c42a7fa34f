// The options every client command shares, and the SDK client built from them.
import { DroverClient } from '@drover/sdk';
import { type Command, Option } from 'commander';
import { type Connection, type ConnectionFlags, resolveConnection } from './profile.js';

export interface CommonFlags extends ConnectionFlags {
  json?: boolean;
}

/** Adds --api-url, --api-key, --profile and --json to a command. */
export function withConnection(cmd: Command): Command {
  return cmd
    .addOption(new Option('--api-url <url>', 'coordinator URL (env KELPIE_API_URL; default: the profile)'))
    .addOption(new Option('--api-key <key>', 'API key (env KELPIE_API_KEY; default: the profile)'))
    .addOption(new Option('--profile <file>', 'profile written by `drover up` (env DROVER_PROFILE; default: the nearest .drover/profile.json here or above)'))
    .addOption(new Option('--admin', "use the admin key `drover up` keeps in its profile (for users and tokens)"))
    .addOption(new Option('--json', 'print JSON instead of a table'));
}

export function connect(flags: ConnectionFlags): { client: DroverClient; connection: Connection } {
  const connection = resolveConnection(flags);
  return { client: new DroverClient({ url: connection.url, key: connection.key }), connection };
}
