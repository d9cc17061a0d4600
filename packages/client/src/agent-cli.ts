// Entry of the `abota-agent` bin (bin/abota-agent.js imports dist/abota-agent.mjs, the bundle
// the build makes from this file): runs the CLI on import and sets the process exit status. All
// HTTP goes through node:http (http/node-http.ts): the agent never loads undici, which keeps it
// small and lets it run under `--jitless` (infra/systemd/abota-agent.service; README "Memory").
import { runAgentCli } from './agent-commands.js';
import { nodeHttpFetch } from './http/node-http.js';

process.exitCode = await runAgentCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  agentOptions: { fetch: nodeHttpFetch },
});
