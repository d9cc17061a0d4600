// The `abota-agent` command line: run, status, check, install, mark-good, mark-bad, register,
// and for setting a device up: doctor, init, simulate-reboot.
// Every command takes --config and --json; errors print `CODE: message` (or JSON) without a
// stack trace and map to an exit status by the class of their code. Parsed with node's
// util.parseArgs rather than commander: the agent's RSS is mostly what it loads (README "Memory").
import { parseArgs } from 'node:util';
import { Agent, type AgentLogEvent, type AgentOptions, type AgentStatus } from './agent.js';
import { buildInfo } from './build-info.js';
import { DEFAULT_CONFIG_PATH, loadAgentConfig } from './config.js';
import { isDeviceSideError } from './error-class.js';
import { Watchdog } from './watchdog.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  /** Extra agent wiring (tests: boot id, clock). */
  agentOptions?: Partial<AgentOptions>;
  /** The daemon stops when this aborts (default: SIGINT/SIGTERM). */
  signal?: AbortSignal;
}

/** Exit statuses: 0 ok, 1 other, 2 usage, 3 release refused (trust/verification), 4 network/server, 5 config/state/device. */
export function exitStatusFor(code: string | undefined): number {
  if (code === undefined) return 1;
  if (
    /^ERR_(JWS|SIGNATURE|THRESHOLD|MANIFEST|EXPIRED|ROOT|WRONG_PRODUCT|INCOMPATIBLE|SECURITY_VERSION|SAME_VERSION|DOWNGRADE|VERSION|VERITY)/.test(
      code,
    ) ||
    /^ERR_INSTALL_(BLOCK_CORRUPT|ARTIFACT|HASH_TREE|UNSUPPORTED|UNVERIFIABLE)/.test(code)
  ) {
    return 3;
  }
  if (/^ERR_(HTTP|NOT_REGISTERED)/.test(code)) return 4;
  if (isDeviceSideError(code)) return 5;
  return 1;
}

function formatStatus(s: AgentStatus): string {
  const lines = [
    `device:    ${s.deviceId ?? '(not registered)'}`,
    s.trial === true
      ? `running:   ${s.version} on slot ${s.bootedSlot}, on trial: not committed (next boot: ${s.primarySlot ?? 'rescue'}; abota-agent run commits it after the health checks, or mark-good / mark-bad)`
      : `running:   ${s.version} on slot ${s.bootedSlot} (next boot: ${s.primarySlot ?? 'rescue'})`,
    `floor:     securityVersion ${s.securityVersionFloor}`,
    `slot A:    ${s.slots.A ? `${s.slots.A.version} (securityVersion ${s.slots.A.securityVersion})` : 'unknown/factory'}`,
    `slot B:    ${s.slots.B ? `${s.slots.B.version} (securityVersion ${s.slots.B.securityVersion})` : 'unknown/factory'}`,
  ];
  if (s.install === undefined) lines.push('install:   none');
  else {
    const i = s.install;
    lines.push(
      `install:   ${i.version} → slot ${i.targetSlot}: ${i.phase}, ${i.progressPercent}% (${i.bytesDone}/${i.bytesTotal} bytes), updated ${i.updatedAt}`,
    );
    for (const [name, img] of Object.entries(i.images))
      lines.push(`${`${name}:`.padEnd(10)} ${describeImage(img)}`);
    if (i.error) lines.push(`error:     ${i.error.code}: ${i.error.message}`);
  }
  const r = s.lastRefusal;
  if (r !== undefined) lines.push(`refused:   ${r.version} at ${r.at}: ${r.code}: ${r.message}`);
  const o = s.offers.lastValidOffer;
  if (o !== undefined) lines.push(`offers:    last valid ${o.version} at ${o.at}`);
  if (s.offers.warning !== undefined) lines.push(`warning:   ${s.offers.warning.message}`);
  return `${lines.join('\n')}\n`;
}

/** 3.1 MiB, 46.3 KiB, 634 B: small deltas must not read as "0.0 MiB". */
function mib(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
}

/** "delta 3.1 MiB of 40.0 MiB full, 1.2 MiB downloaded" / "full 40.0 MiB (delta failed: CODE), …". */
function describeImage(img: NonNullable<AgentStatus['install']>['images'][string]): string {
  const full = img.artifactSizeBytes !== undefined ? mib(img.artifactSizeBytes) : '?';
  const downloaded = `${mib(img.downloadedBytes)} downloaded`;
  if (img.method === 'delta' && img.deltaSizeBytes !== undefined)
    return `delta ${mib(img.deltaSizeBytes)} of ${full} full, ${downloaded}`;
  if (img.method === undefined) return `not started (full artifact ${full})`;
  const fallback = img.deltaFallback !== undefined ? ` (delta failed: ${img.deltaFallback.code})` : '';
  return `full ${full}${fallback}, ${downloaded}`;
}

