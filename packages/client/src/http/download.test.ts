// Resumable downloads against a real node:http server on 127.0.0.1: dropped connections, Range
// resume, servers that ignore Range, oversized bodies, redirects and the bandwidth limit — over
// node:http (the agent's default) and through an injected fetch, which must behave the same.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { readBoundedBody, readBoundedJson } from './bounded-body.js';
import { type DownloadOptions, downloadRange as downloadRangeOf } from './download.js';
import { MAX_REDIRECTS } from './node-http.js';
import { TokenBucket } from './token-bucket.js';

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(handler: Handler): Promise<{ url: string; requests: IncomingMessage[] }> {
  const requests: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    requests.push(req);
    handler(req, res, requests.length);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/blob`, requests };
}

/** Serve `blob` honouring `Range: bytes=a-b` with 206, like the update server's blob route. */
function rangeResponse(
  blob: Buffer,
  req: IncomingMessage,
  res: ServerResponse,
): { start: number; body: Buffer } {
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (m === null) {
    res.writeHead(200, { 'content-length': blob.length });
    return { start: 0, body: blob };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? blob.length - 1 : Number(m[2]);
  res.writeHead(206, {
    'content-length': end - start + 1,
    'content-range': `bytes ${start}-${end}/${blob.length}`,
  });
  return { start, body: blob.subarray(start, end + 1) };
}

const noWait = { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 5 };

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe.each([
  ['node:http', undefined],
  ['fetch', fetch],
] as const)('downloadRange over %s', (_transport, viaFetch) => {
  const downloadRange = (o: DownloadOptions) =>
    downloadRangeOf(viaFetch === undefined ? o : { ...o, fetch: viaFetch });

  it('resumes with a Range request from the byte where the server dropped the connection', async () => {
    const blob = randomBytes(3 * 1024 * 1024 + 17);
    let droppedAfter = 0;
    const { url, requests } = await serve((req, res, n) => {
      const { body } = rangeResponse(blob, req, res);
      if (n === 1) {
        // Send a bit over a third, flush, then cut the TCP connection mid-body.
        droppedAfter = 1024 * 1024 + 5;
        res.write(body.subarray(0, droppedAfter), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      res.end(body);
    });
    const got = await collect(downloadRange({ url, startByte: 0, totalBytes: blob.length, backoff: noWait }));
    expect(got.equals(blob)).toBe(true);
    expect(requests.length).toBe(2);
    const resumedAt = Number(/^bytes=(\d+)-/.exec(requests[1]!.headers.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(droppedAfter);
  });

  it('starts at a resume offset and sends a fresh Authorization header on every attempt', async () => {
    const blob = randomBytes(200_000);
    let tokens = 0;
    const { url, requests } = await serve((req, res, n) => {
      if (n === 1) {
        res.writeHead(503).end();
        return;
      }
      res.end(rangeResponse(blob, req, res).body);
    });
    const got = await collect(
      downloadRange({
        url,
        startByte: 50_000,
        totalBytes: blob.length,
        backoff: noWait,
        headers: async () => ({ authorization: `Bearer t${++tokens}` }),
      }),
    );
    expect(got.equals(blob.subarray(50_000))).toBe(true);
    expect(requests.map((r) => r.headers.authorization)).toEqual(['Bearer t1', 'Bearer t2']);
    expect(requests[1]!.headers.range).toBe(`bytes=50000-${blob.length - 1}`);
  });

  it('follows a 302 to another origin (presigned URL) without sending the device JWT there', async () => {
    const blob = randomBytes(50_000);
    const cdn = await serve((req, res) => {
      res.end(rangeResponse(blob, req, res).body);
    });
    const api = await serve((_req, res) => {
      res.writeHead(302, { location: `${cdn.url}?X-Amz-Signature=secret` }).end();
    });
    const got = await collect(
      downloadRange({
        url: api.url,
        startByte: 0,
        totalBytes: blob.length,
        backoff: noWait,
        headers: async () => ({ authorization: 'Bearer device-jwt' }),
      }),
    );
    expect(got.equals(blob)).toBe(true);
    expect(api.requests[0]!.headers.authorization).toBe('Bearer device-jwt');
    expect(cdn.requests[0]!.headers.authorization).toBeUndefined();
    expect(cdn.requests[0]!.headers.range).toBe(`bytes=0-${blob.length - 1}`);
  });

  it('abandons a stalled response after the idle timeout and resumes where it stopped', async () => {
    const blob = randomBytes(300_000);
    const { url, requests } = await serve((req, res, n) => {
      const { body } = rangeResponse(blob, req, res);
      if (n === 1) {
        res.write(body.subarray(0, 100_000)); // then silence, connection left open
        return;
      }
      res.end(body);
    });
    const got = await collect(
      downloadRange({ url, startByte: 0, totalBytes: blob.length, backoff: noWait, idleTimeoutMs: 300 }),
    );
    expect(got.equals(blob)).toBe(true);
    expect(requests.length).toBe(2);
    expect(Number(/^bytes=(\d+)-/.exec(requests[1]!.headers.range ?? '')?.[1])).toBeGreaterThan(0);
  });

  it('copes with a server that ignores Range by skipping the bytes it already has', async () => {
    const blob = randomBytes(100_000);
    const { url } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': blob.length }).end(blob);
    });
    const got = await collect(
      downloadRange({ url, startByte: 40_000, totalBytes: blob.length, backoff: noWait }),
    );
    expect(got.equals(blob.subarray(40_000))).toBe(true);
  });

  it('refuses a body longer than the size in the signed manifest', async () => {
    const blob = randomBytes(100_000);
    const { url } = await serve((_req, res) => {
      // No Content-Length (chunked): the excess is only seen while streaming.
      res.writeHead(200);
      res.end(Buffer.concat([blob, randomBytes(10)]));
    });
    await expect(
      collect(downloadRange({ url, startByte: 0, totalBytes: blob.length, backoff: noWait })),
    ).rejects.toMatchObject({
      code: 'ERR_HTTP_TOO_LARGE',
    });
  });

  it('refuses a Content-Range that does not start where it asked', async () => {
    const blob = randomBytes(10_000);
    const { url } = await serve((_req, res) => {
      res.writeHead(206, { 'content-range': `bytes 0-9999/10000`, 'content-length': 10_000 }).end(blob);
    });
    await expect(
      collect(downloadRange({ url, startByte: 500, totalBytes: blob.length, backoff: noWait })),
    ).rejects.toMatchObject({
      code: 'ERR_HTTP_BAD_RESPONSE',
    });
  });

  it('gives up after the retry budget when the server keeps failing', async () => {
    const { url, requests } = await serve((_req, res) => {
      res.writeHead(500).end();
    });
    await expect(
      collect(downloadRange({ url, startByte: 0, totalBytes: 10, backoff: noWait })),
    ).rejects.toMatchObject({
      code: 'ERR_HTTP_UNAVAILABLE',
    });
    expect(requests.length).toBe(noWait.maxAttempts);
  });

  it('waits at least the Retry-After of a 503 or 429 before retrying (spread, bounded)', async () => {
    const blob = randomBytes(1000);
    const { url, requests } = await serve((req, res, n) => {
      if (n === 1) res.writeHead(503, { 'retry-after': '7' }).end();
      else if (n === 2) res.writeHead(429, { 'retry-after': '999999999' }).end();
      else {
        const { start, body } = rangeResponse(blob, req, res);
        res.end(body.subarray(0, blob.length - start));
      }
    });
    const waits: number[] = [];
    const got = await collect(
      downloadRange({
        url,
        startByte: 0,
        totalBytes: blob.length,
        backoff: { ...noWait, random: () => 0.5, sleep: async (ms) => void waits.push(ms) },
      }),
    );
    expect(got.equals(blob)).toBe(true);
    expect(requests.length).toBe(3);
    // 7 s asked, spread by up to half again (random 0.5 → +25 %); a day-long ask is capped at 10 min.
    expect(waits).toEqual([8750, 600_000]);
  });

  it('does not retry a final status such as 404', async () => {
    const { url, requests } = await serve((_req, res) => {
      res.writeHead(404).end();
    });
    await expect(
      collect(downloadRange({ url, startByte: 0, totalBytes: 10, backoff: noWait })),
    ).rejects.toMatchObject({
      code: 'ERR_HTTP_STATUS',
    });
    expect(requests.length).toBe(1);
  });

  it('keeps roughly to the bandwidth limit', async () => {
    const blob = randomBytes(3 * 1024 * 1024);
    const { url } = await serve((req, res) => {
      res.end(rangeResponse(blob, req, res).body);
    });
    const rate = 4 * 1024 * 1024;
    const bucket = new TokenBucket(rate, 256 * 1024);
    const t0 = performance.now();
    const got = await collect(
      downloadRange({ url, startByte: 0, totalBytes: blob.length, bucket, backoff: noWait }),
    );
    const seconds = (performance.now() - t0) / 1000;
    expect(got.length).toBe(blob.length);
    // (3 MiB - 256 KiB burst) / 4 MiB/s ≈ 0.69 s at the limit; unlimited loopback takes a few ms.
    expect(seconds).toBeGreaterThan(0.6);
    expect(seconds).toBeLessThan(3);
  });
  it('keeps the device JWT on a same-origin redirect and never sends it back after leaving the origin', async () => {
    const blob = randomBytes(20_000);
    let api: Awaited<ReturnType<typeof serve>>;
    const cdn = await serve((_req, res) => {
      // The CDN bounces back to the API origin (a misconfigured edge): the JWT must stay dropped.
      res.writeHead(307, { location: `${api.url}/final` }).end();
    });
    api = await serve((req, res) => {
      if (req.url === '/blob') res.writeHead(302, { location: '/blob/moved' }).end();
      else if (req.url === '/blob/moved') res.writeHead(302, { location: cdn.url }).end();
      else res.end(rangeResponse(blob, req, res).body);
    });
    const got = await collect(
      downloadRange({
        url: api.url,
        startByte: 0,
        totalBytes: blob.length,
        backoff: noWait,
        headers: async () => ({ Authorization: 'Bearer device-jwt' }),
      }),
    );
    expect(got.equals(blob)).toBe(true);
    expect(api.requests.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/blob', 'Bearer device-jwt'],
      ['/blob/moved', 'Bearer device-jwt'],
      ['/blob/final', undefined],
    ]);
    expect(cdn.requests[0]!.headers.authorization).toBeUndefined();
    expect(api.requests[2]!.headers.range).toBe(`bytes=0-${blob.length - 1}`);
  });

  it('stops at the signal mid-body with ERR_ABORTED and closes the connection', async () => {
    const blob = randomBytes(2 * 1024 * 1024);
    let closed = false;
    const { url } = await serve((req, res) => {
      const { body } = rangeResponse(blob, req, res);
      res.write(body.subarray(0, 256 * 1024)); // then nothing more until the client goes away
      res.on('close', () => {
        closed = true;
      });
    });
    const abort = new AbortController();
    let received = 0;
    await expect(
      (async () => {
        for await (const chunk of downloadRange({
          url,
          startByte: 0,
          totalBytes: blob.length,
          backoff: noWait,
          signal: abort.signal,
        })) {
          received += chunk.byteLength;
          abort.abort(new Error('shutting down'));
        }
      })(),
    ).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(received).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(true);
  });

  it('abandons a blob that trickles one byte every 50 ms (below the minimum rate) with ERR_HTTP_TOO_SLOW', async () => {
    const blob = randomBytes(4096);
    const { url, requests } = await serve((req, res) => {
      const { body } = rangeResponse(blob, req, res);
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed || i >= body.length) return clearInterval(t);
        res.write(body.subarray(i, i + 1));
        i++;
      }, 50);
      res.on('close', () => clearInterval(t));
    });
    const started = performance.now();
    await expect(
      collect(
        downloadRange({
          url,
          startByte: 0,
          totalBytes: blob.length,
          backoff: { ...noWait, maxAttempts: 3 },
          minRate: { bytesPerSecond: 100, windowMs: 300 },
        }),
      ),
    ).rejects.toMatchObject({
      code: 'ERR_HTTP_TOO_SLOW',
      message: expect.stringMatching(/below the minimum of 100 bytes\/s/),
    });
    // Three tries of one 300 ms window each (the idle timer alone would never fire).
    expect(performance.now() - started).toBeLessThan(3000);
    expect(requests.length).toBe(3);
  });

  it('stops a download that keeps resuming after drops once its size-derived budget is spent', async () => {
    const blob = randomBytes(64 * 1024);
    const { url, requests } = await serve((req, res) => {
      const { body } = rangeResponse(blob, req, res);
      // 1 KiB then a cut: progress every time, so the failure count never grows.
      res.write(body.subarray(0, 1024), () => setTimeout(() => res.socket?.destroy(), 10));
    });
    const err = await collect(
      downloadRange({
        url,
        startByte: 0,
        totalBytes: blob.length,
        backoff: { baseDelayMs: 100, maxDelayMs: 100, maxAttempts: 5, random: () => 1 },
        // Budget: 200 ms + 2 × 64 KiB at 200 KiB/s = 840 ms.
        minRate: { bytesPerSecond: 200 * 1024, windowMs: 200 },
      }),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_HTTP_TOO_SLOW', message: expect.stringMatching(/budget/) });
    expect(requests.length).toBeLessThan(64);
  });
});

describe('downloadRange over node:http: redirects', () => {
  const blob = randomBytes(1000);
  const get = (url: string) =>
    collect(downloadRangeOf({ url, startByte: 0, totalBytes: blob.length, backoff: noWait }));

  it(`refuses more than ${MAX_REDIRECTS} redirects with ERR_HTTP_BAD_RESPONSE`, async () => {
    const { url, requests } = await serve((req, res) => {
      res.writeHead(302, { location: `${req.url}x` }).end();
    });
    await expect(get(url)).rejects.toMatchObject({
      code: 'ERR_HTTP_BAD_RESPONSE',
      message: expect.stringContaining(`more than ${MAX_REDIRECTS} redirects`),
    });
    expect(requests.length).toBe(MAX_REDIRECTS + 1);
  });

  it('refuses a redirect without a Location and one to a non-HTTP scheme', async () => {
    const bare = await serve((_req, res) => {
      res.writeHead(301).end();
    });
    await expect(get(bare.url)).rejects.toMatchObject({
      code: 'ERR_HTTP_BAD_RESPONSE',
      message: expect.stringContaining('without a Location'),
    });
    const file = await serve((_req, res) => {
      res.writeHead(302, { location: 'file:///etc/shadow' }).end();
    });
    await expect(get(file.url)).rejects.toMatchObject({
      code: 'ERR_HTTP_BAD_RESPONSE',
      message: expect.stringContaining('file: URL'),
    });
  });

  it('asks for the blob without content coding, so Range offsets are blob offsets', async () => {
    const { url, requests } = await serve((req, res) => {
      res.end(rangeResponse(blob, req, res).body);
    });
    expect((await get(url)).equals(blob)).toBe(true);
    expect(requests[0]!.headers['accept-encoding']).toBe('identity');
  });
});

describe('bounded bodies', () => {
  it('refuses a JSON response over 1 MiB without reading it all', async () => {
    const { url } = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }));
    });
    await expect(readBoundedJson(await fetch(url), 'poll')).rejects.toMatchObject({
      code: 'ERR_HTTP_TOO_LARGE',
    });
  });

  it('refuses early when Content-Length already exceeds the limit', async () => {
    const { url } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 5000 }).end(Buffer.alloc(5000));
    });
    await expect(readBoundedBody(await fetch(url), 4096, 'x')).rejects.toThrow(/declares 5000 bytes/);
  });
});
