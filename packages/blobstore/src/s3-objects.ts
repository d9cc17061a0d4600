// The S3 calls S3BlobStore and its upload sessions share: mapping SDK errors to BlobStoreError,
// publishing a verified object under its final key by copy, small JSON objects, listings.

import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BlobStoreError } from './errors.js';

/**
 * The HTTP status of an SDK service error (S3ServiceException, recognised by shape so errors
 * from another copy of the SDK count too); undefined for anything else.
 */
export function s3ErrorStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('$metadata' in error)) return undefined;
  const metadata = error.$metadata;
  if (typeof metadata !== 'object' || metadata === null || !('httpStatusCode' in metadata)) return undefined;
  return typeof metadata.httpStatusCode === 'number' ? metadata.httpStatusCode : undefined;
}

/** True for an S3 error with this name, or (when the name is unavailable, e.g. HEAD) this status. */
export function isS3Error(error: unknown, name: string, status: number): boolean {
  const actualStatus = s3ErrorStatus(error);
  if (actualStatus === undefined || !(error instanceof Error)) return false;
  if (error.name === name) return true;
  return actualStatus === status && (error.name === 'NotFound' || error.name === 'Unknown');
}

export function describeS3Error(error: unknown): string {
  const status = s3ErrorStatus(error);
  if (status !== undefined && error instanceof Error)
    return `${error.name} (HTTP ${status}): ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export function s3Error(bucket: string, what: string, objectKey: string, error: unknown): BlobStoreError {
  const where = `s3://${bucket}/${objectKey}`;
  if (isS3Error(error, 'NoSuchBucket', 404)) {
    return new BlobStoreError('ERR_BLOB_STORE_UNAVAILABLE', `${what} ${where}: bucket does not exist`, {
      cause: error,
    });
  }
  const status = s3ErrorStatus(error);
  const code = status === 401 || status === 403 ? 'ERR_BLOB_STORE_UNAVAILABLE' : 'ERR_BLOB_STORE_IO';
  return new BlobStoreError(code, `${what} ${where} failed: ${describeS3Error(error)}`, { cause: error });
}

/** Server-side copy `from` → `to` (at most 5 GiB: the CopyObject limit). */
export async function copyObject(client: S3Client, bucket: string, from: string, to: string): Promise<void> {
  try {
    await client.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: to,
        CopySource: `${bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
        ContentType: 'application/octet-stream',
        MetadataDirective: 'REPLACE',
      }),
    );
  } catch (error) {
    throw s3Error(bucket, 'copying to', to, error);
  }
}

/** A small object's text, or undefined when it does not exist; refuses more than `maxBytes`. */
export async function readSmallObject(
  client: S3Client,
  bucket: string,
  objectKey: string,
  maxBytes: number,
): Promise<string | undefined> {
  try {
    const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
    const body = response.Body;
    if (body === undefined) throw new Error('no body');
    if ((response.ContentLength ?? 0) > maxBytes) {
      await body.transformToByteArray().catch(() => {});
      throw new BlobStoreError(
        'ERR_BLOB_STORE_IO',
        `s3://${bucket}/${objectKey} holds ${response.ContentLength} bytes, more than the ${maxBytes} expected`,
      );
    }
    const text = await body.transformToString('utf8');
    if (Buffer.byteLength(text) > maxBytes) {
      throw new BlobStoreError(
        'ERR_BLOB_STORE_IO',
        `s3://${bucket}/${objectKey} is larger than ${maxBytes} bytes`,
      );
    }
    return text;
  } catch (error) {
    if (error instanceof BlobStoreError) throw error;
    if (isS3Error(error, 'NoSuchKey', 404)) return undefined;
    throw s3Error(bucket, 'reading', objectKey, error);
  }
}

export async function writeSmallObject(
  client: S3Client,
  bucket: string,
  objectKey: string,
  text: string,
): Promise<void> {
  try {
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: objectKey, Body: text, ContentType: 'application/json' }),
    );
  } catch (error) {
    throw s3Error(bucket, 'writing', objectKey, error);
  }
}

export async function deleteObject(client: S3Client, bucket: string, objectKey: string): Promise<void> {
  try {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey }));
  } catch (error) {
    if (isS3Error(error, 'NoSuchKey', 404)) return;
    throw s3Error(bucket, 'deleting', objectKey, error);
  }
}

export interface ListedObject {
  key: string;
  lastModified: Date | undefined;
}

/**
 * Every object under `prefix` (all pages), or with `delimiter` the common prefixes one level
 * down; stops after `maxEntries` (the caller's bound on what one listing may cost).
 */
export async function listObjects(
  client: S3Client,
  bucket: string,
  prefix: string,
  opts: { delimiter?: string; maxEntries: number },
): Promise<{ objects: ListedObject[]; prefixes: string[] }> {
  const objects: ListedObject[] = [];
  const prefixes: string[] = [];
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ...(opts.delimiter === undefined ? {} : { Delimiter: opts.delimiter }),
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
      );
    } catch (error) {
      throw s3Error(bucket, 'listing', prefix, error);
    }
    for (const o of page.Contents ?? [])
      if (o.Key !== undefined) objects.push({ key: o.Key, lastModified: o.LastModified });
    for (const p of page.CommonPrefixes ?? []) if (p.Prefix !== undefined) prefixes.push(p.Prefix);
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined && objects.length + prefixes.length < opts.maxEntries);
  return { objects, prefixes };
}
