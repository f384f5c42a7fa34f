// drover salad create | ls | show | instances | instance | start | stop | gpu-classes | autoscale:
// SaladCloud container groups for Drover workers, through SaladCloud's public API
// (@drover/saladcloud), and a group's scaling rule on the coordinator (the SDK). The SaladCloud API
// key comes from SALAD_API_KEY or --salad-api-key-file, never a flag value (flags show in `ps`);
// no output, error or --dry-run prints it, nor the values of environment variables that look secret.
import { readFileSync } from 'node:fs';
import {
  LIMITS,
  MAX_REPLICAS,
  NAME_PATTERN,
  PRIORITIES,
  RESTART_POLICIES,
  SaladCloudClient,
  SaladCloudError,
  type ContainerGroup,
  type ContainerGroupInstance,
  type ContainerGroupPrototype,
  type ContainerGroupRef,
  type ContainerGroupPriority,
  type ContainerRestartPolicy,
  type GpuClass,
} from '@drover/saladcloud';
import { Command, InvalidArgumentError, Option } from 'commander';
import { connect, withConnection, type CommonFlags } from '../lib/connection.js';
import { resolveConnection } from '../lib/profile.js';
import { CliError, action, formatTable, paint, printJson } from '../lib/output.js';
import { USAGE, ago, collect, usageErrors, wholeNumber } from './jobs/common.js';
import { describeRule, setRule } from './scaling.js';

interface SaladFlags {
  org?: string;
  project?: string;
  saladApiUrl?: string;
  saladApiKeyFile?: string;
  json?: boolean;
}

function saladName(flag: string) {
  return (v: string): string => {
    if (!NAME_PATTERN.test(v)) throw new InvalidArgumentError(`${flag} must be a SaladCloud name: lower-case letters, digits and -, 2 to 63 characters, starting with a letter`);
    return v;
  };
}

/** --org, --project (unless `project` is false), --salad-api-url, --salad-api-key-file, and --json (unless the command has it). */
function withSalad(cmd: Command, o: { json?: boolean; project?: boolean } = {}): Command {
  cmd.addOption(new Option('--org <name>', 'SaladCloud organization (env SALAD_ORGANIZATION)').argParser(saladName('--org')));
  if (o.project !== false) cmd.addOption(new Option('--project <name>', 'SaladCloud project (env SALAD_PROJECT)').argParser(saladName('--project')));
  cmd
    .addOption(new Option('--salad-api-url <url>', 'SaladCloud public API (env SALAD_API_URL; default https://api.salad.com/api/public)'))
    .addOption(new Option('--salad-api-key-file <file>', 'read the SaladCloud API key from this file (default: env SALAD_API_KEY)'));
  if (o.json !== false) cmd.addOption(new Option('--json', 'print JSON instead of a table'));
  return cmd;
}

