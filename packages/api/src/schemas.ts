// Request and response schemas of the HTTP API: the single source of runtime validation,
// TypeScript types and the OpenAPI document (@hono/zod-openapi). Rollouts: rollout.ts; resumable
// uploads: uploads.ts.
import { z } from '@hono/zod-openapi';
import { API_KEY_ROLES, REPORT_STATES } from './values.js';

export const ErrorSchema = z
  .object({ error: z.object({ code: z.string(), message: z.string() }) })
  .openapi('Error', {
    example: { error: { code: 'ERR_VALIDATION', message: 'version: expected a string' } },
  });

export const errorResponses = {
  400: {
    description: 'Malformed or invalid request',
    content: { 'application/json': { schema: ErrorSchema } },
  },
  401: {
    description: 'Missing or invalid credentials',
    content: { 'application/json': { schema: ErrorSchema } },
  },
  403: { description: 'Not allowed', content: { 'application/json': { schema: ErrorSchema } } },
  404: { description: 'Not found', content: { 'application/json': { schema: ErrorSchema } } },
  409: {
    description: 'Conflicts with the current state',
    content: { 'application/json': { schema: ErrorSchema } },
  },
  413: { description: 'Body too large', content: { 'application/json': { schema: ErrorSchema } } },
  422: {
    description: 'Refused content (signature, digest, missing blob)',
    content: { 'application/json': { schema: ErrorSchema } },
  },
} as const;

/**
 * A string the database can store: PostgreSQL `text` and `jsonb` cannot hold U+0000, and `jsonb`
 * refuses a lone UTF-16 surrogate (JSON `"\ud83d"`, which JSON.parse accepts and JSON.stringify
 * writes back as that escape; `text` would silently store U+FFFD), so both are refused here with
 * 400 ERR_VALIDATION instead of failing the statement (a 500).
 */
export const text = (max: number, min = 0) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !s.includes('\u0000'), 'must not contain a NUL character (U+0000)')
    // With the u flag a surrogate pair is one code point, so \p{Cs} matches only lone halves.
    .refine((s) => !/\p{Cs}/u.test(s), 'must be well-formed Unicode (no lone UTF-16 surrogate)');

/**
 * Any JSON value nested at most `maxDepth` arrays/objects deep, measured without recursion: a
 * 200k-deep array parses fine but overflows the stack of everything that walks it afterwards
 * (JSON.stringify for the database, the JWS parser).
 */
export const boundedJson = (maxDepth: number) =>
  z.unknown().superRefine((value, ctx) => {
    const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
    while (stack.length > 0) {
      const { v, depth } = stack.pop() as { v: unknown; depth: number };
      if (v === null || typeof v !== 'object') continue;
      if (depth >= maxDepth) {
        ctx.addIssue({ code: 'custom', message: `nested more than ${maxDepth} levels deep` });
        return;
      }
      for (const child of Object.values(v)) stack.push({ v: child, depth: depth + 1 });
    }
  });

const Id = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected 1..63 of a-z 0-9 . _ - starting with a letter or digit');
const Uuid = z.uuid();
const Version = text(128, 1);
const Tag = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:=/-]{0,127}$/, 'tags are 1..128 of A-Z a-z 0-9 . _ : = / -');
const Hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex characters');
export const Sha256HexParam = z.object({ hex: Hex64.openapi({ param: { name: 'hex', in: 'path' } }) });
export const IdParam = z.object({ id: Uuid.openapi({ param: { name: 'id', in: 'path' } }) });
export const ProductIdParam = z.object({ id: Id.openapi({ param: { name: 'id', in: 'path' } }) });

// ---- device API (docs/CONTRACTS.md "Update server HTTP API") ----

export const DevicePublicJwkSchema = z
  .looseObject({
    kty: z.literal('OKP'),
    crv: z.literal('Ed25519'),
    x: z
      .string()
      .regex(/^[A-Za-z0-9_-]{43}$/, 'expected the 32-byte Ed25519 public key in base64url (43 characters)'),
  })
  .superRefine((jwk, ctx) => {
    if ('d' in jwk)
      ctx.addIssue({
        code: 'custom',
        path: ['d'],
        message: 'send the public key only; this JWK holds the private key "d"',
      });
  })
  .openapi('DevicePublicJwk');

