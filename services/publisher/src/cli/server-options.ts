// The flags every command that talks to an update server shares: --server, --api-key-env, --json.
import type { Command } from 'commander';

export function withServerOptions(command: Command): Command {
  return command
    .option('--server <url>', 'update server base URL (default: $ABOTA_SERVER)')
    .option('--api-key-env <VAR>', 'environment variable holding the API key (default ABOTA_API_KEY)')
    .option('--json', 'print one JSON document');
}
