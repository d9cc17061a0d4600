// Entry of the `abota-agent` bin (the bundle dist/abota-agent.cjs the build makes from this file;
// bin/abota-agent.js loads it): runs the CLI on import and sets the process exit status. No
// top-level await: the bundle is CommonJS (scripts/bundle.mjs, README "Memory"). All
// HTTP goes through node:http (http/node-http.ts): the agent never loads undici, which keeps it
// small and lets it run under `--jitless` (infra/systemd/abota-agent.service; README "Memory").
import { runAgentCli } from './agent-commands.js';
import { nodeHttpFetch } from './http/node-http.js';

void runAgentCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  agentOptions: { fetch: nodeHttpFetch },
}).then((code) => {
  process.exitCode = code;
});
