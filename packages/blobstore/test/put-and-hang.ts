// Child process for crash.test.ts: starts a put whose body stops after `stallAfterBytes` and
// never finishes, prints "stalled" and waits to be killed with SIGKILL mid-write.
//   node --import tsx test/put-and-hang.ts fs <rootDir> <key> <stallAfterMiB>
//   node --import tsx test/put-and-hang.ts s3 <endpoint> <bucket> <key> <stallAfterMiB>

import { randomBytes } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { type BlobStore, FsBlobStore, S3BlobStore } from '../src/index.js';

const [kind, ...args] = process.argv.slice(2);
let store: BlobStore;
let key: string;
let stallAfterMiB: number;
if (kind === 'fs') {
  store = new FsBlobStore(args[0] ?? '');
  key = args[1] ?? '';
  stallAfterMiB = Number(args[2]);
} else {
  const client = new S3Client({
    endpoint: args[0] ?? '',
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  store = new S3BlobStore({ client, bucket: args[1] ?? '', partSizeBytes: 5 * 1024 * 1024 });
  key = args[2] ?? '';
  stallAfterMiB = Number(args[3]);
}

async function* stallingBody(): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < stallAfterMiB; i++) yield randomBytes(1024 * 1024);
  // Give the store time to write or upload what it has, then report and hang.
  setTimeout(() => process.stdout.write('stalled\n'), 500);
  await new Promise(() => {});
}

await store.put(key, stallingBody());