interface OptionSpec {
  type: 'boolean' | 'string';
  short?: string;
  /** Shown in help as `--name <valueName>` (string options). */
  valueName?: string;
  description: string;
  required?: boolean;
}

type Values = Record<string, string | boolean | undefined>;

interface CommandSpec {
  name: string;
  description: string;
  /** One required positional argument, if the command takes one. */
  argument?: { name: string; description: string };
  options: Record<string, OptionSpec>;
  run(values: Values, argument: string | undefined): Promise<void>;
}

/** A usage error: printed with the command's help, exit status 2. */
class UsageError extends Error {}

/** Ends a command whose output is already printed with a non-zero status (doctor's findings). */
class ExitStatus extends Error {
  constructor(readonly status: number) {
    super(`exit status ${status}`);
  }
}

const PROGRAM = 'abota-agent';
const PROGRAM_DESCRIPTION =
  'abota device agent: signed A/B updates into the inactive slot, verified block by block';
const HELP_OPTION: OptionSpec = { type: 'boolean', short: 'h', description: 'display help for command' };

function optionTerm(name: string, o: OptionSpec): string {
  const long = `--${name}${o.type === 'string' ? ` <${o.valueName ?? 'value'}>` : ''}`;
  return o.short === undefined ? long : `-${o.short}, ${long}`;
}

function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([term]) => term.length));
  return rows.map(([term, text]) => `  ${term.padEnd(width)}  ${text}`).join('\n');
}

function commandHelp(cmd: CommandSpec, defaults: Values): string {
  const usage = `Usage: ${PROGRAM} ${cmd.name} [options]${cmd.argument ? ` <${cmd.argument.name}>` : ''}`;
  const parts = [usage, '', cmd.description];
  if (cmd.argument) parts.push('', 'Arguments:', table([[cmd.argument.name, cmd.argument.description]]));
  const options = Object.entries({ ...cmd.options, help: HELP_OPTION }).map(([name, o]): [string, string] => {
    const d = defaults[name];
    const shown = name === 'help' || d === undefined ? '' : ` (default: ${JSON.stringify(d)})`;
    return [optionTerm(name, o), `${o.description}${o.required === true ? ' (required)' : ''}${shown}`];
  });
  parts.push('', 'Options:', table(options));
  return `${parts.join('\n')}\n`;
}

function programHelp(commands: readonly CommandSpec[]): string {
  const rows = commands.map((c): [string, string] => [
    `${c.name} [options]${c.argument ? ` <${c.argument.name}>` : ''}`,
    c.description,
  ]);
  rows.push(['help [command]', 'display help for command']);
  return [
    `Usage: ${PROGRAM} [options] [command]`,
    '',
    PROGRAM_DESCRIPTION,
    '',
    'Options:',
    table([
      ['-V, --version', 'print the agent version and build time'],
      [optionTerm('help', HELP_OPTION), HELP_OPTION.description],
    ]),
    '',
    'Commands:',
    table(rows),
    '',
  ].join('\n');
}

/** Parse one command's arguments: strict (unknown options are usage errors), defaults applied. */
function parseCommand(
  cmd: CommandSpec,
  args: readonly string[],
  defaults: Values,
): { help: true } | { help: false; values: Values; argument: string | undefined } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...cmd.options, help: HELP_OPTION },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.values['help'] === true) return { help: true };
  // No option is declared `multiple`, so no value is an array.
  const values: Values = { ...defaults, ...(parsed.values as Values) };
  // Everything missing at once, so the command line is fixed in one go.
  const expected = cmd.argument ? 1 : 0;
  const missing = [
    ...(cmd.argument !== undefined && parsed.positionals.length < expected
      ? [`argument <${cmd.argument.name}>`]
      : []),
    ...Object.entries(cmd.options)
      .filter(([name, o]) => o.required && values[name] === undefined)
      .map(([name, o]) => `option ${optionTerm(name, o)}`),
  ];
  if (missing.length > 0) throw new UsageError(`${PROGRAM} ${cmd.name}: missing ${missing.join(', ')}`);
  if (parsed.positionals.length > expected) {
    throw new UsageError(
      `too many arguments for '${cmd.name}': expected ${expected}, got ${parsed.positionals.length}`,
    );
  }
  return { help: false, values, argument: parsed.positionals[0] };
}

