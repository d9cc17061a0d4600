// Host-side access to a stopped VM's raw disk: hash a partition, change bytes inside one.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Partition } from './update-fleet.js';

export function partitionNamed(partitions: readonly Partition[], name: string): Partition {
  const p = partitions.find((x) => x.name === name);
  if (p === undefined) throw new Error(`the disk has no partition ${name}`);
  return p;
}

/** sha256 of a whole partition's bytes. */
export async function partitionSha256(disk: string, p: Partition): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(disk, {
    start: p.offsetBytes,
    end: p.offsetBytes + p.sizeBytes - 1,
  })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** Flip every bit of `length` bytes at `offsetInPartition` of `p`; returns the old bytes. */
export async function flipBytes(
  disk: string,
  p: Partition,
  offsetInPartition: number,
  length: number,
): Promise<Buffer> {
  const fh = await open(disk, 'r+');
  try {
    const old = Buffer.alloc(length);
    await fh.read(old, 0, length, p.offsetBytes + offsetInPartition);
    const flipped = Buffer.from(old.map((b) => b ^ 0xff));
    await fh.write(flipped, 0, length, p.offsetBytes + offsetInPartition);
    await fh.sync();
    return old;
  } finally {
    await fh.close();
  }
}
