// A reproducible cpio "newc" archive (the initramfs format the kernel unpacks): entries in the
// order given, inode numbers counted from 1, owner root, one mtime, no host metadata.

export type CpioEntry =
  | { path: string; type: 'dir'; mode?: number }
  | { path: string; type: 'file'; data: Uint8Array; mode: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'chardev'; major: number; minor: number; mode: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');
const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);

function header(
  ino: number,
  mode: number,
  size: number,
  name: string,
  mtime: number,
  rdev: [number, number],
): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const fields = [ino, mode, 0, 0, 1, mtime, size, 0, 0, rdev[0], rdev[1], nameBytes.length, 0];
  const head = Buffer.from(`070701${fields.map(hex8).join('')}`, 'latin1');
  return Buffer.concat([head, nameBytes, pad4(head.length + nameBytes.length)]);
}

/** The archive's bytes; paths are relative ("bin/busybox"), parents listed before children. */
export function cpioNewc(entries: readonly CpioEntry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    let mode: number;
    let data: Uint8Array = new Uint8Array(0);
    let rdev: [number, number] = [0, 0];
    if (e.type === 'dir') mode = S_IFDIR | (e.mode ?? 0o755);
    else if (e.type === 'file') {
      mode = S_IFREG | e.mode;
      data = e.data;
    } else if (e.type === 'symlink') {
      mode = S_IFLNK | 0o777;
      data = Buffer.from(e.target, 'utf8');
    } else {
      mode = S_IFCHR | e.mode;
      rdev = [e.major, e.minor];
    }
    parts.push(
      header(ino++, mode, data.byteLength, e.path, mtime, rdev),
      Buffer.from(data),
      pad4(data.byteLength),
    );
  }
  parts.push(header(0, 0, 0, 'TRAILER!!!', 0, [0, 0]));
  const body = Buffer.concat(parts);
  // The kernel reads the archive in 512-byte records like cpio writes it.
  return Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}
