// Device API (docs/CONTRACTS.md "Update server HTTP API"): register with a provisioning token,
// then poll and report, each call authenticated by a fresh JWT signed with the device's key.
import { createPublicKey } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import { and, eq, gt, isNull, lt, notInArray, or, type SQL, sql } from 'drizzle-orm';
import type { MiddlewareHandler } from 'hono';
import { createRouter, json } from './router.js';
import { authenticateDevice, replayed, verifyDeviceToken } from '../auth/device-jwt.js';
import { bearerToken, hashSecret } from '../auth/secrets.js';
import type { AppDeps, AppEnv } from '../context.js';
import {
  deviceEvents,
  devices,
  productTrustRoots,
  provisioningTokens,
  releaseBlobs,
  releaseDeltas,
  releases,
  rolloutDevices,
} from '../db/schema.js';
import { ServerError } from '../errors.js';
import { limitDevice } from '../rate-limit.js';
import { bakeSecondsOf, isHealthReport, recordHealthReport } from '../rollout/health.js';
import { jitteredPollSeconds } from '../rollout/policy.js';
import { markRegistered } from '../rollout/late-joiners.js';
import { ifNoneMatchHits, noUpdateEtag, offerEtag, POLL_AFTER_HEADER } from './poll-etag.js';
import { DEVICE_ERROR_STATE, INSTALLING_STATES, OUTCOME_STATES } from '../rollout/model.js';
import {
  ErrorSchema,
  errorResponses,
  PollRequestSchema,
  PollResponseSchema,
  RegisterRequestSchema,
  RegisterResponseSchema,
  ReportRequestSchema,
  ReportResponseSchema,
} from '@abota/api';

/** Bounds of the root chain one poll answer carries (a device's poll response limit is 1 MiB). */
const MAX_ROOTS_PER_POLL = 16;
const MAX_ROOTS_BYTES = 256 * 1024;

/**
 * For a duplicate report: the condition on the device's current rollout state under which it
 * still applies — a retry leaving device-error, or a new device-error during a retry — or
 * undefined when it applies in no state.
 */
function retryTransition(state: string): SQL | undefined {
  if (state === DEVICE_ERROR_STATE) return notInArray(rolloutDevices.state, [...OUTCOME_STATES]);
  if (INSTALLING_STATES.has(state)) return eq(rolloutDevices.state, DEVICE_ERROR_STATE);
  return undefined;
}

export function requireDevice(deps: AppDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined) {
      throw new ServerError(
        'ERR_UNAUTHENTICATED',
        'device calls need "Authorization: Bearer <JWT signed by the device key>"',
      );
    }
    const device = await authenticateDevice(deps, token);
    limitDevice(deps, device.id);
    c.set('device', device);
    c.set('actor', `device:${device.id}`);
    await next();
  };
}

