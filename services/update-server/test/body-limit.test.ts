// The JSON body limit over real HTTP (@hono/node-server on loopback, PGlite): a declared
// Content-Length is judged from the header alone, a chunked body is counted as it streams, and
// either way a body within the limit still reaches validation (so the header-only path does not
// lose the body). app.ts "JSON bodies are bounded everywhere".
import { rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '@abota/blobstore';
import { makeTempDir } from '@abota/testkit';
import { createApp } from '../src/app.js';
import { type Database, openDatabase } from '../src/db/database.js';
import { devices } from '../src/db/schema.js';
import { createLogger } from '../src/logger.js';
import { type Listening, listen } from './rollout-fleet.js';

const LIMIT_BYTES = 1024;

interface Reply {
  status: number;
  body: { error?: { code: string; message: string } };
}

/** One request with exactly the framing asked for: Content-Length, or chunked in two writes. */
function post(
  url: string,
  path: string,
  body: string,
  framing: 'content-length' | 'chunked',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (framing === 'content-length') headers['content-length'] = String(Buffer.byteLength(body));
    const req = httpRequest(`${url}${path}`, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }),
      );
    });
    req.on('error', reject);
    if (framing === 'chunked') {
      const half = Math.floor(body.length / 2);
      req.write(body.slice(0, half));
      req.end(body.slice(half));
    } else {
      req.end(body);
    }
  });
}

describe('JSON body limit over HTTP', () => {
  let database: Database;
  let server: Listening;
  let dir: string | undefined;

  beforeAll(async () => {
    dir = await makeTempDir('abota-body-limit-');
    database = await openDatabase({ kind: 'pglite' });
    const app = createApp({
      db: database.db,
      blobs: new FsBlobStore(dir),
      logger: createLogger({ level: 'silent' }),
      config: { maxJsonBodyBytes: LIMIT_BYTES },
    });
    server = await listen(app);
  });
  afterAll(async () => {
    await server?.close();
    await database?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** A well-formed registration padded by `padChars` characters of attributes (≤ 256 each). */
  const register = (padChars: number) => {
    const attributes: Record<string, string> = {};
    for (let i = 0; padChars > 0; i++) {
      const key = `a${i}`;
      // Each further attribute costs its key and JSON punctuation too: ,"aN":""
      const value = 'x'.repeat(Math.max(0, Math.min(200, padChars - (i === 0 ? 0 : key.length + 6))));
      attributes[key] = value;
      padChars -= value.length + (i === 0 ? 0 : key.length + 6);
    }
    return JSON.stringify({
      token: `abp_${'A'.repeat(43)}`,
      publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) },
      product: 'p',
      hardware: 'hw',
      attributes,
    });
  };

  it.each(['content-length', 'chunked'] as const)(
    'refuses a %s body over the limit with 413 ERR_BODY_TOO_LARGE and changes nothing',
    async (framing) => {
      const body = register(LIMIT_BYTES);
      expect(Buffer.byteLength(body)).toBeGreaterThan(LIMIT_BYTES);
      const reply = await post(server.url, '/v1/device/register', body, framing);
      expect(reply.status).toBe(413);
      expect(reply.body.error?.code).toBe('ERR_BODY_TOO_LARGE');
      expect(reply.body.error?.message).toBe(`request body exceeds ${LIMIT_BYTES} bytes`);
      expect(await database.db.select().from(devices)).toEqual([]);
    },
  );

  it.each(['content-length', 'chunked'] as const)(
    'reads a %s body within the limit through to validation and the route',
    async (framing) => {
      // Exactly at the limit: accepted by the limit, then judged by the route.
      const base = Buffer.byteLength(register(0)) + '{"a0":""}'.length - 2;
      const body = register(LIMIT_BYTES - base);
      expect(Buffer.byteLength(body)).toBe(LIMIT_BYTES);
      const unknownToken = await post(server.url, '/v1/device/register', body, framing);
      expect(unknownToken.body.error?.code).toBe('ERR_PROVISIONING_TOKEN_INVALID');
      expect(unknownToken.status).toBe(403);

      const invalid = await post(server.url, '/v1/device/register', '{"token":', framing);
      expect(invalid.status).toBe(400);
      expect(invalid.body.error?.message).toBe('request body is not valid JSON');

      const wrongShape = await post(server.url, '/v1/device/register', '{"token":1}', framing);
      expect(wrongShape.status).toBe(400);
      expect(wrongShape.body.error?.code).toBe('ERR_VALIDATION');
    },
  );

  it('serves GET without a body check', async () => {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
  });
});
