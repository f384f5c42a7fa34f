// drover scaling set | ls | show | rm: a container group's scaling rule and the decisions taken on
// it. All HTTP goes through the SDK's DroverClient.
import { DroverApiError, type DroverClient } from '@drover/sdk';
import { SCALING_PROVIDERS, type CreateScalingRuleBody, type PatchScalingRuleBody, type ScalingDecision, type ScalingRule } from '@drover/protocol';
import { Command, Option } from 'commander';
import { connect, withConnection, type CommonFlags } from '../lib/connection.js';
import { CliError, action, formatTable, paint, printJson } from '../lib/output.js';
import { USAGE, ago, truncate, usageErrors, wholeNumber } from './jobs/common.js';

/** Each flag of `set` and the rule field it sets. */
const FLAGS = {
  min: 'min_replicas',
  max: 'max_replicas',
  idleThreshold: 'idle_threshold_seconds',
  jobsPerReplica: 'jobs_per_replica',
  cooldown: 'cooldown_seconds',
  provider: 'provider',
  org: 'org_name',
  project: 'project_name',
  saladGroup: 'container_group_name',
} as const;
const FLAG_NAMES: Record<string, string> = {
  min_replicas: '--min',
  max_replicas: '--max',
  idle_threshold_seconds: '--idle-threshold',
  jobs_per_replica: '--jobs-per-replica',
  cooldown_seconds: '--cooldown',
  provider: '--provider',
  org_name: '--org',
  project_name: '--project',
  container_group_name: '--salad-group',
  enabled: '--enable/--disable',
};

interface SetFlags extends CommonFlags {
  min?: number;
  max?: number;
  idleThreshold?: number;
  jobsPerReplica?: number;
  cooldown?: number;
  provider?: (typeof SCALING_PROVIDERS)[number];
  org?: string;
  project?: string;
  saladGroup?: string;
  enable?: boolean;
  disable?: boolean;
}

export function scalingCommands(): Command[] {
  const scaling = new Command('scaling').description('Autoscaling: a container group\'s scaling rule and its decisions');
  scaling.addCommand(setCommand());
  scaling.addCommand(listCommand());
  scaling.addCommand(showCommand());
  scaling.addCommand(rmCommand());
  return [usageErrors(scaling)];
}

/** The group named, or the profile's (`drover up` writes it); a usage error if neither. */
function groupOf(group: string | undefined, connection: ReturnType<typeof connect>['connection']): string {
  const g = group ?? connection.profile?.container_group_id;
  if (g === undefined) throw new CliError('name the container group (the profile names none)', USAGE);
  return g;
}

