// `abota-server`: reads the configuration (environment + flags, see README), starts the server
// and shuts it down gracefully on SIGTERM / SIGINT. Exit status 1 with a one-line message on a
// configuration or start-up error (no stack trace).
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env, process.argv.slice(2));
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

main().catch((error: unknown) => {
  const code =
    typeof error === 'object' && error !== null && 'code' in error ? ` [${String(error.code)}]` : '';
  process.stderr.write(`abota-server: ${error instanceof Error ? error.message : String(error)}${code}\n`);
  process.exit(1);
});
