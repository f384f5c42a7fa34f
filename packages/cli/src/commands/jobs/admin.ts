// drover users create | me | delete, drover tokens create | ls | revoke: accounts (all but
// `users me` need the admin key).
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

/** An admin call about one thing: its 404 says which thing was not there; other refusals as adminError. */
async function adminCall<T>(missing: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof DroverApiError && err.status === 404) throw new CliError(missing);
    if (err instanceof DroverApiError && err.status === 409) throw new CliError(err.message);
    throw adminError(err);
  }
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
  create.addHelpText('after', `\nOutput: the user's id alone on stdout (with --token, then the key on the next line); --json: the user. ${ADMIN_NOTE}\n\nExample:\n  drover users create alice --token\n`);
  create.action(
    action('users create', async (name: string, flags: CommonFlags & { token?: boolean }) => {
      const { client } = connect(flags);
      const user = await client.createUser(name).catch((e: unknown) => Promise.reject(adminError(e)));
      const token = flags.token ? (await client.createToken(user.id).catch((e: unknown) => Promise.reject(adminError(e)))).token : undefined;
      if (flags.json) return printJson(token === undefined ? user : { ...user, token });
      // stdout holds only what a script captures (ID=$(drover users create alice)); words go to stderr.
      process.stdout.write(`${user.id}\n${token !== undefined ? `${token}\n` : ''}`);
      process.stderr.write(
        paint('dim', token !== undefined
          ? `created user ${user.username}: its id, then its API key (${SHOWN_ONCE})\n`
          : `created user ${user.username}; issue its API key with: drover tokens create ${user.id}\n`, process.stderr),
      );
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

  const del = new Command('delete')
    .description('(admin) Delete a user with its API keys, finished jobs and scaling rules (refused while it has pending or running jobs)')
    .argument('<user-id>', "the user's id");
  withConnection(del);
  del.addHelpText('after', `\n${ADMIN_NOTE}\n\nExample:\n  drover users delete 0f6c3a1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f --admin\n`);
  del.action(
    action('users delete', async (userId: string, flags: CommonFlags) => {
      checkUserId(userId);
      const { client } = connect(flags);
      await adminCall(`user ${userId} not found`, () => client.deleteUser(userId));
      if (flags.json) return printJson({ deleted: userId });
      process.stderr.write(paint('dim', `deleted user ${userId}, its API keys and its finished jobs\n`, process.stderr));
    }),
  );

  users.addCommand(create);
  users.addCommand(me);
  users.addCommand(del);
  return users;
}

/** A token's id: given as is (16 hex digits), or taken from a whole token `drv_<id>_<secret>`. */
function tokenIdOf(arg: string): string {
  const m = /^(?:drv_)?([0-9a-f]{16})(?:_[A-Za-z0-9_-]{43})?$/.exec(arg.trim());
  if (!m) throw new CliError(`${JSON.stringify(arg.length > 24 ? `${arg.slice(0, 24)}…` : arg)} is not a token or a token id (16 hex digits, the part after drv_)`, USAGE);
  return m[1]!;
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
      const { token } = await adminCall(`user ${userId} not found`, () => client.createToken(userId));
      if (flags.json) return printJson({ token });
      process.stdout.write(`${token}\n`);
      process.stderr.write(paint('dim', `API key for user ${userId}, ${SHOWN_ONCE}\n`, process.stderr));
    }),
  );
  const ls = new Command('ls').description("(admin) A user's API keys: id and when each was issued (never a secret)").argument('<user-id>', "the user's id");
  withConnection(ls);
  ls.addHelpText('after', `\n${ADMIN_NOTE}\n\nExample:\n  drover tokens ls 0f6c3a1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f --admin\n`);
  ls.action(
    action('tokens ls', async (userId: string, flags: CommonFlags) => {
      checkUserId(userId);
      const { client } = connect(flags);
      const list = await adminCall(`user ${userId} not found`, () => client.listTokens(userId));
      if (flags.json) return printJson(list.tokens);
      process.stdout.write(list.tokens.map((t) => `${t.id}  ${t.created}\n`).join(''));
      process.stderr.write(paint('dim', `${list.tokens.length} key${list.tokens.length === 1 ? '' : 's'}; revoke one with: drover tokens revoke ID\n`, process.stderr));
    }),
  );

  const revoke = new Command('revoke')
    .description('(admin) Revoke an API key: refused at once by this coordinator, by its replicas within 10 s')
    .argument('<token-or-id>', 'the key itself (drv_…) or its id (the 16 hex digits after drv_)');
  withConnection(revoke);
  revoke.addHelpText('after', `\n${ADMIN_NOTE}\n\nExample:\n  drover tokens revoke 3fa85f6457174562 --admin\n`);
  revoke.action(
    action('tokens revoke', async (arg: string, flags: CommonFlags) => {
      const id = tokenIdOf(arg);
      const { client } = connect(flags);
      await adminCall(`no API key with id ${id}`, () => client.revokeToken(id));
      if (flags.json) return printJson({ revoked: id });
      process.stderr.write(paint('dim', `revoked API key ${id}\n`, process.stderr));
    }),
  );

  tokens.addCommand(create);
  tokens.addCommand(ls);
  tokens.addCommand(revoke);
  return tokens;
}