export const RegisterRequestSchema = z
  .strictObject({
    token: text(200, 1),
    publicKeyJwk: DevicePublicJwkSchema,
    product: Id,
    hardware: Id,
    attributes: z
      .record(text(64), text(256))
      .refine((r) => Object.keys(r).length <= 32, 'at most 32 attributes')
      .optional(),
  })
  .openapi('RegisterRequest');
export const RegisterResponseSchema = z.object({ deviceId: Uuid }).openapi('RegisterResponse');

export const SlotSchema = z.enum(['A', 'B']);
export const PollRequestSchema = z
  .strictObject({
    version: Version,
    bootedSlot: SlotSchema,
    installState: text(64).optional(),
    hardware: Id.optional(),
    product: Id.optional(),
    trustRootVersion: z.int().min(1).max(2_147_483_647).optional().openapi({
      description:
        "The version of the device's current trust root: an offer then carries the product's later roots (`roots`)",
    }),
  })
  .openapi('PollRequest');

const Sha256Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected "sha256:" and 64 lower-case hex');
/** A dm-verity root hash: the digest of the tree's top block (sha1 … sha512), lower-case hex. */
const RootHashHex = z
  .string()
  .regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected a dm-verity root hash: 40..128 lower-case hex characters');
export const DeltaImageSchema = z.enum(['rootfs', 'boot']);

/** docs/CONTRACTS.md "Update server HTTP API": one delta a device may use instead of an artifact. */
export const DeltaOfferSchema = z
  .object({
    image: DeltaImageSchema,
    digest: Sha256Digest,
    sizeBytes: z.int(),
    url: z.string(),
    sourceVersion: z.string(),
    sourceRootHash: z.string(),
  })
  .openapi('DeltaOffer');

export const PollResponseSchema = z
  .union([
    z.object({ status: z.literal('no-update'), pollAfterSeconds: z.int() }),
    z.object({
      status: z.literal('update'),
      rolloutId: Uuid,
      release: z.object({ version: z.string(), manifestJws: z.string() }),
      artifacts: z.record(z.string(), z.string()),
      roots: z.array(z.string()).optional().openapi({
        description:
          "The product's signed roots (root.json texts) after the poll's `trustRootVersion`, oldest first, at most 16: the device walks them (TUF §5.3) before verifying the manifest (absent when the device is current)",
      }),
      deltas: z.array(DeltaOfferSchema).optional().openapi({
        description:
          'Deltas to the offered release from the version this poll reported (absent when there are none)',
      }),
      allowDowngrade: z.boolean().openapi({
        description:
          "The rollout permits installing a release older than the running version (a rollback rollout, or one created with allowDowngrade). Never below the device's securityVersion floor: the device enforces that itself (docs/trust-model.md)",
      }),
      health: z
        .object({
          bakeSeconds: z.int().min(1),
        })
        .optional()
        .openapi({
          description:
            "The stage's health bake window (absent when it has none): after committing, the device re-runs its health checks on its interval for this long and reports `healthy` (with `healthySeconds`) or `unhealthy`",
        }),
      pollAfterSeconds: z.int(),
    }),
  ])
  .openapi('PollResponse');

export const ReportRequestSchema = z
  .strictObject({
    rolloutId: Uuid.optional(),
    version: Version,
    state: z.enum(REPORT_STATES).openapi({
      description:
        '`failed` and `rolled-back` are release failures; `device-error` is a fault of the device itself (its configuration, boot-control state, slot devices): it does not count against the rollout, and the device is offered the release again',
    }),
    bootedSlot: SlotSchema.optional().openapi({
      description: 'The slot the device runs now (with `committed`: the slot it committed)',
    }),
    errorCode: text(64).optional(),
    message: text(2048).optional(),
    progress: z.int().min(0).max(100).optional(),
    healthySeconds: z
      .int()
      .min(0)
      .max(366 * 86_400)
      .optional()
      .openapi({ description: 'With `healthy`: seconds the device has stayed healthy since it committed' }),
  })
  .openapi('ReportRequest');
