// Wraps a Node stream as the `body` of a BlobRead. The body yields exactly the announced number
// of bytes: a stream that ends early is an error (ERR_BLOB_STORE_IO) rather than a silently short
// blob, and surplus bytes are cut off — some S3-compatible servers answer `bytes=0-0` with the
// whole object (s3rver 3.7.1 treats an end of 0 as "no end"). Stopping early (`break`, or
// `.return()` on the iterator, even before the first read) destroys the stream so the file
// descriptor or HTTP connection is released.

import type { Readable } from 'node:stream';
import { BlobStoreError } from './errors.js';

export function streamBody(stream: Readable, lengthBytes: number, what: string): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      const inner: AsyncIterator<Uint8Array> = stream[Symbol.asyncIterator]();
      let remaining = lengthBytes;
      const close = async (): Promise<IteratorResult<Uint8Array>> => {
        stream.destroy();
        await inner.return?.();
        return { done: true, value: undefined };
      };
      return {
        next: async () => {
          if (remaining === 0) return close();
          let result: IteratorResult<Uint8Array>;
          try {
            result = await inner.next();
          } catch (error) {
            stream.destroy();
            throw new BlobStoreError(
              'ERR_BLOB_STORE_IO',
              `reading ${what} failed with ${remaining} of ${lengthBytes} bytes still to come: ${error instanceof Error ? error.message : String(error)}`,
              { cause: error },
            );
          }
          if (result.done === true) {
            throw new BlobStoreError(
              'ERR_BLOB_STORE_IO',
              `${what} ended after ${lengthBytes - remaining} of ${lengthBytes} bytes`,
            );
          }
          const chunk =
            result.value.byteLength > remaining ? result.value.subarray(0, remaining) : result.value;
          remaining -= chunk.byteLength;
          return { done: false, value: chunk };
        },
        return: close,
      };
    },
  };
}

export const emptyBody: AsyncIterable<Uint8Array> = {
  async *[Symbol.asyncIterator]() {},
};
