// drover users create | me, drover tokens create: accounts (creating them needs the admin key).
import { DroverApiError } from '@drover/sdk';
import { Command } from 'commander';
import { connect, withConnection, type CommonFlags } from '../../lib/connection.js';
import { CliError, action, paint, printJson } from '../../lib/output.js';
import { USAGE, describeRejection } from './common.js';

const ADMIN_NOTE = 'Needs the admin key (--api-key, KELPIE_API_KEY or the profile of `drover up`).';
const SHOWN_ONCE = 'shown once: only its hash is kept';

function adminError(err: unknown): unknown {
  if (err instanceof DroverApiError && err.status === 400) return new CliError(describeRejection(err, false));
  if (err instanceof DroverApiError && err.status === 403 && /admin/i.test(err.message)) {
    return new CliError("this needs the admin key; the key given is a user's (HTTP 403)");
  }
  return err;
}

function checkUserId(id: string): void {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
    throw new CliError(`${JSON.stringify(id)} is not a user id (a UUID; \`drover users create\` prints it)`, USAGE);
  }
}

export function usersCommand(): Command {
  const users = new Command('users').description('User accounts');

  const create = new Command('create')
    .description('(admin) Create a user')
    .argument('<name>', 'user name: letters, digits, . _ @ -')
    .option('--token', `also issue the user's API key (${SHOWN_ONCE})`);
  withConnection(create);
  create.addHelpText('after', `\n${ADMIN_NOTE}\n\nExample:\n  drover users create alice --token\n`);
  create.action(
    action('users create', async (name: string, flags: CommonFlags & { token?: boolean }) => {
      const { client } = connect(flags);
      const user = await client.createUser(name).catch((e: unknown) => Promise.reject(adminError(e)));
      const token = flags.token ? (await client.createToken(user.id).catch((e: unknown) => Promise.reject(adminError(e)))).token : undefined;
      if (flags.json) return printJson(token === undefined ? user : { ...user, token });
      process.stdout.write(`created user ${user.username}\nid    ${user.id}\n`);
      if (token !== undefined) {
        process.stdout.write(`token ${token}\n`);
        process.stderr.write(paint('dim', `the token is ${SHOWN_ONCE}\n`, process.stderr));
      } else {
        process.stderr.write(paint('dim', `issue its API key with: drover tokens create ${user.id}\n`, process.stderr));
      }
    }),
  );

  const me = new Command('me').description('The user your API key belongs to');
  withConnection(me);
  me.action(
    action('users me', async (flags: CommonFlags) => {
      const { client } = connect(flags);
      const user = await client.me();
      if (flags.json) return printJson(user);
      process.stdout.write(`${user.username}${user.admin ? ' (admin)' : ''}\nid      ${user.id}\ncreated ${user.created}\n`);
    }),
  );

  users.addCommand(create);
  users.addCommand(me);
  return users;
}

export function tokensCommand(): Command {
  const tokens = new Command('tokens').description('API keys');
  const create = new Command('create')
    .description(`(admin) Issue an API key for a user; printed once (${SHOWN_ONCE})`)
    .argument('<user-id>', 'the user\'s id');
  withConnection(create);
  create.addHelpText('after', `\nOutput: the key alone on stdout (--json: {"token": ...}). ${ADMIN_NOTE}\n\nExample:\n  drover tokens create 0f6c3a1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f\n`);
  create.action(
    action('tokens create', async (userId: string, flags: CommonFlags) => {
      checkUserId(userId);
      const { client } = connect(flags);
      let token: string;
      try {
        ({ token } = await client.createToken(userId));
      } catch (err) {
        if (err instanceof DroverApiError && err.status === 404) throw new CliError(`user ${userId} not found`);
        throw adminError(err);
      }
      if (flags.json) return printJson({ token });
      process.stdout.write(`${token}\n`);
      process.stderr.write(paint('dim', `API key for user ${userId}, ${SHOWN_ONCE}\n`, process.stderr));
    }),
  );
  tokens.addCommand(create);
  return tokens;
}
