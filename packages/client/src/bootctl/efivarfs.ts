// UEFI variables through efivarfs (Linux Documentation/filesystems/efivarfs.rst): one file
// `Name-GUID` per variable whose content is the 4-byte little-endian attribute word followed by
// the data. What this module does the way libefivar's efivarfs.c does it:
//
// - A write is ONE write() of header + data (efivarfs turns each write() into one SetVariable();
//   a split write would set the variable to a prefix). The firmware's SetVariable() is atomic:
//   after a crash the variable holds the old or the new value, never a mix.
// - Most variables (every EFI_GLOBAL_VARIABLE one: Boot####, BootOrder, BootNext) are immutable
//   (FS_IMMUTABLE_FL, set by the kernel at create) so a stray `rm` cannot brick the machine. They
//   are made mutable for the write or unlink and made immutable again afterwards. libefivar uses
//   the FS_IOC_SETFLAGS ioctl; Node has no ioctl, so this runs `chattr -i` / `chattr +i` and reads
//   the flag with `lsattr -d` (e2fsprogs; both work on efivarfs). A crash between `chattr -i` and
//   `chattr +i` leaves the variable mutable, which changes nothing the firmware sees.
//
// A root that is not efivarfs (statfs magic 0xde5e81e4) is a plain directory standing in for it
// (tests, the simulator): there a write is temp file + fsync + rename + fsync, which gives the
// same old-or-new outcome a crash leaves on the real thing. libefivar accepts such a directory
// too when EFIVARFS_PATH names it (efivarfs_probe), which is how the conformance tests run
// efibootmgr against it.
import { constants } from 'node:fs';
import { access, open, readdir, readFile, rename, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import { EFI_VARIABLE_NV_BS_RT } from './efivar-formats.js';

/**
 * Run lsattr/chattr. child_process is loaded at the first call, not at start: the agent bundle
 * must not load it before it needs it (test/e2e/agent-bundle-modules.test.ts, issue 19's memory
 * budget).
 */
function run(file: string, args: string[]): Promise<{ stdout: string }> {
  const { execFile } = process.getBuiltinModule('node:child_process');
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding: 'utf8' }, (error, stdout) =>
      error ? reject(error) : resolve({ stdout }),
    );
  });
}

/**
 * The e2fsprogs programs the store runs (`lsattr -d` before every write, `chattr -i/+i` around
 * writes of immutable variables) that are not on `searchPath` (default $PATH): doctor names
 * them before an install finds out at the moment it arms a trial. Debian's busybox has neither.
 */
export async function missingEfivarTools(searchPath = process.env['PATH'] ?? ''): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of ['lsattr', 'chattr']) {
    let found = false;
    for (const dir of searchPath.split(':').filter((d) => d !== '')) {
      found = await access(join(dir, tool), constants.X_OK).then(
        () => true,
        () => false,
      );
      if (found) break;
    }
    if (!found) missing.push(tool);
  }
  return missing;
}

export const DEFAULT_EFIVARS_PATH = '/sys/firmware/efi/efivars';
export const EFIVARFS_MAGIC = 0xde5e81e4;
/** Far above any variable the backend reads (Boot#### with a long path is ~200 bytes). */
const MAX_VARIABLE_BYTES = 64 * 1024;

export interface EfiVariable {
  attributes: number;
  data: Uint8Array;
}

/** A step of a variable write/delete; the crash tests stop a run at each of them. */
export type EfiVarStep = 'make-mutable' | 'write' | 'rename' | 'make-immutable' | 'unlink';

export interface EfiVarStoreOptions {
  /** efivarfs mount point, or a directory standing in for it. Default /sys/firmware/efi/efivars. */
  root?: string;
  /** Called before each step (tests: simulated crash points). */
  beforeStep?: (step: EfiVarStep, variable: string) => void | Promise<void>;
}

