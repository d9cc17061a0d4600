// Size-limited reading of HTTP bodies: everything the agent reads from the network has a ceiling
// (JSON ≤ 1 MiB, manifest JWS ≤ 1 MiB, blobs ≤ the size the signed manifest states).
import { ClientError } from '../errors.js';

export const MAX_JSON_BYTES = 1024 * 1024;
export const MAX_MANIFEST_JWS_BYTES = 1024 * 1024;

/** Read the whole body, refusing (and cancelling the transfer) as soon as it exceeds `maxBytes`. */
export async function readBoundedBody(res: Response, maxBytes: number, what: string): Promise<Uint8Array> {
  const declared = res.headers.get('content-length');
  if (declared !== null && Number(declared) > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new ClientError(
      'ERR_HTTP_TOO_LARGE',
      `${what}: response declares ${declared} bytes, more than the limit of ${maxBytes}`,
    );
  }
  if (res.body === null) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new ClientError('ERR_HTTP_TOO_LARGE', `${what}: response exceeds the limit of ${maxBytes} bytes`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

export async function readBoundedJson(
  res: Response,
  what: string,
  maxBytes = MAX_JSON_BYTES,
): Promise<unknown> {
  const bytes = await readBoundedBody(res, maxBytes, what);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown;
  } catch (e) {
    throw new ClientError(
      'ERR_HTTP_BAD_RESPONSE',
      `${what}: response is not UTF-8 JSON: ${(e as Error).message}`,
    );
  }
}
