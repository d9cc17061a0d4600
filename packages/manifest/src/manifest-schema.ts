// The release manifest (docs/CONTRACTS.md "Release manifest"): what a device needs to decide
// whether to install a release and to check every block it writes. valibot schemas are the single
// source of the runtime validation, the TypeScript types and the JSON Schema in the docs.
// Strict throughout: unknown keys are rejected so a signer cannot smuggle in fields an older
// verifier would silently ignore.
import { toJsonSchema } from '@valibot/to-json-schema';
import * as v from 'valibot';
import { isSemver, MAX_VERSION_LENGTH } from './semver.js';

/** Largest byte size or offset accepted anywhere (16 TiB): far above any image, exact in a double. */
export const MAX_SIZE_BYTES = 2 ** 44;
/** Highest `securityVersion` (a u32, so it fits any device-side counter). */
export const MAX_SECURITY_VERSION = 2 ** 32 - 1;
/** Most hardware ids one release may name. */
export const MAX_COMPATIBLE = 64;

/** An integer in [min, max] (a safe integer: never NaN, ±Infinity or a fraction). */
export function intSchema(min: number, max: number) {
  return v.pipe(v.number(), v.safeInteger(), v.minValue(min), v.maxValue(max));
}

/** Product and hardware ids: short lower-case slugs ("eflow-vm", "hyperv-x64"). */
export const IdSchema = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected a lower-case id: [a-z0-9][a-z0-9._-]{0,63}'),
);

/** Content digest of a blob, `sha256:<64 lower-case hex>` (↔ blob key `sha256/<hex>`). */
export const DigestSchema = v.pipe(
  v.string(),
  v.regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 lower-case hex digits>'),
);

export const SizeBytesSchema = intSchema(0, MAX_SIZE_BYTES);

// docs/formats.md §1.1: block sizes are powers of two from 512 B to 512 KiB.
const BLOCK_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288] as const;

/** Hex length of a root hash per verity hash algorithm (digest size × 2). */
export const ROOT_HASH_HEX_LENGTH = { sha1: 40, sha256: 64, sha512: 128 } as const;

/** dm-verity parameters of one image (docs/formats.md §1.1-1.3), enough to rebuild the table line. */
export const VeritySchema = v.pipe(
  v.strictObject({
    hashType: v.picklist([0, 1]),
    algorithm: v.picklist(['sha1', 'sha256', 'sha512']),
    dataBlockSize: v.picklist(BLOCK_SIZES),
    hashBlockSize: v.picklist(BLOCK_SIZES),
    dataBlocks: intSchema(1, MAX_SIZE_BYTES / 512),
    // docs/formats.md §1.1: 0 … 256 bytes of salt.
    salt: v.pipe(v.string(), v.regex(/^(?:[0-9a-f]{2}){0,256}$/, 'expected 0-256 bytes as lower-case hex')),
    rootHash: v.pipe(v.string(), v.regex(/^[0-9a-f]+$/, 'expected lower-case hex')),
    superblock: v.boolean(),
    uuid: v.optional(
      v.pipe(
        v.string(),
        v.regex(
          /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
          'expected a lower-case UUID',
        ),
      ),
    ),
    // docs/formats.md §1.1: the hash offset must be a multiple of 512.
    hashOffset: v.pipe(SizeBytesSchema, v.multipleOf(512)),
    /** The hash file (CONTRACTS.md: the `hashTree` artifact), content-addressed. */
    hashTree: v.strictObject({ digest: DigestSchema, sizeBytes: intSchema(1, MAX_SIZE_BYTES) }),
  }),
  v.forward(
    v.check(
      (x) => x.rootHash.length === ROOT_HASH_HEX_LENGTH[x.algorithm],
      (issue) =>
        `expected ${ROOT_HASH_HEX_LENGTH[issue.input.algorithm]} hex digits for ${issue.input.algorithm}, found ${issue.input.rootHash.length}`,
    ),
    ['rootHash'],
  ),
  v.forward(
    v.check((x) => x.uuid === undefined || x.superblock, 'a uuid is only stored in a superblock'),
    ['uuid'],
  ),
);

/** The full artifact of an image: the blob a device downloads when it has no usable delta. */
export const ArtifactSchema = v.pipe(
  v.strictObject({
    digest: DigestSchema,
    sizeBytes: SizeBytesSchema,
    codec: v.picklist(['zstd', 'brotli', 'none']),
    uncompressedSizeBytes: SizeBytesSchema,
  }),
  v.forward(
    v.check(
      (a) => a.codec !== 'none' || a.sizeBytes === a.uncompressedSizeBytes,
      (issue) =>
        `codec none: sizeBytes ${issue.input.sizeBytes} must equal uncompressedSizeBytes ${issue.input.uncompressedSizeBytes}`,
    ),
    ['sizeBytes'],
  ),
);