/** A 400 as one line naming the flag: "body/min_replicas (5) must not …" → "--min (5) must not …". */
function rejected(err: unknown): unknown {
  if (!(err instanceof DroverApiError) || err.status !== 400) return err;
  const text = err.message.replace(/body\/([a-z_]+)/g, (_m, f: string) => FLAG_NAMES[f] ?? f).replace(/the rule's ([a-z_]+)/g, (_m, f: string) => `the rule's ${f} (${FLAG_NAMES[f] ?? f})`);
  return new CliError(`${text} (rejected by the coordinator)`, USAGE);
}

function notFound(err: unknown, group: string): unknown {
  if (err instanceof DroverApiError && err.status === 404) return new CliError(`container group ${group} has no scaling rule (drover scaling set ${group} --max N makes one)`);
  return err;
}

function setCommand(): Command {
  const count = (flag: string, min: number, max: number) => wholeNumber(flag, min, max);
  const cmd = new Command('set')
    .description('Create or change the scaling rule of a container group (only the flags given change)')
    .argument('[group]', "container group id (default: the profile's)")
    .option('--min <n>', 'fewest replicas, also with no work (new rule: 0)', count('--min', 0, 500))
    .option('--max <n>', 'most replicas (new rule: 100)', count('--max', 0, 500))
    .option('--idle-threshold <seconds>', 'a replica stays this long after a job ended (new rule: 300)', count('--idle-threshold', 0, 3600))
    .option('--jobs-per-replica <n>', 'jobs one replica works through (new rule: 1)', count('--jobs-per-replica', 1, 1000))
    .option('--cooldown <seconds>', 'no scale-down sooner than this after a change (new rule: 0)', count('--cooldown', 0, 3600))
    .addOption(new Option('--provider <provider>', "what it drives (new rule: the coordinator's default)").choices(SCALING_PROVIDERS))
    .option('--org <name>', 'SaladCloud organization (provider saladcloud)')
    .option('--project <name>', 'SaladCloud project (provider saladcloud)')
    .option('--salad-group <name>', "SaladCloud container group name (default: found by the group's id)")
    .option('--enable', 'enable the rule (also one the autoscaler disabled)')
    .option('--disable', 'pause the rule');
  withConnection(cmd);
  cmd.addHelpText(
    'after',
    '\nExamples:\n  drover scaling set local --max 8 --idle-threshold 120\n' +
      '  drover scaling set 9c0e5e2a-4b6f-4d1a-8f2e-3a7b5c9d1e0f --provider saladcloud --org acme --project training --max 20\n',
  );
  cmd.action(
    action('scaling set', async (group: string | undefined, flags: SetFlags) => {
      if (flags.enable && flags.disable) throw new CliError('--enable and --disable cannot go together', USAGE);
      if (flags.min !== undefined && flags.max !== undefined && flags.min > flags.max) throw new CliError(`--min (${flags.min}) must not be greater than --max (${flags.max})`, USAGE);
      const { client, connection } = connect(flags);
      const g = groupOf(group, connection);
      const fields: PatchScalingRuleBody = {};
      for (const [flag, field] of Object.entries(FLAGS)) {
        const v = flags[flag as keyof typeof FLAGS];
        if (v !== undefined) (fields as Record<string, unknown>)[field] = v;
      }
      if (flags.enable || flags.disable) fields.enabled = flags.enable === true;
      const rule = await setRule(client, g, fields).catch((e: unknown) => Promise.reject(rejected(e)));
      if (flags.json) return printJson(rule);
      process.stdout.write(describeRule(rule));
    }),
  );
  return cmd;
}

/** PATCH the rule if there is one, else create it. */
export async function setRule(client: DroverClient, group: string, fields: PatchScalingRuleBody): Promise<ScalingRule> {
  try {
    await client.getScalingRule(group);
  } catch (err) {
    if (!(err instanceof DroverApiError && err.status === 404)) throw err;
    try {
      return await client.createScalingRule({ ...fields, container_group_id: group } as CreateScalingRuleBody);
    } catch (e) {
      if (!(e instanceof DroverApiError && e.status === 409)) throw e;
      // Created meanwhile (through another terminal): change that one. No rule of ours: the group is
      // driven by another user's rule, which the 409 says.
      const mine = await client.getScalingRule(group).catch((g: unknown) => (g instanceof DroverApiError && g.status === 404 ? undefined : Promise.reject(g)));
      if (!mine) throw e;
    }
  }
  if (Object.keys(fields).length === 0) throw new CliError(`container group ${group} has a rule already: say what to change (--min, --max, --idle-threshold, ...)`, USAGE);
  return client.updateScalingRule(group, fields);
}

function listCommand(): Command {
  const cmd = new Command('ls').alias('list').description('List your scaling rules: limits, provider, replicas now, and the last decision');
  withConnection(cmd);
  cmd.addHelpText('after', '\nExample:\n  drover scaling ls\n');
  cmd.action(
    action('scaling ls', async (flags: CommonFlags) => {
      const { client } = connect(flags);
      const { rules } = await client.listScalingRules();
      const last = await Promise.all(rules.map(async (r) => (await client.scalingDecisions(r.container_group_id, { limit: 1 })).decisions[0]));
      if (flags.json) return printJson(rules.map((r, i) => ({ ...r, last_decision: last[i] ?? null })));
      if (rules.length === 0) {
        process.stdout.write('no scaling rules (drover scaling set GROUP --max N makes one)\n');
        return;
      }
      const now = Date.now();
      process.stdout.write(
        formatTable(
          rules.map((r, i) => ({ r, d: last[i] })),
          [
            { header: 'GROUP', value: ({ r }) => truncate(r.container_group_id, 36) },
            { header: 'PROVIDER', value: ({ r }) => r.provider },
            { header: 'MIN', value: ({ r }) => String(r.min_replicas), align: 'right' },
            { header: 'MAX', value: ({ r }) => String(r.max_replicas), align: 'right' },
            { header: 'IDLE', value: ({ r }) => `${r.idle_threshold_seconds}s`, align: 'right' },
            { header: 'REPLICAS', value: ({ r }) => (r.replicas === null ? '-' : String(r.replicas)), align: 'right' },
            { header: 'STATUS', value: ({ r }) => (r.enabled ? (r.provider_status ?? '-') : paint('red', 'disabled')) },
            { header: 'LAST DECISION', value: ({ d }) => (d ? `${d.action} ${d.from ?? '?'}→${d.to ?? '?'} ${d.outcome} ${ago(d.at, now)}` : '-') },
          ],
        ),
      );
    }),
  );
  return cmd;
}

function showCommand(): Command {
  const cmd = new Command('show')
    .description('A scaling rule in full, and its latest decisions: inputs, from, to, action, outcome, why')
    .argument('[group]', "container group id (default: the profile's)")
    .option('-n, --decisions <n>', 'how many decisions', wholeNumber('--decisions', 1, 1000), 10);
  withConnection(cmd);
  cmd.addHelpText('after', '\nExample:\n  drover scaling show local --decisions 20\n');
  cmd.action(
    action('scaling show', async (group: string | undefined, flags: CommonFlags & { decisions: number }) => {
      const { client, connection } = connect(flags);
      const g = groupOf(group, connection);
      const rule = await client.getScalingRule(g).catch((e: unknown) => Promise.reject(notFound(e, g)));
      const { decisions } = await client.scalingDecisions(g, { limit: flags.decisions });
      if (flags.json) return printJson({ rule, decisions });
      process.stdout.write(describeRule(rule));
      if (decisions.length === 0) {
        process.stdout.write('\nno decisions yet\n');
        return;
      }
      process.stdout.write(`\n${describeDecisions(decisions)}`);
    }),
  );
  return cmd;
}

function rmCommand(): Command {
  const cmd = new Command('rm').alias('delete').description('Delete the scaling rule of a container group (the group is left as it is)').argument('<group>', 'container group id');
  withConnection(cmd);
  cmd.addHelpText('after', '\nExample:\n  drover scaling rm local\n');
  cmd.action(
    action('scaling rm', async (group: string, flags: CommonFlags) => {
      const { client } = connect(flags);
      // DELETE answers 204 whether or not there was a rule (as Kelpie's does): ask first, to say which.
      await client.getScalingRule(group).catch((e: unknown) => Promise.reject(notFound(e, group)));
      await client.deleteScalingRule(group);
      if (flags.json) return printJson({ container_group_id: group, deleted: true });
      process.stdout.write(`deleted the scaling rule of container group ${group}\n`);
    }),
  );
  return cmd;
}

export function describeRule(r: ScalingRule): string {
  const now = Date.now();
  const rows: [string, string | undefined][] = [
    ['container group', r.container_group_id],
    ['provider', r.provider],
    ['saladcloud group', r.provider === 'saladcloud' ? `${r.org_name}/${r.project_name}/${r.container_group_name ?? '(found by id at the next decision)'}` : undefined],
    ['replicas', `${r.min_replicas} to ${r.max_replicas}${r.jobs_per_replica > 1 ? `, ${r.jobs_per_replica} jobs per replica` : ''}`],
    ['idle threshold', `${r.idle_threshold_seconds}s`],
    ['cooldown', r.cooldown_seconds > 0 ? `${r.cooldown_seconds}s before a scale-down` : undefined],
    ['enabled', r.enabled ? 'yes' : paint('red', `no${r.disabled_reason ? `: ${r.disabled_reason}` : ' (paused)'}`)],
    ['now', r.replicas === null ? 'not evaluated yet' : `${r.replicas} replica${r.replicas === 1 ? '' : 's'}${r.provider_status ? `, ${r.provider_status}` : ''}`],
    ['evaluated', r.evaluated ? `${r.evaluated} (${ago(r.evaluated, now)})` : undefined],
    ['updated', `${r.updated} (${ago(r.updated, now)})`],
  ];
  const shown = rows.filter((x): x is [string, string] => x[1] !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${paint('bold', k.padEnd(width))}  ${v}`).join('\n') + '\n';
}

function describeDecisions(ds: ScalingDecision[]): string {
  const now = Date.now();
  const outcome = (d: ScalingDecision) => (d.outcome === 'error' ? paint('red', 'error') : d.outcome === 'interrupted' ? paint('yellow', 'interrupted') : d.outcome);
  return formatTable(ds, [
    { header: 'AT', value: (d) => ago(d.at, now) },
    { header: 'TRIGGER', value: (d) => d.trigger },
    { header: 'JOBS P/R/E', value: (d) => `${d.pending}/${d.running}/${d.recently_ended}` },
    { header: 'WANT', value: (d) => String(d.desired), align: 'right' },
    { header: 'FROM', value: (d) => (d.from === null ? '-' : String(d.from)), align: 'right' },
    { header: 'TO', value: (d) => (d.to === null ? '-' : String(d.to)), align: 'right' },
    { header: 'ACTION', value: (d) => d.action },
    { header: 'OUTCOME', value: outcome },
    { header: 'WHY', value: (d) => truncate(d.error ? `${d.reason} — ${d.error}` : d.reason.replace(/^.*?: /, ''), 80) },
  ]);
}
