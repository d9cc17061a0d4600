// Fault injection: a process killed (SIGKILL) in the middle of a put must leave no blob under the
// key — never a short file or object a reader would take for the whole blob — and must not stop a
// later put of the same blob.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore, S3BlobStore } from '../src/index.js';
import { chunked, keyOf, readAll } from './blob-store-contract.js';
import { type S3Fixture, startS3 } from './s3-fixture.js';

const CHILD = join(import.meta.dirname, 'put-and-hang.ts');

/** Runs put-and-hang.ts until it says "stalled", then SIGKILLs it. */
async function killMidPut(args: string[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('stalled')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before stalling: ${stderr}`)));
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

let dir: string;
let s3: S3Fixture;
beforeAll(async () => {
  dir = await makeTempDir('abota-blobstore-crash-');
  s3 = await startS3();
  await s3.createBucket('abota-crash');
});
afterAll(async () => {
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a put killed mid-write', () => {
  it('FsBlobStore: leaves only a dot-temp file, no blob; the blob can then be stored', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const key = keyOf(data);
    await killMidPut(['fs', dir, key, '2']);
    const names = await readdir(join(dir, 'sha256'));
    const temps = names.filter((n) => n.startsWith('.tmp-'));
    expect(names.filter((n) => !n.startsWith('.'))).toEqual([]);
    expect(temps).toHaveLength(1);
    // The killed writer really had written into its temporary file.
    expect((await stat(join(dir, 'sha256', temps[0] ?? ''))).size).toBe(2 * 1024 * 1024);
    const store = new FsBlobStore(dir);
    expect(await store.head(key)).toBeUndefined();
    await store.put(key, chunked(data));
    expect((await readAll((await store.get(key)).body)).equals(data)).toBe(true);
  });

  it('S3BlobStore: after parts were uploaded, no object exists under the key; the blob can then be stored', async () => {
    const data = randomBytes(12 * 1024 * 1024);
    const key = keyOf(data);
    await killMidPut(['s3', s3.endpoint, 'abota-crash', key, '11']);
    // The killed writer really had uploaded parts (s3rver keeps them under <bucket>/…uploads…/<n>).
    const files = await readdir(join(s3.directory, 'abota-crash'), { recursive: true });
    expect(files.filter((f) => /uploads.*\/\d+$/.test(f)).length).toBeGreaterThanOrEqual(1);
    expect(await s3.listKeys('abota-crash', 'sha256/')).toEqual([]);
    const store = new S3BlobStore({
      client: s3.client,
      bucket: 'abota-crash',
      partSizeBytes: 5 * 1024 * 1024,
    });
    expect(await store.head(key)).toBeUndefined();
    await store.put(key, chunked(data, 1024 * 1024));
    expect((await readAll((await store.get(key)).body)).equals(data)).toBe(true);
  });
});
