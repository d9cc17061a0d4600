// S3BlobStore against a real S3-protocol server on loopback (s3rver): the shared contract, plus
// multipart uploads, publish-by-copy, presigned URLs fetched by a plain HTTP client, and config.

import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { S3BlobStore } from '../src/index.js';
import { blobStoreContract, chunked, expectBlobError, keyOf, readAll } from './blob-store-contract.js';
import { uploadSessionContract } from './upload-session-contract.js';
import { S3RVER_CREDENTIALS, type S3Fixture, startS3 } from './s3-fixture.js';

const BUCKET = 'abota-blobs';
const PREFIX = 'releases/';
const MiB = 1024 * 1024;

let s3: S3Fixture;

beforeAll(async () => {
  s3 = await startS3();
  await s3.createBucket(BUCKET);
});
afterAll(async () => {
  await s3?.stop();
});

describe('S3BlobStore', () => {
  blobStoreContract(() => ({
    createStore: (options) =>
      new S3BlobStore({ client: s3.client, bucket: BUCKET, prefix: PREFIX, ...options }),
    listTemporaries: () => s3.listKeys(BUCKET, `${PREFIX}tmp/`),
  }));

  uploadSessionContract(() => ({
    createStore: () => new S3BlobStore({ client: s3.client, bucket: BUCKET, prefix: PREFIX }),
    partSizeBytes: 5 * MiB,
    listSessionLeftovers: (uploadId) => s3.listKeys(BUCKET, `${PREFIX}uploads/${uploadId}/`),
  }));

  it('stores blobs under <prefix>sha256/<hex> and nothing else', async () => {
    const data = randomBytes(1000);
    const key = keyOf(data);
    const store = new S3BlobStore({ client: s3.client, bucket: BUCKET, prefix: 'layout-check/' });
    await store.put(key, chunked(data));
    expect(await s3.listKeys(BUCKET, 'layout-check/')).toEqual([`layout-check/${key}`]);
    expect(store.objectKey(key)).toBe(`layout-check/${key}`);
  });

  it('uploads a 20 MiB blob in 4 multipart parts of 5 MiB, publishes it by one copy, and reads it back intact', async () => {
    const data = randomBytes(20 * MiB);
    const key = keyOf(data);
    const store = new S3BlobStore({
      client: s3.client,
      bucket: BUCKET,
      prefix: PREFIX,
      partSizeBytes: 5 * MiB,
    });
    const before = s3.commands.length;
    expect(await store.put(key, chunked(data, 256 * 1024), { sizeBytes: data.length })).toEqual({
      key,
      sizeBytes: data.length,
    });
    const sent = s3.commands.slice(before);
    expect(sent.filter((name) => name === 'UploadPartCommand')).toHaveLength(4);
    expect(sent.filter((name) => name === 'CompleteMultipartUploadCommand')).toHaveLength(1);
    expect(sent.filter((name) => name === 'CopyObjectCommand')).toHaveLength(1);
    expect(sent).not.toContain('PutObjectCommand');

    const whole = await store.get(key);
    expect(whole.totalSizeBytes).toBe(data.length);
    const hash = createHash('sha256');
    for await (const chunk of whole.body) hash.update(chunk);
    expect(`sha256/${hash.digest('hex')}`).toBe(key);
    // A range across the boundary between parts 1 and 2.
    const across = await store.get(key, { start: 5 * MiB - 10, end: 5 * MiB + 9 });
    expect((await readAll(across.body)).equals(data.subarray(5 * MiB - 10, 5 * MiB + 10))).toBe(true);
    expect(await s3.listKeys(BUCKET, `${PREFIX}tmp/`)).toEqual([]);
  });

  it('aborts a multipart upload whose digest mismatches: no blob, no temporary object', async () => {
    const data = randomBytes(12 * MiB);
    const key = keyOf(data);
    data[data.length - 1] = (data[data.length - 1] ?? 0) ^ 0xff;
    const store = new S3BlobStore({
      client: s3.client,
      bucket: BUCKET,
      prefix: PREFIX,
      partSizeBytes: 5 * MiB,
    });
    const before = s3.commands.length;
    await expectBlobError(store.put(key, chunked(data, 256 * 1024)), 'ERR_BLOB_DIGEST_MISMATCH');
    const sent = s3.commands.slice(before);
    expect(sent).toContain('UploadPartCommand');
    expect(sent).toContain('AbortMultipartUploadCommand');
    expect(sent).not.toContain('CopyObjectCommand');
    expect(await store.head(key)).toBeUndefined();
    expect(await s3.listKeys(BUCKET, `${PREFIX}tmp/`)).toEqual([]);
  });

  it('runs an upload session as one S3 multipart upload: a refused part never reaches S3, complete reads the staging object back and copies it', async () => {
    const data = randomBytes(11 * MiB);
    const key = keyOf(data);
    const store = new S3BlobStore({ client: s3.client, bucket: BUCKET, prefix: 'sessions/' });
    const before = s3.commands.length;
    const { uploadId, partCount } = await store.createUpload(key, { sizeBytes: data.length });
    expect(partCount).toBe(2); // the default 8 MiB parts
    expect(await s3.listKeys(BUCKET, 'sessions/')).toEqual([`sessions/uploads/${uploadId}/session.json`]);
    const first = data.subarray(0, 8 * MiB);
    const sha = createHash('sha256').update(first).digest('hex');
    const bad = Buffer.from(first);
    bad[0] = (bad[0] ?? 0) ^ 1;
    await expectBlobError(
      store.uploadPart(uploadId, 1, chunked(bad), { sha256: sha }),
      'ERR_BLOB_DIGEST_MISMATCH',
    );
    expect(s3.commands.slice(before)).not.toContain('UploadPartCommand');
    await store.uploadPart(uploadId, 1, chunked(first), { sha256: sha });
    await store.uploadPart(uploadId, 2, chunked(data.subarray(8 * MiB)));
    expect((await s3.listKeys(BUCKET, `sessions/uploads/${uploadId}/`)).sort()).toEqual([
      `sessions/uploads/${uploadId}/part-00001.json`,
      `sessions/uploads/${uploadId}/part-00002.json`,
      `sessions/uploads/${uploadId}/session.json`,
    ]);
    await store.completeUpload(uploadId);
    const sent = s3.commands.slice(before);
    expect(sent.filter((c) => c === 'UploadPartCommand')).toHaveLength(2);
    expect(sent).toEqual(
      expect.arrayContaining([
        'CreateMultipartUploadCommand',
        'CompleteMultipartUploadCommand',
        'CopyObjectCommand',
      ]),
    );
    expect(await s3.listKeys(BUCKET, 'sessions/')).toEqual([`sessions/${key}`]);
    expect(
      createHash('sha256')
        .update(await readAll((await store.get(key)).body))
        .digest('hex'),
    ).toBe(key.slice(7));
  });

  it('publishes nothing for a single-part body with a wrong digest: the bytes never reach S3', async () => {
    const data = randomBytes(100_000);
    const store = new S3BlobStore({ client: s3.client, bucket: BUCKET, prefix: PREFIX });
    const before = s3.commands.length;
    await expectBlobError(store.put(keyOf(randomBytes(8)), chunked(data)), 'ERR_BLOB_DIGEST_MISMATCH');
    expect(s3.commands.slice(before)).not.toContain('PutObjectCommand');
  });

  it('gives a presigned URL that a plain fetch can GET, whole and with Range', async () => {
    const data = randomBytes(70_000);
    const key = keyOf(data);
    const store = new S3BlobStore({ client: s3.client, bucket: BUCKET, prefix: PREFIX });
    await store.put(key, chunked(data));
    const url = await store.presignGet(key, { expiresInSeconds: 300 });
    expect(url).toMatch(new RegExp(`^${s3.endpoint}/${BUCKET}/${PREFIX}sha256/[0-9a-f]{64}\\?`));
    expect(url).toContain('X-Amz-Expires=300');

    const whole = await fetch(url ?? '');
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(data)).toBe(true);

    const ranged = await fetch(url ?? '', { headers: { Range: 'bytes=100-199' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 100-199/${data.length}`);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(100, 200))).toBe(true);

    const tail = await fetch(url ?? '', { headers: { Range: `bytes=${data.length - 1}-` } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(data.length - 1))).toBe(true);
    // s3rver 3.7.1 accepts any SigV4 signature (it only checks the access key id), so that the
    // signature and expiry are enforced can only be shown against real S3; check they are there.
    const query = new URL(url ?? '').searchParams;
    expect(query.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(query.get('X-Amz-Credential')).toMatch(/^S3RVER\//);
    expect(query.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('fails check() with ERR_BLOB_STORE_UNAVAILABLE naming the bucket when it does not exist', async () => {
    const store = new S3BlobStore({ client: s3.client, bucket: 'no-such-bucket' });
    const error = await expectBlobError(store.check(), 'ERR_BLOB_STORE_UNAVAILABLE');
    expect(error.message).toContain('no-such-bucket');
    const data = randomBytes(10);
    const body = Readable.from(chunked(data));
    await expectBlobError(store.put(keyOf(data), body), 'ERR_BLOB_STORE_UNAVAILABLE');
    expect(body.destroyed).toBe(true);
    await expectBlobError(store.get(keyOf(data)), 'ERR_BLOB_STORE_UNAVAILABLE');
  });

  it('fails check() with ERR_BLOB_STORE_UNAVAILABLE when the access key is unknown', async () => {
    const { S3Client } = await import('@aws-sdk/client-s3');
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'NOBODY' },
    });
    await expectBlobError(new S3BlobStore({ client, bucket: BUCKET }).check(), 'ERR_BLOB_STORE_UNAVAILABLE');
    client.destroy();
  });

  it('refuses configurations S3 cannot honour: blobs over 5 GiB, parts under 5 MiB, absolute prefixes', () => {
    const base = { client: s3.client, bucket: BUCKET };
    expect(() => new S3BlobStore({ ...base, maxBlobSizeBytes: 5 * 1024 ** 3 + 1 })).toThrow(
      /maxBlobSizeBytes/,
    );
    expect(() => new S3BlobStore({ ...base, partSizeBytes: 5 * MiB - 1 })).toThrow(/partSizeBytes/);
    expect(() => new S3BlobStore({ ...base, prefix: '/abs/' })).toThrow(/prefix/);
    expect(() => new S3BlobStore({ ...base, prefix: 'a/../b/' })).toThrow(/prefix/);
    expect(() => new S3BlobStore({ ...base, bucket: '' })).toThrow(/bucket/);
    expect(() => new S3BlobStore({ ...base, client: {} as S3Client })).toThrow(/S3Client/);
  });

  describe('fromEnv', () => {
    it('builds a working store from ABOTA_S3_* with credentials from the default AWS chain', async () => {
      vi.stubEnv('AWS_ACCESS_KEY_ID', S3RVER_CREDENTIALS.accessKeyId);
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', S3RVER_CREDENTIALS.secretAccessKey);
      try {
        const store = S3BlobStore.fromEnv({
          ABOTA_S3_BUCKET: BUCKET,
          ABOTA_S3_ENDPOINT: s3.endpoint,
          ABOTA_S3_FORCE_PATH_STYLE: 'true',
          ABOTA_S3_PREFIX: 'from-env/',
        });
        expect({ bucket: store.bucket, prefix: store.prefix }).toEqual({
          bucket: BUCKET,
          prefix: 'from-env/',
        });
        await store.check();
        const data = randomBytes(2000);
        await store.put(keyOf(data), chunked(data));
        expect((await readAll((await store.get(keyOf(data))).body)).equals(data)).toBe(true);
        expect(await s3.listKeys(BUCKET, 'from-env/')).toEqual([`from-env/${keyOf(data)}`]);
        store.client.destroy();
      } finally {
        vi.unstubAllEnvs();
      }
    });

    it('rejects a missing bucket, a non-URL endpoint and a non-boolean path-style flag with ERR_BLOB_CONFIG_INVALID', () => {
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{}, /ABOTA_S3_BUCKET/],
        [{ ABOTA_S3_BUCKET: 'b', ABOTA_S3_ENDPOINT: 'localhost:9000' }, /ABOTA_S3_ENDPOINT/],
        [{ ABOTA_S3_BUCKET: 'b', ABOTA_S3_ENDPOINT: 'ftp://127.0.0.1' }, /ABOTA_S3_ENDPOINT/],
        [{ ABOTA_S3_BUCKET: 'b', ABOTA_S3_FORCE_PATH_STYLE: 'yes' }, /ABOTA_S3_FORCE_PATH_STYLE/],
      ];
      for (const [env, message] of cases) {
        let caught: unknown;
        try {
          S3BlobStore.fromEnv(env);
        } catch (error) {
          caught = error;
        }
        expect(caught, JSON.stringify(env)).toMatchObject({ code: 'ERR_BLOB_CONFIG_INVALID' });
        expect((caught as Error).message).toMatch(message);
      }
    });
  });
});
