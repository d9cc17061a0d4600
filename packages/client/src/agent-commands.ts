// The `abota-agent` command line (commander): run, status, check, install, mark-good, mark-bad,
// register. Every command takes --config and --json; errors print `CODE: message` (or JSON)
// without a stack trace and map to an exit status by the class of their code.
import { Command, CommanderError, Option } from 'commander';
import { Agent, type AgentLogEvent, type AgentOptions, type AgentStatus } from './agent.js';
import { DEFAULT_CONFIG_PATH, loadAgentConfig } from './config.js';

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
  if (
    /^ERR_(CONFIG|STATE|JOURNAL|TRUST_ROOT|DEVICE_KEY|BOOTCTL|GRUBENV|UBOOTENV|INSTALL_SLOT|INSTALL_ACTIVE|INSTALL_TRIAL)/.test(
      code,
    )
  )
    return 5;
  return 1;
}

function formatStatus(s: AgentStatus): string {
  const lines = [
    `device:    ${s.deviceId ?? '(not registered)'}`,
    `running:   ${s.version} on slot ${s.bootedSlot} (next boot: ${s.primarySlot ?? 'rescue'})`,
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
  return `${lines.join('\n')}\n`;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
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

export async function runAgentCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = 0;
  const program = new Command('abota-agent')
    .description('abota device agent: signed A/B updates into the inactive slot, verified block by block')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError();

  const withCommon = (cmd: Command): Command =>
    cmd
      .addOption(
        new Option('-c, --config <path>', 'agent config file').default(
          io.env['ABOTA_CONFIG'] ?? DEFAULT_CONFIG_PATH,
        ),
      )
      .option('--json', 'machine-readable output', false);

  const open = async (opts: { config: string; json: boolean }): Promise<Agent> => {
    const config = await loadAgentConfig(opts.config, io.env);
    const log = (e: AgentLogEvent): void => {
      io.stderr(
        opts.json
          ? `${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`
          : `${e.level}: ${e.code ? `${e.code}: ` : ''}${e.message}\n`,
      );
    };
    return Agent.open({ config, log, ...io.agentOptions });
  };
  const print = (json: boolean, value: unknown, text: string): void => {
    io.stdout(json ? `${JSON.stringify(value)}\n` : text);
  };

  withCommon(
    program.command('status').description('show the running slot, versions and install progress'),
  ).action(async (opts: { config: string; json: boolean }) => {
    const s = await (await open(opts)).status();
    print(opts.json, s, formatStatus(s));
  });

  withCommon(
    program
      .command('check')
      .description('poll the update server once; install an offered release')
      .option('--reboot', 'run the reboot command after a successful install', false),
  ).action(async (opts: { config: string; json: boolean; reboot: boolean }) => {
    const agent = await open(opts);
    const r = await agent.checkOnce({ reboot: opts.reboot });
    print(
      opts.json,
      r,
      r.status === 'no-update'
        ? 'no update offered\n'
        : r.status === 'reboot-pending'
          ? `${r.version} is installed and waits for a reboot\n`
          : r.status === 'trial-pending'
            ? `${r.version} runs on trial and is not committed yet (abota-agent run / mark-good / mark-bad)\n`
            : `installed ${r.version}; ${r.rebooted ? 'rebooting' : 'reboot to try it (abota-agent status shows the pending slot)'}\n`,
    );
  });

  withCommon(
    program
      .command('install')
      .description('install from a local release directory (offline/USB) with the same verification')
      .argument('<release-dir>', 'directory with manifest.jws, root.json and blobs/')
      .option('--reboot', 'run the reboot command after a successful install', false)
      .option(
        '--allow-downgrade',
        'accept an older version (the securityVersion floor still applies)',
        false,
      ),
  ).action(
    async (
      dir: string,
      opts: { config: string; json: boolean; reboot: boolean; allowDowngrade: boolean },
    ) => {
      const agent = await open(opts);
      const j = await agent.installFromDirectory(dir, {
        reboot: opts.reboot,
        allowDowngrade: opts.allowDowngrade,
      });
      print(
        opts.json,
        { version: j.version, targetSlot: j.targetSlot, phase: j.phase },
        `installed ${j.version} into slot ${j.targetSlot}; it boots once at the next reboot${opts.reboot ? ' (rebooting)' : ''}\n`,
      );
    },
  );

  withCommon(
    program
      .command('mark-good')
      .description('confirm the running slot (commits a pending trial boot without health checks)'),
  ).action(async (opts: { config: string; json: boolean }) => {
    const r = await (await open(opts)).markGood();
    print(
      opts.json,
      r,
      r.action === 'committed' ? `committed ${r.version} on slot ${r.slot}\n` : 'running slot confirmed\n',
    );
  });

  withCommon(
    program
      .command('mark-bad')
      .description('reject the trial boot of a pending install so the next boot returns to the old slot')
      .option('--reboot', 'run the reboot command afterwards', false),
  ).action(async (opts: { config: string; json: boolean; reboot: boolean }) => {
    const r = await (await open(opts)).markBad({ reboot: opts.reboot });
    print(
      opts.json,
      r,
      `rejected ${'version' in r ? r.version : ''}; the next boot returns to the old slot\n`,
    );
  });

  withCommon(
    program
      .command('register')
      .description('create the device key (if needed) and register it with a provisioning token')
      .requiredOption('--token <token>', 'provisioning token from the operator'),
  ).action(async (opts: { config: string; json: boolean; token: string }) => {
    const id = await (await open(opts)).register(opts.token);
    print(opts.json, { deviceId: id }, `registered as ${id}\n`);
  });

  withCommon(
    program
      .command('run')
      .description('daemon: settle the last boot, then poll, install and reboot; stops on SIGTERM'),
  ).action(async (opts: { config: string; json: boolean }) => {
    const agent = await open(opts);
    let signal = io.signal;
    if (signal === undefined) {
      const ac = new AbortController();
      process.once('SIGTERM', () => ac.abort(new Error('SIGTERM')));
      process.once('SIGINT', () => ac.abort(new Error('SIGINT')));
      signal = ac.signal;
    }
    await agent.run(signal);
  });

  const json = argv.includes('--json');
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help / --version exit 0; usage errors were already printed by commander.
      return e.exitCode === 0 ? 0 : 2;
    }
    const code = (e as { code?: unknown }).code;
    const codeText = typeof code === 'string' ? code : undefined;
    io.stderr(
      json
        ? `${JSON.stringify({ error: { code: codeText ?? 'ERR_UNEXPECTED', message: (e as Error).message } })}\n`
        : `${codeText ?? 'error'}: ${(e as Error).message}\n`,
    );
    exitCode = exitStatusFor(codeText);
  }
  return exitCode;
}
