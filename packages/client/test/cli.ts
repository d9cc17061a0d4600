// The abota-agent command line run in this process with its output collected (tests).
import { type CliIo, runAgentCli } from '../src/agent-commands.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  agentOptions?: CliIo['agentOptions'],
): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await runAgentCli(args, {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      err += t;
    },
    env,
    ...(agentOptions !== undefined ? { agentOptions } : {}),
  });
  return { code, out, err };
}
