// The release manifest (docs/CONTRACTS.md "Release manifest"): what a device needs to decide
// whether to install a release and to check every block it writes. zod schemas are the single
// source of the runtime validation, the TypeScript types and the JSON Schema in the docs.
// Strict throughout: unknown keys are rejected so a signer cannot smuggle in fields an older
// verifier would silently ignore.
import { z } from 'zod';
import { isSemver, MAX_VERSION_LENGTH } from './semver.js';

/** Largest byte size or offset accepted anywhere (16 TiB): far above any image, exact in a double. */
export const MAX_SIZE_BYTES = 2 ** 44;
/** Highest `securityVersion` (a u32, so it fits any device-side counter). */
export const MAX_SECURITY_VERSION = 2 ** 32 - 1;
/** Most hardware ids one release may name. */
export const MAX_COMPATIBLE = 64;

/** Product and hardware ids: short lower-case slugs ("eflow-vm", "hyperv-x64"). */
export const IdSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected a lower-case id: [a-z0-9][a-z0-9._-]{0,63}');

/** Content digest of a blob, `sha256:<64 lower-case hex>` (↔ blob key `sha256/<hex>`). */
export const DigestSchema = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 lower-case hex digits>');

export const SizeBytesSchema = z.int().min(0).max(MAX_SIZE_BYTES);

// FORMATS.md §1.1: block sizes are powers of two from 512 B to 512 KiB.
const BLOCK_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288] as const;

/** Hex length of a root hash per verity hash algorithm (digest size × 2). */
export const ROOT_HASH_HEX_LENGTH = { sha1: 40, sha256: 64, sha512: 128 } as const;

/** dm-verity parameters of one image (FORMATS.md §1.1-1.3), enough to rebuild the table line. */
export const VeritySchema = z
  .strictObject({
    hashType: z.literal([0, 1]),
    algorithm: z.enum(['sha1', 'sha256', 'sha512']),
    dataBlockSize: z.literal(BLOCK_SIZES),
    hashBlockSize: z.literal(BLOCK_SIZES),
    dataBlocks: z
      .int()
      .min(1)
      .max(MAX_SIZE_BYTES / 512),
    // FORMATS.md §1.1: 0 … 256 bytes of salt.
    salt: z.string().regex(/^(?:[0-9a-f]{2}){0,256}$/, 'expected 0-256 bytes as lower-case hex'),
    rootHash: z.string().regex(/^[0-9a-f]+$/, 'expected lower-case hex'),
    superblock: z.boolean(),
    uuid: z
      .string()
      .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'expected a lower-case UUID')
      .optional(),
    // FORMATS.md §1.1: the hash offset must be a multiple of 512.
    hashOffset: SizeBytesSchema.multipleOf(512),
    /** The hash file (CONTRACTS.md: the `hashTree` artifact), content-addressed. */
    hashTree: z.strictObject({ digest: DigestSchema, sizeBytes: SizeBytesSchema.min(1) }),
  })
  .superRefine((v, ctx) => {
    const expected = ROOT_HASH_HEX_LENGTH[v.algorithm];
    if (v.rootHash.length !== expected) {
      ctx.addIssue({
        code: 'custom',
        path: ['rootHash'],
        message: `expected ${expected} hex digits for ${v.algorithm}, found ${v.rootHash.length}`,
      });
    }
    if (v.uuid !== undefined && !v.superblock) {
      ctx.addIssue({ code: 'custom', path: ['uuid'], message: 'a uuid is only stored in a superblock' });
    }
  });

/** The full artifact of an image: the blob a device downloads when it has no usable delta. */
export const ArtifactSchema = z
  .strictObject({
    digest: DigestSchema,
    sizeBytes: SizeBytesSchema,
    codec: z.enum(['zstd', 'brotli', 'none']),
    uncompressedSizeBytes: SizeBytesSchema,
  })
  .superRefine((a, ctx) => {
    if (a.codec === 'none' && a.sizeBytes !== a.uncompressedSizeBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['sizeBytes'],
        message: `codec none: sizeBytes ${a.sizeBytes} must equal uncompressedSizeBytes ${a.uncompressedSizeBytes}`,
      });
    }
  });

