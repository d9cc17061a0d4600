// `abota rollout create|list|status|start|pause|resume|abort|advance|rollback|approve`: canary rollouts.
// The command table only: the actions (../commands/rollout.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('../commands/rollout.js');

export function registerRolloutCommands(program: Command): void {
  const rollout = program
    .command('rollout')
    .description('canary rollouts on an update server (API key from $ABOTA_API_KEY)');

  common(
    rollout
      .command('create')
      .description('create a staged rollout of a release; it starts at once unless --draft')
      .option('--release <id>', 'release id')
      .option('--product <id>', 'product of the release (with --version)')
      .option('--version <version>', 'release version (with --product)')
      .option('--name <name>', 'a name for people')
      .option('--stages <percents>', 'comma-separated stage percentages of the selected devices', '1,10,100')
      .option('--stages-json <json>', 'stages as JSON, overriding --stages and the thresholds')
      .option('--bake <duration>', 'minimum time in each stage before advancing (90s, 15m, 2h, 1d)', '1h')
      .option(
        '--health-bake <duration>',
        'health bake window after commit, whole minutes (10m, 1h; default 0 = off): devices re-run their health checks and must stay healthy this long before the stage advances',
      )
      .option('--min-committed <n>', 'committed devices a stage needs before advancing')
      .option('--max-failure <percent>', 'pause when failed + rolled back exceed this share of outcomes', '5')
      .option('--min-sample <n>', 'outcomes needed before the failure rate is judged', '5')
      .option('--max-concurrent <n>', 'devices updating at once, at most')
      .option(
        '--min-devices <n>',
        'each stage reaches at least this many devices, whatever its percent (server default 1)',
      )
      .option('--tag <tag>', 'device must carry this tag (repeatable: all required)', collect, [])
      .option(
        '--group <name>',
        'device must be in one of these groups (tag group:<name>; repeatable)',
        collect,
        [],
      )
      .option('--hardware <id>', 'device hardware (repeatable: any)', collect, [])
      .option('--device <id>', 'explicit device id (repeatable: any)', collect, [])
      .option('--current-version <constraint>', 'running-version constraint, e.g. ">=1.0.0 <1.2.0"')
      .option('--window <HH:MM-HH:MM>', 'maintenance window for new installs')
      .option('--window-tz <tz>', 'utc or device-local (the device timezone attribute)', 'utc')
      .option('--window-days <days>', 'window days, 0 = Sunday, comma-separated')
      .option('--allow-downgrade', 'offer the release to devices running a newer version')
      .option('--draft', 'create it as a draft; `abota rollout start` starts it')
      .option(
        '--auto-rollback [version]',
        'when a stage crosses its failure threshold, roll the devices that installed it back by itself (to VERSION, default the newest earlier release)',
      )
      .option(
        '--no-late-joiners',
        'freeze the population at start: devices registered or retagged later do not join',
      )
      .option(
        '--dry-run',
        'create nothing: show how many devices each stage would reach now (and why the others are left out)',
      )
      .option(
        '--id <uuid>',
        "the rollout's id: the one a --dry-run printed, to get exactly the cohorts it counted",
      )
      .addHelpText('after', CREATE_DEFAULTS_HELP),
  ).action(lazyAction(actions, 'create'));

  common(
    rollout
      .command('list')
      .description('list rollouts')
      .option('--product <id>', 'only this product')
      .option('--state <state>', 'only draft|active|paused|completed|aborted'),
  ).action(lazyAction(actions, 'list'));

  common(
    rollout
      .command('status')
      .argument('<id>', 'rollout id')
      .description('per-stage counts, failure rate, time in stage and the next automatic action')
      .option('--watch', 'keep refreshing until the rollout completes or is aborted (Ctrl-C stops)')
      .option('--interval <seconds>', 'refresh interval for --watch', '2')
      .option('--count <n>', 'with --watch: stop after this many refreshes'),
  ).action(lazyAction(actions, 'status'));

  for (const [action, description] of [
    ['start', 'start a draft rollout at its first stage'],
    ['pause', 'stop new offers (devices already installing finish)'],
    ['resume', 'continue a paused rollout at its stage (the bake time starts again)'],
    ['abort', 'end a rollout for good: nothing more is offered'],
  ] as const) {
    const cmd = common(rollout.command(action).argument('<id>', 'rollout id').description(description));
    if (action === 'pause' || action === 'abort')
      cmd.option('--reason <text>', 'why, for the audit log and status');
    cmd.action((...args: unknown[]) => lazyAction(actions, 'transition')(action, ...args));
  }

  common(
    rollout
      .command('advance')
      .argument('<id>', 'rollout id')
      .description(
        'move a running rollout to its next stage now, without waiting for its bake time and thresholds',
      )
      .option('--reason <text>', 'why, for the audit log'),
  ).action(lazyAction(actions, 'advance'));

  common(
    rollout
      .command('approve')
      .argument('<id>', 'rollout id')
      .description(
        "approve a rollout of a product that requires approval (four-eyes: another operator or admin key than its creator's); it starts unless created with --draft",
      )
      .option('--comment <text>', 'for the audit log'),
  ).action(lazyAction(actions, 'approve'));

  common(
    rollout
      .command('rollback')
      .argument('<id>', 'the rollout to roll back')
      .description(
        'abort the rollout and start a rollback rollout (downgrade allowed) of an earlier release to the devices it reached',
      )
      .option('--to-release <id>', 'release id to return to')
      .option('--to-version <version>', "release version to return to (in the rollout's product)")
      .option('--stages <percents>', 'stage percentages for the rollback', '100')
      .option('--bake <duration>', 'minimum time in each rollback stage'),
  ).action(lazyAction(actions, 'rollback'));
}