function ioError(message: string, cause?: unknown): ClientError {
  return new ClientError('ERR_EFIVARS_IO', message, cause === undefined ? undefined : { cause });
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

export class EfiVarStore {
  readonly root: string;
  readonly #beforeStep: EfiVarStoreOptions['beforeStep'];
  #kind: Promise<'efivarfs' | 'directory'> | undefined;

  constructor(options: EfiVarStoreOptions = {}) {
    this.root = options.root ?? DEFAULT_EFIVARS_PATH;
    this.#beforeStep = options.beforeStep;
  }

  path(name: string, guid: string): string {
    if (!/^[A-Za-z0-9_#.+-]+$/.test(name)) {
      throw new ClientError('ERR_EFIVAR_INVALID', `variable name ${JSON.stringify(name)} is not supported`);
    }
    return join(this.root, `${name}-${guid.toLowerCase()}`);
  }

  /** Whether the root is a real efivarfs mount or a directory standing in for it. */
  kind(): Promise<'efivarfs' | 'directory'> {
    this.#kind ??= statfs(this.root).then(
      // f_type is a C long: compare its low 32 bits, whatever sign it arrives with.
      (s) => (s.type >>> 0 === EFIVARFS_MAGIC ? ('efivarfs' as const) : ('directory' as const)),
      (e: unknown) => {
        this.#kind = undefined;
        throw ioError(
          `${this.root} cannot be read (${errnoOf(e) ?? String(e)}): mount efivarfs there (mount -t efivarfs efivarfs ${DEFAULT_EFIVARS_PATH}) or configure bootControl.efivarsPath`,
          e,
        );
      },
    );
    return this.#kind;
  }

  /** The variable, or undefined when it does not exist. */
  async get(name: string, guid: string): Promise<EfiVariable | undefined> {
    const path = this.path(name, guid);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return undefined;
      throw ioError(`cannot read EFI variable ${path}: ${(e as Error).message}`, e);
    }
    // efivarfs keeps an empty file for a variable created but never written (or deleted by the
    // firmware behind its back): no variable.
    if (bytes.length === 0) return undefined;
    if (bytes.length < 4 || bytes.length > MAX_VARIABLE_BYTES + 4) {
      throw new ClientError(
        'ERR_EFIVAR_INVALID',
        `EFI variable ${path} is ${bytes.length} bytes; expected a 4-byte attribute word and at most ${MAX_VARIABLE_BYTES} bytes of data`,
      );
    }
    return { attributes: bytes.readUInt32LE(0), data: new Uint8Array(bytes.subarray(4)) };
  }

  /** Set a variable: one write() of attributes + data (the firmware applies it atomically). */
  async set(name: string, guid: string, data: Uint8Array, attributes = EFI_VARIABLE_NV_BS_RT): Promise<void> {
    const path = this.path(name, guid);
    const buf = Buffer.alloc(4 + data.length);
    buf.writeUInt32LE(attributes >>> 0, 0);
    buf.set(data, 4);
    const exists = await stat(path).then(
      () => true,
      (e: unknown) => {
        if (errnoOf(e) === 'ENOENT') return false;
        throw ioError(`cannot stat EFI variable ${path}: ${(e as Error).message}`, e);
      },
    );
    let immutable = exists && (await this.#isImmutable(path));
    if (immutable) await this.#chattr(path, '-i', 'make-mutable');
    if ((await this.kind()) === 'efivarfs') {
      const fh = await open(
        path,
        exists ? constants.O_WRONLY : constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
        0o644,
      ).catch((e: unknown) => {
        throw ioError(`cannot open EFI variable ${path} for writing: ${(e as Error).message}`, e);
      });
      try {
        // The kernel makes a new protected variable immutable at create (libefivar: "in case we
        // created a protected file … the kernel made it immutable immediately").
        if (!exists && (await this.#isImmutable(path))) {
          immutable = true;
          await this.#chattr(path, '-i', 'make-mutable');
        }
        await this.#beforeStep?.('write', path);
        const { bytesWritten } = await fh.write(buf, 0, buf.length, null);
        if (bytesWritten !== buf.length) {
          throw ioError(`short write to EFI variable ${path}: ${bytesWritten} of ${buf.length} bytes`);
        }
      } catch (e) {
        if (e instanceof ClientError) throw e;
        throw ioError(
          `cannot write EFI variable ${path}: ${(e as Error).message}${errnoOf(e) === 'ENOSPC' ? ' (firmware variable store full)' : ''}`,
          e,
        );
      } finally {
        await fh.close();
      }
    } else {
      const tmp = join(this.root, `.${name}-${guid.toLowerCase()}.tmp`);
      await this.#beforeStep?.('write', path);
      const fh = await open(tmp, 'w', 0o644);
      try {
        await fh.writeFile(buf);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.#beforeStep?.('rename', path);
      await rename(tmp, path);
      await this.#syncRoot();
    }
    if (immutable) await this.#chattr(path, '+i', 'make-immutable');
  }

  /** Delete a variable (no error when it does not exist). */
  async delete(name: string, guid: string): Promise<void> {
    const path = this.path(name, guid);
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (!exists) return;
    if (await this.#isImmutable(path)) await this.#chattr(path, '-i', 'make-mutable');
    await this.#beforeStep?.('unlink', path);
    try {
      await unlink(path);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      throw ioError(`cannot delete EFI variable ${path}: ${(e as Error).message}`, e);
    }
    if ((await this.kind()) === 'directory') await this.#syncRoot();
  }

  /** Names of the variables with `guid` (dot files — a stand-in directory's temp files — skipped). */
  async names(guid: string): Promise<string[]> {
    const suffix = `-${guid.toLowerCase()}`;
    const entries = await readdir(this.root).catch((e: unknown) => {
      throw ioError(`cannot list ${this.root}: ${(e as Error).message}`, e);
    });
    return entries
      .filter((n) => !n.startsWith('.') && n.toLowerCase().endsWith(suffix))
      .map((n) => n.slice(0, -suffix.length));
  }

  async #syncRoot(): Promise<void> {
    const dir = await open(this.root, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async #isImmutable(path: string): Promise<boolean> {
    try {
      const { stdout } = await run('lsattr', ['-d', path]);
      const flags = stdout.trim().split(/\s+/)[0] ?? '';
      return flags.includes('i');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') {
        throw ioError(
          'lsattr is not installed (e2fsprogs): it reads the immutable flag efivarfs sets on variables',
        );
      }
      // A stand-in directory on a filesystem without attribute support: nothing is immutable.
      if ((await this.kind()) === 'directory') return false;
      throw ioError(`lsattr -d ${path} failed: ${(e as { stderr?: string }).stderr?.trim() ?? String(e)}`, e);
    }
  }

  async #chattr(path: string, flag: '-i' | '+i', step: EfiVarStep): Promise<void> {
    await this.#beforeStep?.(step, path);
    try {
      await run('chattr', [flag, path]);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') {
        throw ioError(
          'chattr is not installed (e2fsprogs): efivarfs variables must be made mutable before a write',
        );
      }
      throw ioError(
        `chattr ${flag} ${path} failed: ${(e as { stderr?: string }).stderr?.trim() ?? String(e)} (the agent needs CAP_LINUX_IMMUTABLE)`,
        e,
      );
    }
  }
}
