// Entry of the `abota-agent` bin (bin/abota-agent.js imports the built file): runs the CLI on
// import and sets the process exit status.
import { runAgentCli } from './agent-commands.js';

process.exitCode = await runAgentCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
});
