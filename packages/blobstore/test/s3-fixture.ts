// A real S3-protocol server (s3rver) on loopback for the tests, with a client configured for it.
// s3rver checks SigV4 signatures, so credentials must be its fixed S3RVER/S3RVER pair.

import { rm } from 'node:fs/promises';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { makeTempDir } from '@abota/testkit';
import S3rver from 's3rver';

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3Fixture {
  endpoint: string;
  /** s3rver's data directory (to inspect what it holds, e.g. parts of unfinished uploads). */
  directory: string;
  /** Command names sent through `client`, oldest first (to see multipart/copy actually happen). */
  commands: string[];
  client: S3Client;
  createBucket(name: string): Promise<void>;
  listKeys(bucket: string, prefix: string): Promise<string[]>;
  stop(): Promise<void>;
}

export function createClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
}

export async function startS3(): Promise<S3Fixture> {
  const directory = await makeTempDir('abota-s3rver-');
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = createClient(endpoint);
  const commands: string[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      commands.push(String(context['commandName']));
      return next(args);
    },
    { step: 'initialize', name: 'recordCommandNames' },
  );
  return {
    endpoint,
    directory,
    commands,
    client,
    createBucket: async (name) => {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    listKeys: async (bucket, prefix) => {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        );
        for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      return keys;
    },
    stop: async () => {
      client.destroy();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