const collect = (value: string, previous: string[]) => [...previous, value];

function common(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'update server base URL (default: $ABOTA_SERVER)')
    .option('--api-key-env <VAR>', 'environment variable holding the API key (default ABOTA_API_KEY)')
    .option('--json', 'print one JSON document instead of text');
}

/** What the defaults of `rollout create` do, for `--help` (server side: README "Rollouts"). */
const CREATE_DEFAULTS_HELP = `
How stages work, with the defaults:
  --stages 1,10,100   three stages: 1 %, then 10 %, then all of the selected devices. Membership
                      is a stable hash of (rollout, device): raising the percent only adds devices.
  --min-devices 1     each stage reaches at least this many devices whatever its percent gives,
                      so in a fleet of 3 the 1 % canary is 1 device, not none (0: percent only).
  --bake 1h           a stage runs at least this long before it advances by itself.
  --health-bake 0     off. With e.g. 10m, committed devices re-run their health checks for 10
                      minutes and report; only devices that stayed healthy that long count
                      towards --min-committed, and an unhealthy (crash-looping) or rolled-back-
                      after-commit device counts as failed (--max-failure).
  --min-committed     (server default 1) committed devices a stage needs before it advances.
  --max-failure 5     pause automatically when more than 5 % of outcomes failed or rolled back,
  --min-sample 5      judged once at least 5 devices have an outcome.
  A stage advances by itself when it has baked and is healthy; \`abota rollout advance <id>\`
  moves to the next stage at once (e.g. once you have watched the canary long enough).

--dry-run           creates nothing: per stage, the devices it would reach right now (the
                      selector, compatible hardware, running versions and maintenance window
                      applied). A device's stage is a hash of (rollout id, device id), so the
                      dry run picks the id: create with --id <that id> to get exactly its numbers.

Examples:
  abota rollout create --product eflow-vm --version 1.2.0
  abota rollout create --product eflow-vm --version 1.2.0 --group lab --dry-run
  abota rollout create --release <id> --stages 100 --bake 0    # everyone at once
  abota rollout create --release <id> --stages 5,100 --min-devices 2 --group lab
  abota rollout create --product eflow-vm --version 1.3.0 --auto-rollback          # back to 1.2.x by itself
  abota rollout create --product eflow-vm --version 1.3.0 --group lab --no-late-joiners
  abota rollout create --release <id> --stages 1,100 --health-bake 30m --max-failure 0

Safety policies:
  --auto-rollback[=VERSION]  off by default. When a stage crosses --max-failure the server pauses
                      it and, with this flag, aborts it and starts a rollback rollout to VERSION
                      (default: the newest earlier release, resolved now) for exactly the devices
                      that installed it; audited with the failure numbers.
  --no-late-joiners   by default devices registered or retagged into the selector while the rollout
                      runs join it; with this flag its population is the one it had at start.
  Products with four-eyes approval (\`abota product set ID --require-approval\`): the rollout is
  created as a draft awaiting approval; another operator or admin key runs \`abota rollout approve ID\`.
`;
