// `abota-server`: reads the configuration (environment + flags, see README), starts the server
// and shuts it down gracefully on SIGTERM / SIGINT. `--help` prints the settings. A one-line
// message without a stack trace on failure: exit status 2 for a usage or configuration error,
// 1 for a start-up error (data directory in use, port taken, database unreachable).
import type { ServerConfig } from './config.js';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';
import { serverUsage } from './usage.js';

const USAGE_EXIT_STATUS = 2;

function fail(error: unknown, status: number, hint?: string): never {
  const code =
    typeof error === 'object' && error !== null && 'code' in error ? ` [${String(error.code)}]` : '';
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`abota-server: ${message}${code}\n${hint === undefined ? '' : `${hint}\n`}`);
  process.exit(status);
}

/** The configuration, or exit: 0 after --help, 2 on a usage error. */
function configFromCommandLine(argv: readonly string[]): ServerConfig {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(serverUsage());
    process.exit(0);
  }
  try {
    return loadConfig(process.env, argv);
  } catch (error) {
    return fail(
      error,
      USAGE_EXIT_STATUS,
      '(run abota-server --help for the options and environment variables)',
    );
  }
}

async function main(): Promise<void> {
  const config = configFromCommandLine(process.argv.slice(2));
  const logger = createLogger({ level: config.logLevel });
  const running = await startServer({ config, logger, env: process.env });
  if (running.generatedAdminKey !== undefined) {
    // Printed once, on the terminal only (not through the logger, whose output may be shipped).
    process.stderr.write(
      `\nNo API key existed, so an admin key was created. It is shown only now; store it safely:\n\n  ${running.generatedAdminKey}\n\n`,
    );
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error(
          { err: { message: error instanceof Error ? error.message : String(error) } },
          'shutdown failed',
        );
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => fail(error, 1));
