// Shared helpers for the verity tests: data patterns of the known-answer vectors, veritysetup
// argument lists turned into VerityParams, and running the real veritysetup.
import { spawnSync } from 'node:child_process';
import { open } from 'node:fs/promises';
import type { VerityParams } from '../src/index.js';
import { parseSaltHex } from '../src/index.js';

/** Write `bytes` of pattern data: "zeros", or "mod251" (byte at offset i is i mod 251). */
export async function writePattern(path: string, pattern: 'zeros' | 'mod251', bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const chunk = 251 * 4096 * 4; // a multiple of 251 keeps the pattern aligned across chunks
    const buf = Buffer.alloc(chunk);
    if (pattern === 'mod251') for (let i = 0; i < chunk; i++) buf[i] = i % 251;
    for (let at = 0; at < bytes; at += chunk) {
      await fh.write(buf, 0, Math.min(chunk, bytes - at), at);
    }
    await fh.truncate(bytes);
  } finally {
    await fh.close();
  }
}

/** veritysetup `--opt=value` arguments as Partial<VerityParams>. */
export function paramsFromArgs(args: readonly string[]): Partial<VerityParams> {
  const p: Partial<VerityParams> = {};
  for (const arg of args) {
    const [name, value = ''] = arg.split('=', 2) as [string, string?];
    switch (name) {
      case '--format':
        p.hashType = Number(value) as 0 | 1;
        break;
      case '--hash':
        p.algorithm = value;
        break;
      case '--data-block-size':
        p.dataBlockSize = Number(value);
        break;
      case '--hash-block-size':
        p.hashBlockSize = Number(value);
        break;
      case '--data-blocks':
        p.dataBlocks = Number(value);
        break;
      case '--hash-offset':
        p.hashOffset = Number(value);
        break;
      case '--salt':
        p.salt = parseSaltHex(value);
        break;
      case '--uuid':
        p.uuid = value;
        break;
      case '--no-superblock':
        p.superblock = false;
        break;
      default:
        throw new Error(`unhandled veritysetup argument ${arg}`);
    }
  }
  return p;
}

export { sha256File } from '@abota/testkit';

export interface ToolRun {
  status: number;
  stdout: string;
  stderr: string;
}

export function runTool(tool: string, args: readonly string[]): ToolRun {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function rootHashFromOutput(stdout: string): string {
  const m = /^Root hash:\s+([0-9a-f]+)$/m.exec(stdout);
  if (!m) throw new Error(`no "Root hash:" line in:\n${stdout}`);
  return m[1]!;
}