/** The SaladCloud API key: the file's first line, or SALAD_API_KEY. */
export function saladApiKey(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (file !== undefined) {
    let key: string;
    try {
      key = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new CliError(`--salad-api-key-file: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, USAGE);
    }
    if (!key) throw new CliError(`--salad-api-key-file: ${file} is empty`, USAGE);
    return key;
  }
  const key = env.SALAD_API_KEY?.trim();
  if (!key) throw new CliError('no SaladCloud API key: set SALAD_API_KEY or pass --salad-api-key-file FILE', USAGE);
  return key;
}

/** The client and organization (flag, then env); usage errors name what is missing. */
function saladOrg(flags: SaladFlags): { client: SaladCloudClient; org: string } {
  const org = flags.org ?? (process.env.SALAD_ORGANIZATION || undefined);
  if (org === undefined) throw new CliError('name the SaladCloud organization: --org NAME or SALAD_ORGANIZATION', USAGE);
  saladName('SALAD_ORGANIZATION')(org);
  const baseUrl = flags.saladApiUrl ?? (process.env.SALAD_API_URL || undefined);
  const client = new SaladCloudClient({ apiKey: saladApiKey(flags.saladApiKeyFile), userAgent: 'drover-cli/0.1.0', ...(baseUrl ? { baseUrl } : {}) });
  return { client, org };
}

/** The client, organization and project. */
function salad(flags: SaladFlags): { client: SaladCloudClient; org: string; project: string } {
  const project = flags.project ?? (process.env.SALAD_PROJECT || undefined);
  if (project === undefined) throw new CliError('name the SaladCloud project: --project NAME or SALAD_PROJECT', USAGE);
  saladName('SALAD_PROJECT')(project);
  return { ...saladOrg(flags), project };
}

/** A SaladCloud error as one line; a 400 or 409 on create is the user's to fix (exit 2). */
function saladError(err: unknown, group?: string): unknown {
  if (!(err instanceof SaladCloudError)) return err;
  if (err.status === 404 && group !== undefined) return new CliError(`SaladCloud has no container group ${group} in this project (drover salad ls lists them)`);
  if (err.status === 401 || err.status === 403) return new CliError(`${err.message} (is the API key right, and may it use this organization and project?)`);
  if (err.status === 400 || err.status === 409) return new CliError(err.message, USAGE);
  return new CliError(err.message);
}

async function call<T>(p: Promise<T>, group?: string): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw saladError(err, group);
  }
}

const SECRET_NAME = /KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH/i;

/** The environment with the values of secret-looking names hidden: what may be printed. */
export function shownEnvironment(env: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(env ?? {}).map(([k, v]) => [k, SECRET_NAME.test(k) ? '(hidden)' : v]));
}

/** A container group document with its environment's secret values hidden. */
function shownGroup(g: ContainerGroup): ContainerGroup {
  const container = g.container as { environment_variables?: Record<string, string> } | undefined;
  if (!container?.environment_variables) return g;
  return { ...g, container: { ...container, environment_variables: shownEnvironment(container.environment_variables) } };
}

/** Why SaladCloud's nodes cannot reach a coordinator at `url` (a loopback or private address), or undefined. */
function unreachableFromNodes(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return 'is not a URL';
  }
  if (host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || host === '0.0.0.0') return 'is a loopback address';
  if (/^10\./.test(host) || /^192\.168\./.test(host) || /^172\.(1[6-9]|2\d|3[01])\./.test(host)) return 'is a private address';
  return undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** KEY=VALUE (--env) into `env`; the value may hold '='. */
function putVariable(env: Record<string, string>, line: string, where: string): void {
  const eq = line.indexOf('=');
  const k = eq > 0 ? line.slice(0, eq).trim() : '';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new CliError(`${where}: ${JSON.stringify(line.slice(0, 40))} is not NAME=VALUE`, USAGE);
  let v = line.slice(eq + 1);
  if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1);
  const [min, max] = LIMITS.environment_value;
  if (v.length < min || v.length > max) throw new CliError(`${where}: ${k} must have a value of ${min} to ${max} characters (SaladCloud's limit)`, USAGE);
  env[k] = v;
}

/** An env file: NAME=VALUE lines, blank lines and # comments skipped, `export ` allowed. */
function readEnvFile(file: string, env: Record<string, string>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`--env-file: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, USAGE);
  }
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim().replace(/^export\s+/, '');
    if (line === '' || line.startsWith('#')) return;
    putVariable(env, line, `--env-file ${file}:${i + 1}`);
  });
}

interface CreateFlags extends SaladFlags, CommonFlags {
  image: string;
  cpu: number;
  memory: number;
  gpuClass?: string[];
  storage?: number;
  shm?: number;
  replicas: number;
  env?: string[];
  envFile?: string[];
  withCoordinator?: boolean;
  command?: string[];
  restartPolicy: ContainerRestartPolicy;
  priority?: ContainerGroupPriority;
  displayName?: string;
  country?: string[];
  start?: boolean;
  dryRun?: boolean;
}

/**
 * GPU classes named by id or by name (case-insensitive), as ids, and the names of those it knows;
 * the organization's list is read only when a name is given.
 */
async function gpuClassIds(names: readonly string[], list: () => Promise<GpuClass[]>): Promise<{ ids: string[]; names: Map<string, string> }> {
  if (names.every((n) => UUID.test(n))) return { ids: [...names], names: new Map() };
  const classes = await list();
  const ids = names.map((n) => {
    if (UUID.test(n)) return n;
    const found = classes.find((c) => c.name.toLowerCase() === n.toLowerCase());
    if (!found) throw new CliError(`--gpu-class: no GPU class named ${JSON.stringify(n)} (drover salad gpu-classes lists them: ${classes.map((c) => c.name).join(', ')})`, USAGE);
    return found.id;
  });
  return { ids, names: new Map(classes.map((c) => [c.id, c.name])) };
}

function createCommand(): Command {
  const cmd = new Command('create')
    .description('Create a SaladCloud container group that runs Drover workers (your image with drover-worker in it)')
    .argument('<name>', 'container group name (lower-case letters, digits and -)', saladName('name'))
    .requiredOption('--image <image>', 'container image, e.g. ghcr.io/acme/train:1 (built FROM your GPU image, with /drover-worker as its command)')
    .option('--cpu <n>', 'vCPUs per node', wholeNumber('--cpu', LIMITS.cpu[0], LIMITS.cpu[1]), 4)
    .option('--memory <MB>', 'memory per node, in MB', wholeNumber('--memory', LIMITS.memory[0], LIMITS.memory[1]), 16384)
    .option('--gpu-class <id|name>', 'GPU class, by id or name (repeatable: any of them; drover salad gpu-classes lists them)', collect)
    .option('--storage <GiB>', 'disk per node, in GiB (SaladCloud: 1 to 1048576)', wholeNumber('--storage', 1, 1048576))
    .option('--shm <MB>', '/dev/shm size, in MB (SaladCloud default 64)', wholeNumber('--shm', 64, LIMITS.memory[1]))
    .option('--replicas <n>', 'nodes to run (a scaling rule changes it later)', wholeNumber('--replicas', 0, MAX_REPLICAS), 1)
    .option('-e, --env <NAME=VALUE>', 'environment variable for the worker (repeatable; secrets better in --env-file)', collect)
    .option('--env-file <file>', 'environment variables from a file of NAME=VALUE lines (repeatable)', collect)
    .option('--with-coordinator', "set KELPIE_API_URL and KELPIE_API_KEY from this CLI's coordinator (--api-url/--api-key, env, or the profile)")
    .option('--command <arg>', "override the image's command, one argument per flag (repeatable)", collect)
    .addOption(new Option('--restart-policy <policy>', 'when SaladCloud restarts the container').choices(RESTART_POLICIES).default('always'))
    .addOption(new Option('--priority <priority>', 'SaladCloud priority (price and pre-emption)').choices(PRIORITIES))
    .option('--display-name <text>', 'display name (default: the name)')
    .option('--country <code>', 'only nodes in this country, ISO 3166-1 alpha-2 lower case (repeatable)', collect)
    .option('--start', 'start the group as soon as it is created (autostart_policy)')
    .option('--dry-run', 'print the request body (secret values hidden) and send nothing');
  withSalad(cmd, { json: false });
  withConnection(cmd);
  cmd.addHelpText(
    'after',
    '\nExamples:\n' +
      '  SALAD_API_KEY=… drover salad create train-4090 --org acme --project training \\\n' +
      '      --image ghcr.io/acme/train:1 --gpu-class "RTX 4090 (24 GB)" --memory 24576 --storage 100 \\\n' +
      '      --replicas 0 --with-coordinator --env-file worker.env\n' +
      '  drover salad create train-4090 --image ghcr.io/acme/train:1 --dry-run --org acme --project training\n' +
      '\nThe group runs the image\'s command (CMD ["/drover-worker"]); SaladCloud gives each node SALAD_MACHINE_ID and\n' +
      "SALAD_CONTAINER_GROUP_ID (the group's id: submit its jobs with --group <id>). No probes are needed.\n",
  );
  cmd.action(
    action('salad create', async (name: string, flags: CreateFlags) => {
      const environment: Record<string, string> = {};
      for (const file of flags.envFile ?? []) readEnvFile(file, environment);
      for (const line of flags.env ?? []) putVariable(environment, line, '--env');
      if (flags.withCoordinator) {
        const c = resolveConnection(flags);
        environment.KELPIE_API_URL = c.url;
        environment.KELPIE_API_KEY = c.key;
        const unreachable = unreachableFromNodes(c.url);
        if (unreachable) process.stderr.write(`drover salad create: warning: KELPIE_API_URL ${c.url} ${unreachable}: SaladCloud's nodes will not reach it\n`);
      }
      if (flags.image.length > LIMITS.image[1]) throw new CliError(`--image must be at most ${LIMITS.image[1]} characters`, USAGE);
      if (flags.displayName !== undefined && !/^[ ,-.0-9A-Za-z]{2,63}$/.test(flags.displayName)) {
        throw new CliError('--display-name must be 2 to 63 letters, digits, spaces and , - .', USAGE);
      }
      for (const c of flags.country ?? []) if (!/^[a-z]{2}$/.test(c)) throw new CliError(`--country ${JSON.stringify(c)} must be a two-letter country code in lower case (us, de, …)`, USAGE);
      const { client, org, project } = salad(flags);
      const gpu = await call(gpuClassIds(flags.gpuClass ?? [], () => client.listGpuClasses(org)));
      const prototype: ContainerGroupPrototype = {
        name,
        ...(flags.displayName !== undefined ? { display_name: flags.displayName } : {}),
        container: {
          image: flags.image,
          resources: {
            cpu: flags.cpu,
            memory: flags.memory,
            ...(gpu.ids.length > 0 ? { gpu_classes: gpu.ids } : {}),
            ...(flags.storage !== undefined ? { storage_amount: flags.storage * 1024 ** 3 } : {}),
            ...(flags.shm !== undefined ? { shm_size: flags.shm } : {}),
          },
          ...(flags.command ? { command: flags.command } : {}),
          ...(Object.keys(environment).length > 0 ? { environment_variables: environment } : {}),
          ...(flags.priority ? { priority: flags.priority } : {}),
        },
        replicas: flags.replicas,
        restart_policy: flags.restartPolicy,
        autostart_policy: flags.start === true,
        ...(flags.country ? { country_codes: flags.country } : {}),
      };
      if (flags.dryRun) {
        const shown = { ...prototype, container: { ...prototype.container, ...(prototype.container.environment_variables ? { environment_variables: shownEnvironment(environment) } : {}) } };
        process.stdout.write(`POST /organizations/${org}/projects/${project}/containers (not sent)\n${JSON.stringify(shown, null, 2)}\n`);
        return;
      }
      const group = await call(client.createContainerGroup(org, project, prototype));
      if (flags.json) return printJson(shownGroup(group));
      process.stdout.write(describeGroup(group, org, project, gpu.names));
      process.stdout.write(
        `\nSubmit its jobs with --group ${group.id} (SaladCloud gives its nodes SALAD_CONTAINER_GROUP_ID=${group.id}).\n` +
          (group.current_state.status === 'stopped'
            ? `Start it with: drover salad start ${name}   or let the coordinator: drover salad autoscale ${name} --max N\n`
            : ''),
      );
    }),
  );
  return cmd;
}

