// The Debian tools the image builders run, each with the package that provides it, so a
// missing tool is reported as "install <package>" before any output is written.
import { spawn } from 'node:child_process';
import { ImageError } from './errors.js';

/** Command → Debian package. */
export const TOOL_PACKAGES = {
  'mkfs.erofs': 'erofs-utils',
  mksquashfs: 'squashfs-tools',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  tar: 'tar',
  'mkfs.vfat': 'dosfstools',
  mmd: 'mtools',
  mcopy: 'mtools',
  sgdisk: 'gdisk',
  'grub-mkimage': 'grub-common',
  'qemu-img': 'qemu-utils',
  busybox: 'busybox-static',
  dmsetup: 'dmsetup',
  nft: 'nftables',
  ldd: 'libc-bin',
  objcopy: 'binutils',
  sbsign: 'sbsigntool',
  sbverify: 'sbsigntool',
} as const;

export type Tool = keyof typeof TOOL_PACKAGES;

/** Where tools are looked up: $ABOTA_TOOLS_PATH if set (tests), else $PATH plus the sbin dirs. */
function searchPath(): string {
  return process.env['ABOTA_TOOLS_PATH'] ?? `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin:/usr/local/sbin`;
}
/** Anything larger on stdout/stderr is cut: tools here print short reports. */
const MAX_OUTPUT = 1 << 20;

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Run `tool args…`; ENOENT → ERR_IMAGE_TOOL_MISSING naming the package, exit ≠ 0 → ERR_IMAGE_TOOL_FAILED. */
export function runTool(tool: Tool, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, {
      cwd: options.cwd,
      env: { ...process.env, PATH: searchPath(), LC_ALL: 'C', ...options.env },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString('utf8');
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString('utf8');
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(missingTool(tool));
      else reject(new ImageError('ERR_IMAGE_TOOL_FAILED', `${tool}: ${err.message}`, { cause: err }));
    });
    child.on('close', (status, signal) => {
      if (status === 0) {
        resolve({ stdout, stderr });
        return;
      }
      const why = (stderr.trim() || stdout.trim()).split('\n').slice(-6).join('\n');
      reject(
        new ImageError(
          'ERR_IMAGE_TOOL_FAILED',
          `${tool} ${args.join(' ')} failed (${signal ?? `exit ${status}`}): ${why}`,
        ),
      );
    });
  });
}

export function missingTool(tool: Tool): ImageError {
  const pkg = TOOL_PACKAGES[tool];
  return new ImageError(
    'ERR_IMAGE_TOOL_MISSING',
    `${tool} is not installed: apt-get install ${pkg} (Debian package ${pkg})`,
  );
}

/** Resolve every tool up front so a missing one fails before any output exists. */
export async function requireTools(tools: readonly Tool[]): Promise<Map<Tool, string>> {
  const found = new Map<Tool, string>();
  for (const tool of tools) {
    const r = await new Promise<string | undefined>((resolve) => {
      const child = spawn('/bin/sh', ['-c', 'command -v "$0"', tool], {
        env: { ...process.env, PATH: searchPath() },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString('utf8');
      });
      child.on('close', (status) => resolve(status === 0 && out.trim() !== '' ? out.trim() : undefined));
      child.on('error', () => resolve(undefined));
    });
    if (r === undefined) throw missingTool(tool);
    found.set(tool, r);
  }
  return found;
}
