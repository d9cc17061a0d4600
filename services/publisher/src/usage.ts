// Usage errors of the `abota` command line: every one exits 2 (docs/style.md "Errors a person can
// act on") and names everything that is missing at once — commander on its own stops at the first
// missing argument or option and exits 1, so a user fixes the command line one flag at a time.
import { Command, CommanderError } from 'commander';

/** Exit status of a usage error (a wrong command line), as for every abota CLI. */
export const USAGE_EXIT_STATUS = 2;

/** The required arguments and mandatory options a parsed command still lacks, as they are written. */
export function missingUsage(cmd: Command): string[] {
  const args = cmd.registeredArguments
    .filter((arg, index) => arg.required && cmd.args[index] == null)
    .map((arg) => `argument <${arg.name()}>`);
  const options = cmd.options
    .filter((o) => o.mandatory && cmd.getOptionValue(o.attributeName()) === undefined)
    .map((o) => `option ${o.flags}`);
  return [...args, ...options];
}

/**
 * A commander Command whose subcommands are of the same class and whose missing-input errors
 * list every missing argument and option. Commander calls these two hooks when it finds the
 * first missing one (options before arguments); both report the complete list.
 */
export class AbotaCommand extends Command {
  override createCommand(name?: string): Command {
    return new AbotaCommand(name);
  }

  missingMandatoryOptionValue(): never {
    return this.reportMissing();
  }

  missingArgument(): never {
    return this.reportMissing();
  }

  private reportMissing(): never {
    const missing = missingUsage(this);
    this.error(`error: ${this.commandPath()}: missing ${missing.join(', ')}`, {
      code: 'commander.missingArgument',
      exitCode: USAGE_EXIT_STATUS,
    });
    // error() throws under exitOverride and exits otherwise.
    throw new CommanderError(USAGE_EXIT_STATUS, 'commander.missingArgument', missing.join(', '));
  }

  /** "abota rollout abort": the command as a user types it. */
  commandPath(): string {
    const names: string[] = [];
    for (let c: Command | null = this; c !== null; c = c.parent) names.unshift(c.name());
    return names.join(' ');
  }
}

/** Exit status for an error commander raised: 0 for --help and --version, 2 for every usage error. */
export function exitStatusOfCommanderError(err: CommanderError): number {
  return err.exitCode === 0 ? 0 : USAGE_EXIT_STATUS;
}