export const ReportResponseSchema = z
  .object({ status: z.literal('accepted'), duplicate: z.boolean() })
  .openapi('ReportResponse');

// ---- admin API ----

export const ListQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: text(200).optional(),
});
export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() });
/** A whole (short, unpaginated) list. */
export const listOf = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item) });

export const BlobInfoSchema = z.object({ digest: z.string(), sizeBytes: z.int() }).openapi('BlobInfo');
export const BlobListQuerySchema = ListQuerySchema.extend({
  cursor: z
    .string()
    .regex(/^sha256:[0-9a-f]{64}$/, 'cursor is not one this server returned')
    .optional(),
  unreferenced: z
    .enum(['true', 'false'])
    .optional()
    .openapi({ description: 'only blobs no release references (as artifact, hash tree or delta)' }),
  createdBefore: z.iso.datetime().optional().openapi({
    description: 'only blobs stored before this time (a push in progress has unreferenced blobs)',
  }),
});
export const BlobListItemSchema = BlobInfoSchema.extend({
  createdAt: z.string(),
  referenced: z.boolean(),
}).openapi('BlobListItem');
export const BlobPutResponseSchema = z
  .object({ digest: z.string(), sizeBytes: z.int(), created: z.boolean() })
  .openapi('BlobPutResponse');

/** root.json is a General JWS: an object a few levels deep. */
const TRUST_ROOT_MAX_DEPTH = 16;
export const ProductCreateSchema = z
  .strictObject({
    id: Id,
    description: text(1024).optional(),
    trustRoot: boundedJson(TRUST_ROOT_MAX_DEPTH).openapi({
      description:
        'root.json: the General JWS (JSON serialization) of the trust root, self-signed by its root role',
    }),
  })
  .openapi('ProductCreate');
export const TrustRootUpdateSchema = z
  .strictObject({
    trustRoot: boundedJson(TRUST_ROOT_MAX_DEPTH).openapi({
      description: 'root.json of version N+1, signed by a threshold of the current and of its own root keys',
    }),
  })
  .openapi('TrustRootUpdate');
export const ProductUpdateSchema = z
  .strictObject({
    description: text(1024).optional(),
    requireApproval: z.boolean().optional().openapi({
      description:
        'Four-eyes: a rollout of this product created by one API key starts only after another operator or admin key approves it',
    }),
  })
  .openapi('ProductUpdate');