export async function runAgentCli(argv: readonly string[], io: CliIo): Promise<number> {
  const common: Record<string, OptionSpec> = {
    config: { type: 'string', short: 'c', valueName: 'path', description: 'agent config file' },
    json: { type: 'boolean', description: 'machine-readable output' },
  };
  const reboot: OptionSpec = {
    type: 'boolean',
    description: 'run the reboot command after a successful install',
  };
  const defaultsOf = (cmd: CommandSpec): Values => {
    const d: Values = { config: io.env['ABOTA_CONFIG'] ?? DEFAULT_CONFIG_PATH };
    for (const [name, o] of Object.entries(cmd.options)) if (o.type === 'boolean') d[name] = false;
    return d;
  };

  const open = async (values: Values, daemon = false): Promise<Agent> => {
    const config = await loadAgentConfig(String(values['config']), io.env);
    const json = values['json'] === true;
    const log = (e: AgentLogEvent): void => {
      io.stderr(
        json
          ? `${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`
          : `${e.level}: ${e.code ? `${e.code}: ` : ''}${e.message}\n`,
      );
    };
    // Under systemd with WatchdogSec= (infra/systemd/abota-agent.service): the daemon feeds it.
    const watchdog = daemon
      ? Watchdog.fromEnv(io.env, {
          onError: (e) => log({ level: 'warn', message: `watchdog: ${e.message}` }),
        })
      : undefined;
    return Agent.open({ config, log, ...(watchdog ? { watchdog } : {}), ...io.agentOptions });
  };
  const print = (values: Values, value: unknown, text: string): void => {
    io.stdout(values['json'] === true ? `${JSON.stringify(value)}\n` : text);
  };

  const commands: CommandSpec[] = [
    {
      name: 'status',
      description: 'show the running slot, versions and install progress',
      options: common,
      async run(values) {
        const s = await (await open(values)).status();
        print(values, s, formatStatus(s));
      },
    },
    {
      name: 'check',
      description: 'poll the update server once; install an offered release',
      options: { ...common, reboot },
      async run(values) {
        const agent = await open(values);
        const r = await agent.checkOnce({ reboot: values['reboot'] === true });
        print(
          values,
          r,
          r.status === 'no-update'
            ? `no update offered${r.pollAfterSeconds === undefined ? '' : `; the server asks for the next poll in ${r.pollAfterSeconds} s`}\n`
            : r.status === 'reboot-pending'
              ? `${r.version} is installed and waits for a reboot\n`
              : r.status === 'trial-pending'
                ? `${r.version} runs on trial and is not committed yet (abota-agent run / mark-good / mark-bad)\n`
                : `installed ${r.version}; ${r.rebooted ? 'rebooting' : 'reboot to try it (abota-agent status shows the pending slot)'}\n`,
        );
      },
    },
    {
      name: 'install',
      description: 'install from a local release directory (offline/USB) with the same verification',
      argument: { name: 'release-dir', description: 'directory with manifest.jws, root.json and blobs/' },
      options: {
        ...common,
        reboot,
        'allow-downgrade': {
          type: 'boolean',
          description: 'accept an older version (the securityVersion floor still applies)',
        },
      },
      async run(values, dir) {
        const agent = await open(values);
        const j = await agent.installFromDirectory(dir!, {
          reboot: values['reboot'] === true,
          allowDowngrade: values['allow-downgrade'] === true,
        });
        print(
          values,
          { version: j.version, targetSlot: j.targetSlot, phase: j.phase },
          `installed ${j.version} into slot ${j.targetSlot}; it boots once at the next reboot${values['reboot'] === true ? ' (rebooting)' : ''}\n`,
        );
      },
    },
    {
      name: 'mark-good',
      description: 'confirm the running slot (commits a pending trial boot without health checks)',
      options: common,
      async run(values) {
        const r = await (await open(values)).markGood();
        print(
          values,
          r,
          r.action === 'committed'
            ? `committed ${r.version} on slot ${r.slot}\n`
            : 'running slot confirmed\n',
        );
      },
    },
    {
      name: 'mark-bad',
      description: 'reject the trial boot of a pending install so the next boot returns to the old slot',
      options: { ...common, reboot: { type: 'boolean', description: 'run the reboot command afterwards' } },
      async run(values) {
        const r = await (await open(values)).markBad({ reboot: values['reboot'] === true });
        print(
          values,
          r,
          `rejected ${'version' in r ? r.version : ''}; the next boot returns to the old slot\n`,
        );
      },
    },
    {
      name: 'register',
      description: 'create the device key (if needed) and register it with a provisioning token',
      options: {
        ...common,
        token: {
          type: 'string',
          valueName: 'token',
          description: 'provisioning token from the operator',
          required: true,
        },
      },
      async run(values) {
        const id = await (await open(values)).register(String(values['token']));
        print(values, { deviceId: id }, `registered as ${id}\n`);
      },
    },
    {
      name: 'doctor',
      description:
        'check the config against this machine (slots, hash areas, boot env, trust root, clock, data directory, server URL) and print each problem with its fix; exit 5 when anything is wrong',
      options: common,
      async run(values) {
        const { formatDoctorReport, runDoctor } = await import('./doctor/run.js');
        const r = await runDoctor({ configPath: String(values['config']), env: io.env });
        print(values, r, formatDoctorReport(r));
        if (!r.ok) throw new ExitStatus(5);
      },
    },
    {
      name: 'init',
      description:
        'set up a new device: create the data directory and, for the file backend, the boot state (refuses to replace an existing one without --force)',
      options: {
        ...common,
        primary: {
          type: 'string',
          valueName: 'slot',
          description: 'the slot that holds the factory image and boots first (A or B)',
        },
        force: { type: 'boolean', description: 'replace an existing boot state' },
      },
      async run(values) {
        const primary = values['primary'] ?? 'A';
        if (primary !== 'A' && primary !== 'B')
          throw new UsageError(`--primary must be A or B, got ${JSON.stringify(primary)}`);
        const { initDevice } = await import('./init.js');
        const config = await loadAgentConfig(String(values['config']), io.env);
        const r = await initDevice(config, { primary, force: values['force'] === true });
        const lines = [`data directory ${r.dataDir}`];
        if (r.bootState)
          lines.push(
            `boot state ${r.bootState.path}${r.bootState.replaced ? ' (replaced)' : ''}: slot ${r.bootState.primary} boots, the other slot is empty`,
          );
        else
          lines.push(
            `the ${config.bootControl.backend} environment is the bootloader's: "abota-agent doctor" checks it`,
          );
        print(values, r, `${lines.join('\n')}\nnext: abota-agent doctor\n`);
      },
    },
    {
      name: 'simulate-reboot',
      description:
        'simulated devices only (file backend, or uefi on a directory efivars): reboot — the boot state (or the emulated firmware / systemd-boot) picks the slot, a trial consumes its try, the command-line file names it, the boot id changes',
      options: common,
      async run(values) {
        const { simulateReboot } = await import('./simulate-reboot.js');
        const r = await simulateReboot(await loadAgentConfig(String(values['config']), io.env));
        print(values, r, `booted slot ${r.slot} (boot id ${r.bootId})\n`);
      },
    },
    {
      name: 'run',
      description: 'daemon: settle the last boot, then poll, install and reboot; stops on SIGTERM',
      options: common,
      async run(values) {
        const agent = await open(values, true);
        let signal = io.signal;
        if (signal === undefined) {
          const ac = new AbortController();
          process.once('SIGTERM', () => ac.abort(new Error('SIGTERM')));
          process.once('SIGINT', () => ac.abort(new Error('SIGINT')));
          signal = ac.signal;
        }
        await agent.run(signal);
      },
    },
  ];

  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr(programHelp(commands));
    return 2;
  }
  if (name === '-V' || name === '--version') {
    const b = buildInfo();
    const built = b.builtAt ? `built ${b.builtAt.toISOString()}, ` : '';
    io.stdout(`abota-agent ${b.version} (${built}node ${process.version})\n`);
    return 0;
  }
  if (name === '-h' || name === '--help') {
    io.stdout(programHelp(commands));
    return 0;
  }
  if (name === 'help') {
    const target = commands.find((c) => c.name === rest[0]);
    io.stdout(target ? commandHelp(target, defaultsOf(target)) : programHelp(commands));
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (cmd === undefined) {
    io.stderr(`error: unknown command '${name}'\n${programHelp(commands)}`);
    return 2;
  }
  const json = argv.includes('--json');
  try {
    const parsed = parseCommand(cmd, rest, defaultsOf(cmd));
    if (parsed.help) {
      io.stdout(commandHelp(cmd, defaultsOf(cmd)));
      return 0;
    }
    await cmd.run(parsed.values, parsed.argument);
    return 0;
  } catch (e) {
    if (e instanceof ExitStatus) return e.status;
    if (e instanceof UsageError) {
      io.stderr(`error: ${e.message}\n${commandHelp(cmd, defaultsOf(cmd))}`);
      return 2;
    }
    const code = (e as { code?: unknown }).code;
    const codeText = typeof code === 'string' ? code : undefined;
    const status = exitStatusFor(codeText);
    // A config or device problem rarely comes alone: doctor lists them all, each with its fix.
    const hint =
      status === 5 && cmd.name !== 'doctor' && cmd.name !== 'init'
        ? 'hint: "abota-agent doctor" checks the whole device setup and says how to fix each problem\n'
        : '';
    io.stderr(
      json
        ? `${JSON.stringify({ error: { code: codeText ?? 'ERR_UNEXPECTED', message: (e as Error).message } })}\n`
        : `${codeText ?? 'error'}: ${(e as Error).message}\n${hint}`,
    );
    return status;
  }
}
