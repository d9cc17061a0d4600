// Command actions load on demand: the command table (this directory) imports only commander, so
// `abota --help` and `abota --version` never load the modules behind the commands (the release
// builder, the verity and delta engines, the admin client, cli-progress, ...).
// Measured (README "Start-up"): `abota --help` loaded 182 modules before this split.

/** Any module whose `name` export is a command action. */
type ActionModule<K extends string> = { [P in K]: (...args: never[]) => Promise<void> | void };

/**
 * A commander action that imports `load()` when the command runs and calls its `name` export
 * with the arguments commander passes (positional arguments, options, the command).
 */
export function lazyAction<K extends string>(
  load: () => Promise<ActionModule<K>>,
  name: K,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const action = (await load())[name] as (...a: unknown[]) => Promise<void> | void;
    await action(...args);
  };
}