export const ProductSchema = z
  .object({
    id: z.string(),
    description: z.string(),
    trustRootVersion: z.int(),
    trustRoot: z.unknown(),
    requireApproval: z.boolean(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Product');

export const ReleasePushSchema = z
  .strictObject({
    manifestJws: z
      .string()
      .min(1)
      .max(1024 * 1024)
      .openapi({ description: 'manifest.jws verbatim (General JWS JSON)' }),
  })
  .openapi('ReleasePush');
export const ReleaseSchema = z
  .object({
    id: Uuid,
    product: z.string(),
    version: z.string(),
    securityVersion: z.int(),
    compatible: z.array(z.string()),
    expires: z.string(),
    yanked: z.boolean(),
    yankedReason: z.string().nullable(),
    createdAt: z.string(),
    blobs: z.array(z.object({ digest: z.string(), role: z.string() })).optional(),
    manifest: z.unknown().optional(),
    manifestJws: z.string().optional(),
  })
  .openapi('Release');
export const ReleaseListQuerySchema = ListQuerySchema.extend({ product: Id.optional() });
export const YankSchema = z.strictObject({ reason: text(1024, 1) }).openapi('Yank');

export const DeviceSchema = z
  .object({
    id: Uuid,
    product: z.string(),
    hardware: z.string(),
    tags: z.array(z.string()),
    attributes: z.record(z.string(), z.string()),
    currentVersion: z.string().nullable(),
    bootedSlot: z.string().nullable(),
    installState: z.string().nullable(),
    lastSeenAt: z.string().nullable(),
    registeredAt: z.string(),
    decommissionedAt: z.string().nullable(),
  })
  .openapi('Device');
export const DeviceEventSchema = z
  .object({
    id: z.int(),
    rolloutId: z.string().nullable(),
    version: z.string(),
    state: z.string(),
    errorCode: z.string().nullable(),
    message: z.string().nullable(),
    progress: z.int().nullable(),
    at: z.string(),
  })
  .openapi('DeviceEvent');
/** A device with its latest events (GET /v1/admin/devices/{id}). */
export const DeviceDetailSchema = DeviceSchema.extend({ events: z.array(DeviceEventSchema) });
export const DeviceListQuerySchema = ListQuerySchema.extend({
  product: Id.optional(),
  hardware: Id.optional(),
  tag: Tag.optional(),
  version: Version.optional(),
  installState: text(64).optional(),
  includeDecommissioned: z.enum(['true', 'false']).optional(),
});
export const DeviceTagsSchema = z.strictObject({ tags: z.array(Tag).max(64) }).openapi('DeviceTags');

/** A secret in the creation response only: shown once, stored hashed. */
const ShownOnce = z
  .string()
  .optional()
  .openapi({ description: 'Only in the creation response: shown once, stored hashed' });

export const ProvisioningTokenCreateSchema = z
  .strictObject({
    product: Id,
    description: text(1024).optional(),
    expiresInSeconds: z
      .int()
      .min(60)
      .max(365 * 86400),
    maxUses: z
      .int()
      .min(1)
      .max(10_000_000)
      .optional()
      .openapi({ description: 'Devices that may register with it; default 1' }),
  })
  .openapi('ProvisioningTokenCreate');
export const ProvisioningTokenSchema = z
  .object({
    id: Uuid,
    product: z.string(),
    description: z.string(),
    expiresAt: z.string(),
    revokedAt: z.string().nullable(),
    maxUses: z.int().nullable(),
    uses: z.int(),
    createdAt: z.string(),
    token: ShownOnce,
  })
  .openapi('ProvisioningToken');

export const ApiKeyCreateSchema = z
  .strictObject({ name: text(128, 1), role: z.enum(API_KEY_ROLES) })
  .openapi('ApiKeyCreate');
export const ApiKeySchema = z
  .object({
    id: Uuid,
    name: z.string(),
    role: z.enum(API_KEY_ROLES),
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
    key: ShownOnce,
  })
  .openapi('ApiKey');

// Rollout schemas: rollout.ts.

// ---- deltas of a release (docs/CONTRACTS.md "Deltas end to end") ----

export const DeltaRegisterSchema = z
  .strictObject({
    image: DeltaImageSchema,
    sourceVersion: Version,
    sourceRootHash: RootHashHex.openapi({
      description: 'root hash of the source image; the delta header must name it as source',
    }),
    digest: Sha256Digest.openapi({ description: 'the delta payload, uploaded as a blob first' }),
    sizeBytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  })
  .openapi('DeltaRegister');
export const DeltaSchema = z
  .object({
    id: Uuid,
    releaseId: Uuid,
    image: DeltaImageSchema,
    sourceVersion: z.string(),
    sourceRootHash: z.string(),
    sourceSizeBytes: z.int(),
    targetRootHash: z.string(),
    digest: z.string(),
    sizeBytes: z.int(),
    createdAt: z.string(),
  })
  .openapi('Delta');
export const DeltaListSchema = z.object({ items: z.array(DeltaSchema) }).openapi('DeltaList');
export const ReleaseDeltaParam = z.object({
  id: Uuid.openapi({ param: { name: 'id', in: 'path' } }),
  deltaId: Uuid.openapi({ param: { name: 'deltaId', in: 'path' } }),
});