export function deviceRoutes(deps: AppDeps) {
  const { db, metrics, config } = deps;
  const auth = requireDevice(deps);
  // Offered URLs point at the device blob route, which checks access and then redirects to a
  // presigned URL or streams (routes/blobs.ts); absolute when ABOTA_PUBLIC_URL is set.
  const blobBase = `${config.publicUrl ?? ''}/v1/device/blobs/sha256/`;
  const blobUrl = (digest: string) => `${blobBase}${digest.slice('sha256:'.length)}`;
  // The rotations a device on root `after` needs (TUF §5.3), oldest first: at most
  // MAX_ROOTS_PER_POLL roots and MAX_ROOTS_BYTES of them; a device further behind walks as far
  // as it gets and is served the rest on its next poll.
  const pollPolicy = {
    pollIntervalSeconds: config.pollIntervalSeconds,
    pollJitterFraction: config.pollJitterFraction,
  };
  const noUpdateTag = noUpdateEtag(pollPolicy);
  const rootsAfter = async (
    product: string,
    after: number | undefined,
  ): Promise<{ version: number; trustRoot: unknown }[]> => {
    if (after === undefined) return [];
    const rows = await db
      .select({ version: productTrustRoots.version, trustRoot: productTrustRoots.trustRoot })
      .from(productTrustRoots)
      .where(and(eq(productTrustRoots.product, product), gt(productTrustRoots.version, after)))
      .orderBy(productTrustRoots.version)
      .limit(MAX_ROOTS_PER_POLL);
    return rows;
  };
  /** The roots as served: JSON text each, cut at MAX_ROOTS_BYTES (always at least one). */
  const rootTexts = (rows: { trustRoot: unknown }[]): string[] => {
    const out: string[] = [];
    let bytes = 0;
    for (const r of rows) {
      const text = JSON.stringify(r.trustRoot);
      bytes += text.length;
      if (out.length > 0 && bytes > MAX_ROOTS_BYTES) break;
      out.push(text);
    }
    return out;
  };
  // Poll verifies signature and claims here; the jti is consumed by the poll statement itself.
  const pollAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined) {
      throw new ServerError(
        'ERR_UNAUTHENTICATED',
        'device calls need "Authorization: Bearer <JWT signed by the device key>"',
      );
    }
    const verified = await verifyDeviceToken(deps, token);
    limitDevice(deps, verified.deviceId);
    c.set('deviceToken', verified);
    c.set('actor', `device:${verified.deviceId}`);
    await next();
  };

  return createRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/device/register',
        tags: ['device'],
        summary: 'Register a device with a provisioning token',
        request: { body: { required: true, ...json(RegisterRequestSchema) } },
        responses: { 201: { description: 'Registered', ...json(RegisterResponseSchema) }, ...errorResponses },
      }),
      async (c) => {
        const body = c.req.valid('json');
        try {
          createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: body.publicKeyJwk.x }, format: 'jwk' });
        } catch {
          throw new ServerError('ERR_VALIDATION', 'publicKeyJwk.x is not a valid Ed25519 public key');
        }
        const now = deps.clock.now();
        const tokenHash = hashSecret(body.token);
        const deviceId = await db.transaction(async (tx) => {
          // One atomic statement consumes a use, so concurrent registrations cannot exceed maxUses.
          const [token] = await tx
            .update(provisioningTokens)
            .set({ uses: sql`${provisioningTokens.uses} + 1` })
            .where(
              and(
                eq(provisioningTokens.tokenHash, tokenHash),
                eq(provisioningTokens.product, body.product),
                isNull(provisioningTokens.revokedAt),
                gt(provisioningTokens.expiresAt, now),
                or(
                  isNull(provisioningTokens.maxUses),
                  lt(provisioningTokens.uses, provisioningTokens.maxUses),
                ),
              ),
            )
            .returning({ id: provisioningTokens.id });
          if (token === undefined) {
            const [found] = await tx
              .select()
              .from(provisioningTokens)
              .where(eq(provisioningTokens.tokenHash, tokenHash))
              .limit(1);
            const why =
              found === undefined
                ? 'is unknown'
                : found.product !== body.product
                  ? `is for another product, not "${body.product}"`
                  : found.revokedAt !== null
                    ? 'was revoked'
                    : found.expiresAt <= now
                      ? `expired at ${found.expiresAt.toISOString()}`
                      : `has been used ${found.uses} of ${found.maxUses} times`;
            throw new ServerError(
              'ERR_PROVISIONING_TOKEN_INVALID',
              `provisioning token ${why}; ask an operator for a new one`,
            );
          }
          const [device] = await tx
            .insert(devices)
            .values({
              product: body.product,
              hardware: body.hardware,
              publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: body.publicKeyJwk.x },
              attributes: body.attributes ?? {},
              provisioningTokenId: token.id,
              registeredAt: now,
              lastSeenAt: now,
            })
            .returning({ id: devices.id });
          if (device === undefined) throw new ServerError('ERR_INTERNAL', 'device insert returned no row');
          // Outside the populations of running rollouts that take no late joiners (late-joiners.ts).
          await markRegistered(tx, body.product, device.id, now);
          return device.id;
        });
        metrics.registrations.inc();
        deps.logger.info({ deviceId, product: body.product, hardware: body.hardware }, 'device registered');
        return c.json({ deviceId }, 201);
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/device/poll',
        tags: ['device'],
        summary: 'Ask for an update; answers no-update or an offer (signed manifest + artifact URLs)',
        security: [{ deviceJwt: [] }],
        middleware: [pollAuth] as const,
        request: { body: { required: true, ...json(PollRequestSchema) } },
        responses: {
          200: { description: 'No update, or an offer', ...json(PollResponseSchema) },
          304: {
            description:
              'Unchanged since the If-None-Match ETag: no body; the device state is recorded as for a 200, ' +
              'and the Abota-Poll-After-Seconds header carries the next poll delay',
          },
          ...errorResponses,
        },
      }),
      async (c) => {
        const token = c.get('deviceToken');
        const body = c.req.valid('json');
        const now = deps.clock.now();
        const result = await deps.polls.run({
          rolloutIds: await deps.rollouts.progressRolloutIds(),
          deviceId: token.deviceId,
          jtiKey: token.jtiKey,
          jtiExpiresAt: token.jtiExpiresAt,
          version: body.version,
          bootedSlot: body.bootedSlot,
          installState: body.installState ?? null,
          hardware: body.hardware ?? null,
          product: body.product ?? null,
          now,
        });
        if (result.kind === 'unknown-device')
          throw new ServerError('ERR_DEVICE_UNKNOWN', `no device ${token.deviceId} is registered`);
        if (result.kind === 'decommissioned') {
          throw new ServerError(
            'ERR_DEVICE_DECOMMISSIONED',
            `device ${token.deviceId} was decommissioned; register it again`,
          );
        }
        if (result.kind === 'replayed') throw replayed();
        if (body.product !== undefined && body.product !== result.product) {
          throw new ServerError(
            'ERR_CONFLICT',
            `device is registered for product "${result.product}" but reports "${body.product}"`,
          );
        }
        const pollAfterSeconds = jitteredPollSeconds(config.pollIntervalSeconds, config.pollJitterFraction);
        // The decision: cached rollouts (src/rollout/engine.ts) + this device's progress rows.
        const offer = await deps.rollouts.offerFor(
          {
            id: token.deviceId,
            product: result.product,
            hardware: result.hardware,
            tags: result.tags,
            currentVersion: body.version,
            timeZone: result.timeZone ?? undefined,
          },
          result.progress,
        );
        const chosen = offer?.candidate;
        const ifNoneMatch = c.req.header('if-none-match');
        if (chosen === undefined) {
          c.header('etag', noUpdateTag);
          if (ifNoneMatchHits(ifNoneMatch, noUpdateTag)) {
            metrics.polls.inc({ result: 'not-modified' });
            c.header(POLL_AFTER_HEADER, String(pollAfterSeconds));
            return c.body(null, 304);
          }
          metrics.polls.inc({ result: 'no-update' });
          return c.json({ status: 'no-update' as const, pollAfterSeconds }, 200);
        }
        const [blobRows, deltaRows, , rootRows] = await Promise.all([
          db
            .select({ digest: releaseBlobs.digest })
            .from(releaseBlobs)
            .where(eq(releaseBlobs.releaseId, chosen.releaseId)),
          // Deltas from exactly the version this poll reported (docs/CONTRACTS.md "Deltas end to
          // end"); the yank check keeps a release yanked since the rollout cache loaded delta-free.
          db
            .select({
              image: releaseDeltas.image,
              digest: releaseDeltas.digest,
              sizeBytes: releaseDeltas.sizeBytes,
              sourceVersion: releaseDeltas.sourceVersion,
              sourceRootHash: releaseDeltas.sourceRootHash,
            })
            .from(releaseDeltas)
            .innerJoin(releases, eq(releases.id, releaseDeltas.releaseId))
            .where(
              and(
                eq(releaseDeltas.releaseId, chosen.releaseId),
                eq(releaseDeltas.sourceVersion, body.version),
                eq(releases.yanked, false),
              ),
            )
            .orderBy(releaseDeltas.image, releaseDeltas.sourceRootHash),
          db
            .insert(rolloutDevices)
            .values({
              rolloutId: chosen.rolloutId,
              deviceId: token.deviceId,
              state: 'offered',
              updatedAt: now,
            })
            .onConflictDoNothing(),
          rootsAfter(result.product, body.trustRootVersion),
        ]);
        const roots = rootTexts(rootRows);
        const bakeSeconds = bakeSecondsOf(chosen.stages[chosen.currentStage]);
        const etag = offerEtag(pollPolicy, {
          rolloutId: chosen.rolloutId,
          releaseId: chosen.releaseId,
          rootVersions: rootRows.slice(0, roots.length).map((r) => r.version),
          deltaDigests: deltaRows.map((d) => d.digest),
          allowDowngrade: chosen.allowDowngrade,
          bakeSeconds,
        });
        c.header('etag', etag);
        if (ifNoneMatchHits(ifNoneMatch, etag)) {
          metrics.polls.inc({ result: 'not-modified' });
          c.header(POLL_AFTER_HEADER, String(pollAfterSeconds));
          return c.body(null, 304);
        }
        const artifacts: Record<string, string> = {};
        for (const { digest } of blobRows) artifacts[digest] = blobUrl(digest);
        const deltas = deltaRows.map((d) => ({
          image: d.image as 'rootfs' | 'boot',
          digest: d.digest,
          sizeBytes: d.sizeBytes,
          url: blobUrl(d.digest),
          sourceVersion: d.sourceVersion,
          sourceRootHash: d.sourceRootHash,
        }));
        metrics.polls.inc({ result: 'update' });
        metrics.offers.inc({ product: result.product });
        if (deltas.length > 0) metrics.offersWithDelta.inc({ product: result.product });
        return c.json(
          {
            status: 'update' as const,
            rolloutId: chosen.rolloutId,
            release: { version: chosen.releaseVersion, manifestJws: chosen.manifestJws },
            artifacts,
            ...(roots.length > 0 ? { roots } : {}),
            ...(deltas.length > 0 ? { deltas } : {}),
            // The rollout's permission to go back to an older version (every rollback rollout has
            // it). The device still refuses anything below its securityVersion floor.
            allowDowngrade: chosen.allowDowngrade,
            ...(bakeSeconds > 0 ? { health: { bakeSeconds } } : {}),
            pollAfterSeconds,
          },
          200,
        );
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/device/report',
        tags: ['device'],
        summary: 'Report install progress; idempotent per (device, rollout, state)',
        security: [{ deviceJwt: [] }],
        middleware: [auth] as const,
        request: { body: { required: true, ...json(ReportRequestSchema) } },
        responses: {
          202: { description: 'Accepted', ...json(ReportResponseSchema) },
          ...errorResponses,
          500: { description: 'Server error', ...json(ErrorSchema) },
        },
      }),
      async (c) => {
        const device = c.get('device');
        const body = c.req.valid('json');
        const now = deps.clock.now();
        const rolloutId = body.rolloutId ?? null;
        const duplicate = await db.transaction(async (tx) => {
          if (rolloutId !== null) {
            const [membership] = await tx
              .select({ state: rolloutDevices.state })
              .from(rolloutDevices)
              .where(and(eq(rolloutDevices.rolloutId, rolloutId), eq(rolloutDevices.deviceId, device.id)))
              .limit(1);
            if (membership === undefined) {
              throw new ServerError('ERR_NOT_FOUND', `rollout ${rolloutId} was never offered to this device`);
            }
          }
          if (isHealthReport(body.state))
            return recordHealthReport(tx, {
              ...body,
              state: body.state,
              deviceId: device.id,
              rolloutId,
              now,
            });
          const inserted = await tx
            .insert(deviceEvents)
            .values({
              deviceId: device.id,
              rolloutId,
              version: body.version,
              state: body.state,
              errorCode: body.errorCode ?? null,
              message: body.message ?? null,
              progress: body.progress ?? null,
              at: now,
            })
            .onConflictDoNothing()
            .returning({ id: deviceEvents.id });
          const fresh = inserted.length > 0;
          // A device retrying after a device-side error repeats reports it sent before (downloading,
          // device-error): duplicates as events, but they still move it out of and back into
          // device-error. Any other duplicate changes nothing.
          const retry = fresh ? undefined : retryTransition(body.state);
          if (!fresh && (rolloutId === null || retry === undefined)) return true;
          if (rolloutId !== null) {
            const moved = await tx
              .update(rolloutDevices)
              .set({
                state: body.state,
                updatedAt: now,
                ...(body.state === 'committed' ? { committedAt: now } : {}),
              })
              .where(
                and(eq(rolloutDevices.rolloutId, rolloutId), eq(rolloutDevices.deviceId, device.id), retry),
              )
              .returning({ state: rolloutDevices.state });
            if (!fresh && moved.length === 0) return true;
            // The device's event says why it stopped this time (it may be another fault now).
            if (!fresh && body.state === DEVICE_ERROR_STATE) {
              await tx
                .update(deviceEvents)
                .set({ errorCode: body.errorCode ?? null, message: body.message ?? null, at: now })
                .where(
                  and(
                    eq(deviceEvents.deviceId, device.id),
                    eq(deviceEvents.rolloutId, rolloutId),
                    eq(deviceEvents.state, DEVICE_ERROR_STATE),
                  ),
                );
            }
          }
          await tx
            .update(devices)
            .set({
              installState: body.state,
              lastSeenAt: now,
              // What `abota device list` shows must hold from the commit on, not from the next poll.
              ...(body.state === 'committed' ? { currentVersion: body.version } : {}),
              ...(body.bootedSlot !== undefined ? { bootedSlot: body.bootedSlot } : {}),
            })
            .where(eq(devices.id, device.id));
          return !fresh;
        });
        if (!duplicate) {
          metrics.reports.inc({ state: body.state });
          if (rolloutId !== null) deps.rollouts.afterReport(rolloutId, body.state);
        }
        return c.json({ status: 'accepted' as const, duplicate }, 202);
      },
    );
}
