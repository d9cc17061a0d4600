// A lightweight fleet for rollout tests: N devices with real Ed25519 keys that register, poll
// and report over real HTTP on loopback against an in-process server. Far cheaper per device
// than packages/simulator (no images, no install), so 1,000 of them fit a unit-test budget.
import type { AddressInfo } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { serve } from '@hono/node-server';
import { type App, createApp } from '../src/app.js';
import { bootstrapAdminKey } from '../src/auth/api-keys.js';
import { generateSecret } from '../src/auth/secrets.js';
import type { Clock } from '../src/context.js';
import { createLogger } from '../src/logger.js';
import { RolloutEngine } from '../src/rollout/engine.js';
import {
  createProduct,
  createProvisioningToken,
  type DbBackend,
  deviceKeyPair,
  deviceTokenSigner,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  type ProductKeys,
  pushRelease,
  type TestBlobStore,
  TestClock,
  type TestDatabase,
} from './harness.js';

export interface FleetDevice {
  index: number;
  id: string;
  version: string;
  sign: (o?: object) => Promise<string>;
  privateKey: KeyObject;
}

export interface PollAnswer {
  status: 'update' | 'no-update';
  rolloutId?: string;
  release?: { version: string };
  artifacts?: Record<string, string>;
  allowDowngrade?: boolean;
  health?: { bakeSeconds: number };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function inPool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

export interface Listening {
  url: string;
  close(): Promise<void>;
}

export async function listen(app: App): Promise<Listening> {
  const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((ok, fail) => {
    server.once('listening', ok);
    server.once('error', fail);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}

async function call(url: string, path: string, token: string, body: unknown): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

export async function registerFleet(
  url: string,
  options: { product: string; token: string; count: number; version: string; clock: Clock },
): Promise<FleetDevice[]> {
  const indexes = Array.from({ length: options.count }, (_, i) => i);
  return inPool(indexes, 16, async (index) => {
    const { privateKey, publicJwk } = await deviceKeyPair();
    const res = await fetch(`${url}/v1/device/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token: options.token,
        publicKeyJwk: publicJwk,
        product: options.product,
        hardware: 'hyperv-x64',
      }),
    });
    if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
    const { deviceId } = (await res.json()) as { deviceId: string };
    return {
      index,
      id: deviceId,
      version: options.version,
      privateKey,
      sign: deviceTokenSigner(deviceId, privateKey, options.clock),
    };
  });
}

export async function poll(url: string, device: FleetDevice): Promise<PollAnswer> {
  const res = await call(url, '/v1/device/poll', await device.sign(), {
    version: device.version,
    bootedSlot: 'A',
  });
  if (res.status !== 200) throw new Error(`poll: ${res.status} ${await res.text()}`);
  return (await res.json()) as PollAnswer;
}

export async function report(
  url: string,
  device: FleetDevice,
  body: { rolloutId: string; version: string; state: string; errorCode?: string; healthySeconds?: number },
): Promise<void> {
  const res = await call(url, '/v1/device/report', await device.sign(), body);
  if (res.status !== 202) throw new Error(`report: ${res.status} ${await res.text()}`);
}

/** What a device of the fleet was offered in a round, and what it reported. */
export interface OfferTaken {
  rolloutId: string;
  version: string;
  allowDowngrade: boolean;
  committed: boolean;
}

/**
 * One polling round: every device polls; an offered device "installs" and reports only the
 * outcome (the intermediate states cost requests and change no decision): committed (its version
 * becomes the release's) or, when `healthCheckFails` says so, rolled-back, staying on what it ran
 * (the A/B fallback). Returns who was offered what.
 */
export async function pollRound(
  url: string,
  fleet: readonly FleetDevice[],
  healthCheckFails: (device: FleetDevice, version: string) => boolean = () => false,
  options: { fetchAlways?: boolean } = {},
): Promise<Map<string, OfferTaken>> {
  const offered = new Map<string, OfferTaken>();
  await inPool(fleet, 16, async (device) => {
    const answer = await poll(url, device);
    if (answer.status !== 'update' || answer.rolloutId === undefined || answer.release === undefined) return;
    const { rolloutId } = answer;
    const target = answer.release.version;
    const fails = healthCheckFails(device, target);
    // A device that fails downloaded and booted the release before its health check failed: the
    // server counts a failure only from a device that fetched the release's blobs (issue #16).
    // With `fetchAlways`, committing devices fetch too (their failures after commit count).
    let downloaded = true;
    if (fails || options.fetchAlways === true) {
      const [artifact] = Object.values(answer.artifacts ?? {});
      if (artifact === undefined) throw new Error('offer without artifacts');
      const blob = await fetch(`${url}${artifact}`, {
        headers: { authorization: `Bearer ${await device.sign()}`, range: 'bytes=0-0' },
      });
      const text = await blob.text();
      // The reports of devices polled earlier in the round may have had the engine abort this
      // rollout (a failure threshold crossed with an automatic rollback policy) between this offer
      // and the download: the server then refuses the release's blobs (a paused rollout's stay
      // downloadable), and the device downloads nothing, installs nothing and reports the
      // download's failure, as the agent does. Only then: a refusal while the server still
      // offers the same rollout to the device is a defect, and fails the round.
      if (blob.status === 404 && (await poll(url, device)).rolloutId !== rolloutId) downloaded = false;
      else if (blob.status !== 206) throw new Error(`blob: ${blob.status} ${text}`);
    }
    if (!downloaded) {
      await report(url, device, {
        rolloutId,
        version: target,
        state: 'failed',
        errorCode: 'ERR_HTTP_STATUS',
      });
    } else if (fails) {
      await report(url, device, {
        rolloutId,
        version: target,
        state: 'rolled-back',
        errorCode: 'ERR_HEALTH_CHECK',
      });
    } else {
      await report(url, device, { rolloutId, version: target, state: 'committed' });
      device.version = target;
    }
    offered.set(device.id, {
      rolloutId,
      version: target,
      allowDowngrade: answer.allowDowngrade === true,
      committed: downloaded && !fails,
    });
  });
  return offered;
}

export interface FleetServer {
  database: TestDatabase;
  blobStore: TestBlobStore;
  server: Listening;
  engine: RolloutEngine;
  /** The harness over the same app (admin calls in process), with the injected clock. */
  h: Harness;
  keys: ProductKeys;
  /** `count` devices registered over HTTP, all on release 1.0.0 (pushed). */
  fleet: FleetDevice[];
  /** The provisioning token the fleet registered with (more devices may register with it). */
  token: string;
  close(): Promise<void>;
}

/**
 * An in-process server on PGlite listening on loopback, with a rollout engine on an injected
 * clock (no timer: tests call engine.evaluateAll), product "fleet-vm" with release 1.0.0, and
 * `count` registered devices.
 */
export async function openFleet(
  count: number,
  o: { backend?: DbBackend; product?: string; tokenMaxUses?: number } = {},
): Promise<FleetServer> {
  const database = await openTestDatabase(o.backend ?? 'pglite');
  const blobStore = await openTestBlobStore('fs');
  const clock = new TestClock();
  const logger = createLogger({ level: 'silent' });
  const engine = new RolloutEngine({ db: database.database.db, clock, logger });
  const app = createApp({
    db: database.database.db,
    blobs: blobStore.blobs,
    clock,
    logger,
    rollouts: engine,
  });
  const adminKey = generateSecret('abk');
  await bootstrapAdminKey({ db: database.database.db }, adminKey);
  const server = await listen(app);
  const h: Harness = {
    app,
    db: database.database,
    blobs: blobStore.blobs,
    clock,
    adminKey,
    logs: [],
    request: async (path, init = {}) => {
      const { key, json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key !== undefined) headers.set('authorization', `Bearer ${key}`);
      if (json !== undefined) headers.set('content-type', 'application/json');
      return app.request(path, {
        ...rest,
        headers,
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
      });
    },
  };
  const keys = await makeProduct(o.product ?? 'fleet-vm');
  await createProduct(h, keys);
  await pushRelease(h, await makeRelease(keys, '1.0.0'));
  const token = await createProvisioningToken(
    h,
    keys.product,
    o.tokenMaxUses === undefined ? {} : { maxUses: o.tokenMaxUses },
  );
  const fleet = await registerFleet(server.url, {
    product: keys.product,
    token,
    count,
    version: '1.0.0',
    clock,
  });
  return {
    database,
    blobStore,
    server,
    engine,
    h,
    keys,
    fleet,
    token,
    close: async () => {
      await engine.stop();
      await server.close();
      await database.dispose();
      await blobStore.dispose();
    },
  };
}