function resources(g: ContainerGroup, gpuNames: Map<string, string>): string {
  const r = (g.container as { resources?: { cpu?: number; memory?: number; gpu_classes?: string[]; storage_amount?: number } } | undefined)?.resources;
  if (!r) return '-';
  const gpus = (r.gpu_classes ?? []).map((id) => gpuNames.get(id) ?? id);
  return [
    r.cpu !== undefined ? `${r.cpu} vCPU` : undefined,
    r.memory !== undefined ? `${r.memory} MB` : undefined,
    r.storage_amount ? `${Math.round(r.storage_amount / 1024 ** 3)} GiB disk` : undefined,
    gpus.length > 0 ? `GPU ${gpus.join(' or ')}` : 'no GPU',
  ]
    .filter(Boolean)
    .join(', ');
}

function statusText(g: ContainerGroup): string {
  const s = g.current_state.status;
  return s === 'running' ? paint('green', s) : s === 'failed' ? paint('red', s) : s === 'deploying' || s === 'pending' ? paint('yellow', s) : s;
}

function describeGroup(g: ContainerGroup, org: string, project: string, gpuNames = new Map<string, string>()): string {
  const c = g.container as { image?: string; command?: string[] | null; environment_variables?: Record<string, string> } | undefined;
  const counts = g.current_state.instance_status_counts;
  const env = Object.keys(c?.environment_variables ?? {});
  const rows: [string, string | undefined][] = [
    ['container group', `${g.name} (${org}/${project})`],
    ['id', g.id],
    ['status', `${statusText(g)}${g.current_state.description ? ` (${g.current_state.description})` : ''}`],
    ['replicas', `${g.replicas}${counts ? `: ${counts.running_count} running, ${counts.allocating_count} allocating, ${counts.creating_count} creating, ${counts.stopping_count} stopping` : ''}`],
    ['image', c?.image],
    ['command', c?.command && c.command.length > 0 ? c.command.join(' ') : "the image's"],
    ['resources', resources(g, gpuNames)],
    ['restart policy', typeof g.restart_policy === 'string' ? g.restart_policy : undefined],
    ['environment', env.length > 0 ? env.join(', ') : 'none'],
    ['updated', typeof g.update_time === 'string' ? `${g.update_time} (${ago(g.update_time)})` : undefined],
  ];
  const shown = rows.filter((x): x is [string, string] => x[1] !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${paint('bold', k.padEnd(width))}  ${v}`).join('\n') + '\n';
}

function instancesTable(instances: ContainerGroupInstance[]): string {
  if (instances.length === 0) return 'no instances\n';
  const now = Date.now();
  return formatTable(instances, [
    { header: 'INSTANCE', value: (i) => i.id },
    { header: 'MACHINE', value: (i) => i.machine_id },
    { header: 'STATE', value: (i) => (i.state === 'running' ? paint('green', i.state) : i.state) },
    { header: 'READY', value: (i) => (i.ready === undefined ? '-' : i.ready ? 'yes' : 'no') },
    { header: 'STARTED', value: (i) => (i.started === undefined ? '-' : i.started ? 'yes' : 'no') },
    { header: 'DELETION COST', value: (i) => (i.deletion_cost === undefined ? '-' : String(i.deletion_cost)), align: 'right' },
    { header: 'CHANGED', value: (i) => ago(i.update_time, now) },
  ]);
}

function ref(org: string, project: string, name: string): ContainerGroupRef {
  return { organization_name: org, project_name: project, container_group_name: name };
}

function listCommand(): Command {
  const cmd = withSalad(new Command('ls').alias('list').description('List the project\'s container groups: status, replicas, running instances, image'));
  cmd.addHelpText('after', '\nExample:\n  drover salad ls --org acme --project training\n');
  cmd.action(
    action('salad ls', async (flags: SaladFlags) => {
      const { client, org, project } = salad(flags);
      const groups = await call(client.listContainerGroups(org, project));
      if (flags.json) return printJson(groups.map(shownGroup));
      if (groups.length === 0) {
        process.stdout.write(`no container groups in ${org}/${project} (drover salad create NAME --image IMAGE makes one)\n`);
        return;
      }
      process.stdout.write(
        formatTable(groups, [
          { header: 'NAME', value: (g) => g.name },
          { header: 'ID', value: (g) => g.id },
          { header: 'STATUS', value: statusText },
          { header: 'REPLICAS', value: (g) => String(g.replicas), align: 'right' },
          { header: 'RUNNING', value: (g) => String(g.current_state.instance_status_counts?.running_count ?? '-'), align: 'right' },
          { header: 'IMAGE', value: (g) => String((g.container as { image?: string } | undefined)?.image ?? '-') },
        ]),
      );
    }),
  );
  return cmd;
}

function showCommand(): Command {
  const cmd = withSalad(new Command('show').description('A container group in full (environment values of secrets hidden) and its instances').argument('<name>', 'container group name'));
  cmd.addHelpText('after', '\nExample:\n  drover salad show train-4090\n');
  cmd.action(
    action('salad show', async (name: string, flags: SaladFlags) => {
      const { client, org, project } = salad(flags);
      const group = await call(client.getContainerGroup(ref(org, project, name)), name);
      const instances = await call(client.listContainerGroupInstances(ref(org, project, name)), name);
      if (flags.json) return printJson({ group: shownGroup(group), instances });
      const gpuIds = ((group.container as { resources?: { gpu_classes?: string[] } } | undefined)?.resources?.gpu_classes ?? []);
      // GPU class names make the resources readable; a failure to list them is no reason to fail.
      const gpuNames = gpuIds.length === 0 ? new Map<string, string>() : new Map((await client.listGpuClasses(org).catch(() => [] as GpuClass[])).map((c) => [c.id, c.name]));
      process.stdout.write(`${describeGroup(group, org, project, gpuNames)}\n${instancesTable(instances)}`);
    }),
  );
  return cmd;
}

function instancesCommand(): Command {
  const cmd = withSalad(new Command('instances').description("A container group's instances: machine, state, readiness, deletion cost").argument('<name>', 'container group name'));
  cmd.addHelpText('after', '\nExample:\n  drover salad instances train-4090\n');
  cmd.action(
    action('salad instances', async (name: string, flags: SaladFlags) => {
      const { client, org, project } = salad(flags);
      const instances = await call(client.listContainerGroupInstances(ref(org, project, name)), name);
      if (flags.json) return printJson(instances);
      process.stdout.write(instancesTable(instances));
    }),
  );
  return cmd;
}

function instanceCommand(): Command {
  const cmd = withSalad(
    new Command('instance').description("One instance's state (allocating, downloading, creating, running, stopping)").argument('<name>', 'container group name').argument('<instance-id>', 'instance id (drover salad instances lists them)'),
  );
  cmd.addHelpText('after', '\nExample:\n  drover salad instance train-4090 db3a4591-efc3-46c0-b06a-3d820c0ec100\n');
  cmd.action(
    action('salad instance', async (name: string, id: string, flags: SaladFlags) => {
      if (!UUID.test(id)) throw new CliError(`${JSON.stringify(id)} is not an instance id (a UUID)`, USAGE);
      const { client, org, project } = salad(flags);
      let instance: ContainerGroupInstance;
      try {
        instance = await client.getContainerGroupInstance(ref(org, project, name), id);
      } catch (err) {
        if (err instanceof SaladCloudError && err.status === 404) throw new CliError(`SaladCloud has no instance ${id} in container group ${name} (drover salad instances ${name} lists them)`);
        throw saladError(err);
      }
      if (flags.json) return printJson(instance);
      const rows: [string, string][] = [
        ['instance', instance.id],
        ['machine', instance.machine_id],
        ['state', instance.state],
        ['ready', instance.ready === undefined ? '-' : instance.ready ? 'yes' : 'no'],
        ['started', instance.started === undefined ? '-' : instance.started ? 'yes' : 'no'],
        ['deletion cost', instance.deletion_cost === undefined ? '-' : String(instance.deletion_cost)],
        ['version', String(instance.version)],
        ['changed', `${instance.update_time} (${ago(instance.update_time)})`],
      ];
      const width = Math.max(...rows.map(([k]) => k.length));
      process.stdout.write(rows.map(([k, v]) => `${paint('bold', k.padEnd(width))}  ${v}`).join('\n') + '\n');
    }),
  );
  return cmd;
}

function startStopCommand(which: 'start' | 'stop'): Command {
  const cmd = withSalad(
    new Command(which).description(which === 'start' ? 'Start a container group (SaladCloud allocates its replicas)' : 'Stop a container group (its nodes are shut down)').argument('<name>', 'container group name'),
  );
  cmd.addHelpText('after', `\nExample:\n  drover salad ${which} train-4090\n`);
  cmd.action(
    action(`salad ${which}`, async (name: string, flags: SaladFlags) => {
      const { client, org, project } = salad(flags);
      const r = ref(org, project, name);
      await call(which === 'start' ? client.startContainerGroup(r) : client.stopContainerGroup(r), name);
      const group = await call(client.getContainerGroup(r), name);
      if (flags.json) return printJson(shownGroup(group));
      process.stdout.write(`${which === 'start' ? 'started' : 'stopped'} container group ${name}: ${group.current_state.status}, ${group.replicas} replicas\n`);
    }),
  );
  return cmd;
}

function gpuClassesCommand(): Command {
  const cmd = withSalad(new Command('gpu-classes').description('The GPU classes your organization can ask for (name or id go in create --gpu-class)'), { project: false });
  cmd.addHelpText('after', '\nExample:\n  drover salad gpu-classes --org acme\n');
  cmd.action(
    action('salad gpu-classes', async (flags: SaladFlags) => {
      const { client, org } = saladOrg(flags);
      const classes = await call(client.listGpuClasses(org));
      if (flags.json) return printJson(classes);
      process.stdout.write(
        formatTable(classes, [
          { header: 'NAME', value: (c) => c.name },
          { header: 'ID', value: (c) => c.id },
          { header: 'PRICES ($/h)', value: (c) => c.prices.map((p) => `${p.priority} ${p.price}`).join(', ') },
          { header: 'HIGH DEMAND', value: (c) => (c.is_high_demand ? 'yes' : 'no') },
        ]),
      );
    }),
  );
  return cmd;
}

interface AutoscaleFlags extends SaladFlags, CommonFlags {
  min?: number;
  max?: number;
  idleThreshold?: number;
  jobsPerReplica?: number;
  cooldown?: number;
}

function autoscaleCommand(): Command {
  const count = (flag: string, min: number, max: number) => wholeNumber(flag, min, max);
  const cmd = new Command('autoscale')
    .description("Connect a container group to the coordinator's autoscaler: a scaling rule (provider saladcloud) for the group's id")
    .argument('<name>', 'container group name')
    .option('--min <n>', 'fewest replicas, also with no work (new rule: 0)', count('--min', 0, MAX_REPLICAS))
    .option('--max <n>', 'most replicas (new rule: 100)', count('--max', 0, MAX_REPLICAS))
    .option('--idle-threshold <seconds>', 'a replica stays this long after a job ended (new rule: 300)', count('--idle-threshold', 0, 3600))
    .option('--jobs-per-replica <n>', 'jobs one replica works through (new rule: 1)', count('--jobs-per-replica', 1, 1000))
    .option('--cooldown <seconds>', 'no scale-down sooner than this after a change (new rule: 0)', count('--cooldown', 0, 3600));
  withSalad(cmd, { json: false });
  withConnection(cmd);
  cmd.addHelpText(
    'after',
    '\nExample:\n  drover salad autoscale train-4090 --max 20 --idle-threshold 600\n' +
      '\nThe coordinator does the scaling, so it needs the SaladCloud API key too (drover server with SALAD_API_KEY).\n',
  );
  cmd.action(
    action('salad autoscale', async (name: string, flags: AutoscaleFlags) => {
      if (flags.min !== undefined && flags.max !== undefined && flags.min > flags.max) throw new CliError(`--min (${flags.min}) must not be greater than --max (${flags.max})`, USAGE);
      const { client: saladClient, org, project } = salad(flags);
      const group = await call(saladClient.getContainerGroup(ref(org, project, name)), name);
      const { client } = connect(flags);
      const rule = await setRule(client, group.id, {
        provider: 'saladcloud',
        org_name: org,
        project_name: project,
        container_group_name: name,
        ...(flags.min !== undefined ? { min_replicas: flags.min } : {}),
        ...(flags.max !== undefined ? { max_replicas: flags.max } : {}),
        ...(flags.idleThreshold !== undefined ? { idle_threshold_seconds: flags.idleThreshold } : {}),
        ...(flags.jobsPerReplica !== undefined ? { jobs_per_replica: flags.jobsPerReplica } : {}),
        ...(flags.cooldown !== undefined ? { cooldown_seconds: flags.cooldown } : {}),
      });
      if (flags.json) return printJson(rule);
      process.stdout.write(describeRule(rule));
      process.stdout.write(`\nSubmit this group's jobs with --group ${group.id}; drover scaling show ${group.id} shows the decisions.\n`);
    }),
  );
  return cmd;
}

export function saladCommands(): Command[] {
  const cmd = new Command('salad').description('SaladCloud container groups for Drover workers: create, list, instances, start, stop, autoscale');
  for (const c of [createCommand(), listCommand(), showCommand(), instancesCommand(), instanceCommand(), startStopCommand('start'), startStopCommand('stop'), gpuClassesCommand(), autoscaleCommand()]) {
    cmd.addCommand(c);
  }
  return [usageErrors(cmd)];
}
