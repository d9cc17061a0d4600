// The manifest schema is strict: every rule below keeps a signer's mistake (or a hostile field)
// from reaching a device as something it half-understands.
import * as v from 'valibot';
import { describe, expect, it } from 'vitest';
import { exampleManifest } from '../test/fixtures.js';
import { manifestJsonSchema, ReleaseManifestSchema } from './manifest-schema.js';
import { parseManifest } from './release.js';

type Json = Record<string, unknown>;

/** exampleManifest with one field of images.rootfs replaced (deep path). */
function withRootfs(path: string[], value: unknown): Json {
  const m = JSON.parse(JSON.stringify(exampleManifest())) as Json;
  let node = (m['images'] as Json)['rootfs'] as Json;
  for (const key of path.slice(0, -1)) node = node[key] as Json;
  if (value === undefined) delete node[path.at(-1)!];
  else node[path.at(-1)!] = value;
  return m;
}

function issuesOf(value: unknown): string {
  try {
    parseManifest(value);
  } catch (err) {
    expect(err).toMatchObject({ code: 'ERR_MANIFEST_INVALID' });
    return (err as Error).message;
  }
  throw new Error('expected the manifest to be refused');
}

describe('ReleaseManifestSchema', () => {
  it('accepts the CONTRACTS.md example, with and without a boot image', () => {
    expect(parseManifest(exampleManifest())).toEqual(exampleManifest());
    const m = exampleManifest();
    expect(parseManifest({ ...m, images: { ...m.images, boot: m.images.rootfs } }).images.boot).toBeDefined();
  });

  it.each([
    ['an unknown top-level field', { ...exampleManifest(), channel: 'beta' }, 'channel'],
    ['an unknown verity field', withRootfs(['verity', 'fecRoots'], 2), 'fecRoots'],
    ['a missing root hash', withRootfs(['verity', 'rootHash'], undefined), 'images.rootfs.verity.rootHash'],
    [
      'a sha512 root hash of sha256 length',
      withRootfs(['verity', 'algorithm'], 'sha512'),
      'expected 128 hex digits',
    ],
    [
      'upper-case hex in the root hash',
      withRootfs(['verity', 'rootHash'], 'CD'.repeat(32)),
      'verity.rootHash',
    ],
    ['an odd-length salt', withRootfs(['verity', 'salt'], 'abc'), 'verity.salt'],
    ['a salt longer than 256 bytes', withRootfs(['verity', 'salt'], 'ab'.repeat(257)), 'verity.salt'],
    [
      'a block size that is not a power of two',
      withRootfs(['verity', 'dataBlockSize'], 3000),
      'dataBlockSize',
    ],
    ['a block size above 512 KiB', withRootfs(['verity', 'hashBlockSize'], 1048576), 'hashBlockSize'],
    ['hash type 2', withRootfs(['verity', 'hashType'], 2), 'hashType'],
    ['an unknown hash algorithm', withRootfs(['verity', 'algorithm'], 'md5'), 'algorithm'],
    ['a hash offset not a multiple of 512', withRootfs(['verity', 'hashOffset'], 100), 'hashOffset'],
    ['a uuid without a superblock', withRootfs(['verity', 'superblock'], false), 'verity.uuid'],
    [
      'more data blocks than the image holds',
      withRootfs(['verity', 'dataBlocks'], 131073),
      'exceeds the image',
    ],
    ['a digest that is not sha256:<hex>', withRootfs(['artifact', 'digest'], 'md5:abc'), 'artifact.digest'],
    ['an unknown codec', withRootfs(['artifact', 'codec'], 'gzip'), 'artifact.codec'],
    [
      'an artifact that decompresses to another size',
      withRootfs(['artifact', 'uncompressedSizeBytes'], 1),
      'uncompressedSizeBytes',
    ],
    ['codec none with a compressed size', withRootfs(['artifact', 'codec'], 'none'), 'artifact.sizeBytes'],
    ['a size above 16 TiB', withRootfs(['sizeBytes'], 2 ** 50), 'sizeBytes'],
    ['a fractional size', withRootfs(['sizeBytes'], 1.5), 'sizeBytes'],
    ['a non-semver version', { ...exampleManifest(), version: '1.2' }, 'version'],
    ['a negative securityVersion', { ...exampleManifest(), securityVersion: -1 }, 'securityVersion'],
    ['duplicate hardware ids', { ...exampleManifest(), compatible: ['a', 'a'] }, 'unique'],
    ['no hardware ids', { ...exampleManifest(), compatible: [] }, 'compatible'],
    ['an upper-case product id', { ...exampleManifest(), product: 'EFLOW' }, 'product'],
    ['a timestamp with an offset', { ...exampleManifest(), expires: '2027-05-25T12:00:00+02:00' }, 'expires'],
    [
      'expires before created',
      { ...exampleManifest(), expires: '2026-01-01T00:00:00Z' },
      'not after created',
    ],
    ['schemaVersion 2', { ...exampleManifest(), schemaVersion: 2 }, 'schemaVersion'],
    ['no rootfs image', { ...exampleManifest(), images: {} }, 'images.rootfs'],
  ])('refuses %s', (_name, value, expected) => {
    expect(issuesOf(value)).toContain(expected);
  });

  it('exports a JSON Schema that forbids unknown members and requires the contract fields', () => {
    const schema = manifestJsonSchema() as {
      additionalProperties: unknown;
      required: string[];
      properties: { images: { properties: { rootfs: { additionalProperties: unknown } } } };
    };
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(
      expect.arrayContaining([
        'schemaVersion',
        'product',
        'compatible',
        'version',
        'securityVersion',
        'expires',
        'images',
      ]),
    );
    expect(schema.properties.images.properties.rootfs.additionalProperties).toBe(false);
    expect(v.is(ReleaseManifestSchema, exampleManifest())).toBe(true);
  });
});

describe('manifest.schema.json', () => {
  it('is the current JSON Schema of the manifest (regenerate: see README "JSON Schema")', async () => {
    const { readFile } = await import('node:fs/promises');
    const committed = JSON.parse(await readFile(new URL('../manifest.schema.json', import.meta.url), 'utf8'));
    expect(committed).toEqual(manifestJsonSchema());
  });
});