/** One slot-class image (rootfs, boot): its size, verity parameters and full artifact. */
export const ImageSchema = z
  .strictObject({
    sizeBytes: SizeBytesSchema.min(1),
    verity: VeritySchema,
    artifact: ArtifactSchema,
  })
  .superRefine((img, ctx) => {
    // The verity tree must not claim blocks beyond the image (a partial trailing block is allowed
    // and simply not covered, FORMATS.md §1.1 "data blocks").
    const covered = img.verity.dataBlocks * img.verity.dataBlockSize;
    if (covered > img.sizeBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['verity', 'dataBlocks'],
        message: `dataBlocks × dataBlockSize = ${covered} exceeds the image's sizeBytes ${img.sizeBytes}`,
      });
    }
    if (img.artifact.uncompressedSizeBytes !== img.sizeBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['artifact', 'uncompressedSizeBytes'],
        message: `the full artifact must decompress to the image: expected ${img.sizeBytes}, found ${img.artifact.uncompressedSizeBytes}`,
      });
    }
  });

/** A UTC timestamp in RFC 3339 form with `Z` ("2026-11-25T12:00:00Z"). */
export const TimestampSchema = z.iso.datetime({ offset: false });

export const ReleaseManifestSchema = z
  .strictObject({
    schemaVersion: z.literal(1),
    product: IdSchema.meta({ description: 'Product id; must equal the device product' }),
    compatible: z
      .array(IdSchema)
      .min(1)
      .max(MAX_COMPATIBLE)
      .meta({ description: 'Hardware ids this release may be installed on (unique)' }),
    version: z
      .string()
      .max(MAX_VERSION_LENGTH)
      .refine(isSemver, 'expected strict semver 2.0.0 (MAJOR.MINOR.PATCH[-pre][+build])')
      .meta({
        description:
          'Strict semver 2.0.0; must differ from the running version (downgrades need an explicit rollout flag)',
      }),
    securityVersion: z
      .int()
      .min(0)
      .max(MAX_SECURITY_VERSION)
      .meta({ description: 'Anti-rollback counter: devices refuse releases below their floor' }),
    created: TimestampSchema,
    expires: TimestampSchema.meta({ description: 'Devices refuse the release at or after this instant' }),
    images: z
      .strictObject({ rootfs: ImageSchema, boot: ImageSchema.optional() })
      .meta({ description: 'Images by slot class' }),
  })
  .superRefine((m, ctx) => {
    if (new Set(m.compatible).size !== m.compatible.length) {
      ctx.addIssue({ code: 'custom', path: ['compatible'], message: 'hardware ids must be unique' });
    }
    if (Date.parse(m.expires) <= Date.parse(m.created)) {
      ctx.addIssue({
        code: 'custom',
        path: ['expires'],
        message: `expires ${m.expires} is not after created ${m.created}`,
      });
    }
  })
  .meta({
    title: 'abota release manifest',
    description:
      'Payload of manifest.jws (General JWS, typ abota-release+jws), canonical JSON. See packages/manifest/README.md.',
  });

export type ReleaseManifest = z.infer<typeof ReleaseManifestSchema>;
export type ImageManifest = z.infer<typeof ImageSchema>;
export type VerityManifest = z.infer<typeof VeritySchema>;
export type ArtifactManifest = z.infer<typeof ArtifactSchema>;
export type SlotClass = keyof ReleaseManifest['images'];

/** JSON Schema (draft 2020-12) of the release manifest, for docs and third-party tooling. */
export function manifestJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(ReleaseManifestSchema, { target: 'draft-2020-12' }) as Record<string, unknown>;
}

/** "images.rootfs.verity.rootHash: expected 64 hex digits …; …" — a person-readable issue list. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 8)
    .map((issue) => `${issue.path.length === 0 ? '(root)' : issue.path.join('.')}: ${issue.message}`)
    .join('; ');
}
