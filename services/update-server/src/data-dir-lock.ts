// One writer per data directory: the embedded store (PGlite in db/, blobs in blobs/) is not safe
// for two processes — PGlite takes no lock, so a second server on the same directory silently
// loses writes. The lock is a pid file created with O_EXCL that names its holder (pid, host, boot
// id, the process's start time). It "dies with the process": a later server finds the holder gone
// (no such pid, another boot, or a pid reused by a younger process) and takes the lock over, so a
// server killed with SIGKILL never blocks a restart. No npm lock package fits: proper-lockfile
// judges staleness by mtime alone (a restart within its timeout is refused, a paused process
// loses its lock) and records no pid to name in the error; fcntl/flock locks need a native addon.
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ServerError } from './errors.js';

export const LOCK_FILE_NAME = 'abota-server.lock';

/** What the lock file records about its holder. */
interface LockHolder {
  pid: number;
  hostname: string;
  /** /proc/sys/kernel/random/boot_id: a pid from another boot is certainly gone. */
  bootId: string | null;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot): tells a reused pid from the holder. */
  startTicks: string | null;
  startedAt: string;
}

/** Lock files this process holds: a second server in the same process is refused too. */
const heldHere = new Set<string>();

export interface DataDirLock {
  path: string;
  release(): Promise<void>;
}

const readText = (path: string): Promise<string | null> => readFile(path, 'utf8').catch(() => null);

/** State and start time of a process from /proc/<pid>/stat (proc(5)), or null without procfs. */
async function processStat(pid: number): Promise<{ state: string; startTicks: string } | null> {
  const stat = await readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) is in parentheses and may contain spaces: count from its end.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const [state, startTicks] = [fields[0], fields[19]];
  return state === undefined || startTicks === undefined ? null : { state, startTicks };
}

async function currentHolder(): Promise<LockHolder> {
  return {
    pid: process.pid,
    hostname: hostname(),
    bootId: (await readText('/proc/sys/kernel/random/boot_id'))?.trim() ?? null,
    startTicks: (await processStat(process.pid))?.startTicks ?? null,
    startedAt: new Date().toISOString(),
  };
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (typeof v.pid !== 'number' || !Number.isSafeInteger(v.pid) || typeof v.hostname !== 'string')
      return undefined;
    return {
      pid: v.pid,
      hostname: v.hostname,
      bootId: typeof v.bootId === 'string' ? v.bootId : null,
      startTicks: typeof v.startTicks === 'string' ? v.startTicks : null,
      startedAt: typeof v.startedAt === 'string' ? v.startedAt : '',
    };
  } catch {
    return undefined;
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the pid exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the recorded holder still runs. A holder on another host cannot be checked: assume it does. */
async function holderAlive(holder: LockHolder, self: LockHolder): Promise<boolean> {
  if (holder.hostname !== self.hostname) return true;
  if (holder.bootId !== null && self.bootId !== null && holder.bootId !== self.bootId) return false;
  // Our own pid: held by this process if we know we took it, else an earlier life's (a
  // container's pid 1 again after a restart).
  if (holder.pid === self.pid) return false;
  if (!pidExists(holder.pid)) return false;
  const stat = await processStat(holder.pid);
  if (stat === null) return true;
  // A killed holder not yet reaped by its parent is a zombie (Z) or dead (X): it holds nothing.
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return holder.startTicks === null || stat.startTicks === holder.startTicks;
}

function lockedError(dir: string, holder: LockHolder): ServerError {
  const where = holder.hostname === hostname() ? '' : ` on host ${holder.hostname}`;
  return new ServerError(
    'ERR_DATA_DIR_LOCKED',
    `data directory ${dir} is in use by another abota-server (pid ${holder.pid}${where}, since ${holder.startedAt}); one server per data directory — stop that one, or give this one another --data-dir (ABOTA_DATA_DIR)`,
  );
}

/**
 * Creates the lock file whole or not at all: the holder is written to a private file first and
 * then linked into place (link fails with EEXIST like O_EXCL), so no one reads a half-written lock.
 */
async function createExclusive(path: string, holder: LockHolder): Promise<boolean> {
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const file = await open(tmp, 'wx', 0o644);
  try {
    await file.writeFile(`${JSON.stringify(holder)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await link(tmp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/**
 * Moves a stale lock aside. rename() is atomic, so of two servers taking over the same stale lock
 * only one moves it; if what was moved turns out to be a live lock written meanwhile by the other
 * one, it is put back (link fails if yet another appeared) and that holder is reported.
 */
async function removeStale(path: string, stale: LockHolder): Promise<LockHolder | undefined> {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const moved = parseHolder((await readText(aside)) ?? '');
  if (moved !== undefined && (moved.pid !== stale.pid || moved.startedAt !== stale.startedAt)) {
    await link(aside, path).catch(() => {});
    await unlink(aside).catch(() => {});
    return moved;
  }
  await unlink(aside).catch(() => {});
  return undefined;
}

/** Takes the data directory's lock or throws ERR_DATA_DIR_LOCKED naming the directory and the holder's pid. */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const path = join(dir, LOCK_FILE_NAME);
  const self = await currentHolder();
  if (heldHere.has(path)) {
    const holder = parseHolder((await readText(path)) ?? '');
    throw lockedError(dir, holder ?? self);
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await createExclusive(path, self)) {
      heldHere.add(path);
      return {
        path,
        release: async () => {
          heldHere.delete(path);
          // Only our own lock is removed (never one a later server took over).
          const now = parseHolder((await readText(path)) ?? '');
          if (now?.pid === self.pid && now.startedAt === self.startedAt) await unlink(path).catch(() => {});
        },
      };
    }
    const text = await readText(path);
    if (text === null) continue; // removed meanwhile: try again
    const holder = parseHolder(text);
    // A lock file that is not a holder record (it is written whole, so: not ours) counts as stale.
    if (holder !== undefined && (await holderAlive(holder, self))) throw lockedError(dir, holder);
    const live = await removeStale(path, holder ?? { ...self, pid: -1, startedAt: '' });
    if (live !== undefined) throw lockedError(dir, live);
  }
  throw new ServerError(
    'ERR_DATA_DIR_LOCKED',
    `data directory ${dir}: could not take its lock ${path}; try again`,
  );
}