/** One slot-class image (rootfs, boot): its size, verity parameters and full artifact. */
export const ImageSchema = v.pipe(
  v.strictObject({
    sizeBytes: intSchema(1, MAX_SIZE_BYTES),
    verity: VeritySchema,
    artifact: ArtifactSchema,
  }),
  // The verity tree must not claim blocks beyond the image (a partial trailing block is allowed
  // and simply not covered, docs/formats.md §1.1 "data blocks").
  v.forward(
    v.check(
      (img) => img.verity.dataBlocks * img.verity.dataBlockSize <= img.sizeBytes,
      (issue) =>
        `dataBlocks × dataBlockSize = ${issue.input.verity.dataBlocks * issue.input.verity.dataBlockSize} exceeds the image's sizeBytes ${issue.input.sizeBytes}`,
    ),
    ['verity', 'dataBlocks'],
  ),
  v.forward(
    v.check(
      (img) => img.artifact.uncompressedSizeBytes === img.sizeBytes,
      (issue) =>
        `the full artifact must decompress to the image: expected ${issue.input.sizeBytes}, found ${issue.input.artifact.uncompressedSizeBytes}`,
    ),
    ['artifact', 'uncompressedSizeBytes'],
  ),
);

// RFC 3339 date-time in UTC with `Z`, optional fraction; a real calendar instant (no Feb 30).
const TIMESTAMP = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z$/;

function isCalendarDay(text: string): boolean {
  // Date rolls Feb 30 over to Mar 2: the day must survive the round trip.
  const date = new Date(text);
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === text.slice(0, 10);
}

/** A UTC timestamp in RFC 3339 form with `Z` ("2026-11-25T12:00:00Z"). */
export const TimestampSchema = v.pipe(
  v.string(),
  v.regex(TIMESTAMP, 'expected an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.fff]Z)'),
  v.check(isCalendarDay, 'expected a calendar date that exists'),
);

export const ReleaseManifestSchema = v.pipe(
  v.strictObject({
    schemaVersion: v.literal(1),
    product: v.pipe(IdSchema, v.description('Product id; must equal the device product')),
    compatible: v.pipe(
      v.array(IdSchema),
      v.minLength(1),
      v.maxLength(MAX_COMPATIBLE),
      v.description('Hardware ids this release may be installed on (unique)'),
    ),
    version: v.pipe(
      v.string(),
      v.maxLength(MAX_VERSION_LENGTH),
      v.check(isSemver, 'expected strict semver 2.0.0 (MAJOR.MINOR.PATCH[-pre][+build])'),
      v.description(
        'Strict semver 2.0.0; must differ from the running version (downgrades need an explicit rollout flag)',
      ),
    ),
    securityVersion: v.pipe(
      intSchema(0, MAX_SECURITY_VERSION),
      v.description('Anti-rollback counter: devices refuse releases below their floor'),
    ),
    created: TimestampSchema,
    expires: v.pipe(TimestampSchema, v.description('Devices refuse the release at or after this instant')),
    images: v.pipe(
      v.strictObject({ rootfs: ImageSchema, boot: v.optional(ImageSchema) }),
      v.description('Images by slot class'),
    ),
  }),
  v.forward(
    v.check((m) => new Set(m.compatible).size === m.compatible.length, 'hardware ids must be unique'),
    ['compatible'],
  ),
  v.forward(
    v.check(
      (m) => Date.parse(m.expires) > Date.parse(m.created),
      (issue) => `expires ${issue.input.expires} is not after created ${issue.input.created}`,
    ),
    ['expires'],
  ),
  v.title('abota release manifest'),
  v.description(
    'Payload of manifest.jws (General JWS, typ abota-release+jws), canonical JSON. See packages/manifest/README.md.',
  ),
);

export type ReleaseManifest = v.InferOutput<typeof ReleaseManifestSchema>;
export type ImageManifest = v.InferOutput<typeof ImageSchema>;
export type VerityManifest = v.InferOutput<typeof VeritySchema>;
export type ArtifactManifest = v.InferOutput<typeof ArtifactSchema>;
export type SlotClass = keyof ReleaseManifest['images'];

/**
 * JSON Schema (draft 2020-12) of the release manifest, for docs and third-party tooling. The
 * cross-field rules (check actions: root hash length per algorithm, unique hardware ids,
 * expires after created, …) have no JSON Schema form and are left out; the device applies them.
 */
export function manifestJsonSchema(): Record<string, unknown> {
  return toJsonSchema(ReleaseManifestSchema, {
    target: 'draft-2020-12',
    ignoreActions: ['check'],
  }) as Record<string, unknown>;
}

type Issues = readonly v.BaseIssue<unknown>[];

/** "images.rootfs.verity.rootHash: expected 64 hex digits …; …" — a person-readable issue list. */
export function describeIssues(issues: Issues): string {
  return issues
    .slice(0, 8)
    .map(
      (issue) =>
        `${v.getDotPath(issue) ?? '(root)'}: ${issue.type === 'strict_object' && issue.expected === 'never' ? 'Unrecognized key' : issue.message}`,
    )
    .join('; ');
}

/** Run `schema` on `value`: the output, or the issue list as describeIssues renders it. */
export function validate<S extends v.GenericSchema>(
  schema: S,
  value: unknown,
): { ok: true; value: v.InferOutput<S> } | { ok: false; issues: string } {
  const result = v.safeParse(schema, value);
  return result.success
    ? { ok: true, value: result.output }
    : { ok: false, issues: describeIssues(result.issues) };
}
