// `abota release inspect`: what a release directory says, for people — read from the signed
// payload in manifest.jws (not the unsigned manifest.json copy) and deltas.json, but NOT
// verified; that is `abota release verify`'s job, and this command says so.
import { join } from 'node:path';
import { MAX_JWS_BYTES, parseGeneralJws, parseManifest, type ReleaseManifest } from '@abota/manifest';
import { type DeltaEntry, readDeltasFile } from './deltas-json.js';
import { ReleaseError } from './errors.js';
import { MANIFEST_JSON, MANIFEST_JWS, parseJsonFile, readSmallFile } from './release-dir.js';

export interface InspectReport {
  dir: string;
  verified: false;
  manifest: ReleaseManifest;
  /** kids named in the protected headers (signatures not checked). */
  signers: string[];
  /** Whether manifest.json is byte-for-byte the signed payload. */
  manifestJsonMatches: boolean;
  /** deltas.json's entries (none without the file), each with its ratio to the full artifact. */
  deltas: (DeltaEntry & { ratioToArtifact: number | null })[];
  /** Why deltas.json could not be read, when it could not (the rest is still shown). */
  deltasError?: string;
}

function decodeBase64url(text: string): string {
  return Buffer.from(text, 'base64url').toString('utf8');
}

export async function inspectRelease(dir: string): Promise<InspectReport> {
  const jwsPath = join(dir, MANIFEST_JWS);
  const jws = parseGeneralJws(await readSmallFile(jwsPath, MAX_JWS_BYTES, 'signed manifest'), jwsPath);
  const payloadText = decodeBase64url(jws.payload);
  const manifest = parseManifest(parseJsonFile(payloadText, jwsPath, 'payload of'));
  const signers = jws.signatures.map((s) => {
    const header = parseJsonFile(decodeBase64url(s.protected), jwsPath, 'protected header in') as {
      kid?: unknown;
    };
    return typeof header.kid === 'string' ? header.kid : '(no kid)';
  });
  let manifestJsonMatches = false;
  try {
    manifestJsonMatches =
      (await readSmallFile(join(dir, MANIFEST_JSON), MAX_JWS_BYTES, 'manifest')) === payloadText;
  } catch (err) {
    if (!(err instanceof ReleaseError)) throw err;
  }
  let deltas: InspectReport['deltas'] = [];
  let deltasError: string | undefined;
  try {
    deltas = ((await readDeltasFile(dir))?.deltas ?? []).map((d) => {
      const artifact = manifest.images[d.image]?.artifact.sizeBytes;
      return {
        ...d,
        ratioToArtifact:
          artifact === undefined ? null : Number((d.sizeBytes / Math.max(1, artifact)).toFixed(4)),
      };
    });
  } catch (err) {
    if (!(err instanceof ReleaseError)) throw err;
    deltasError = `${err.code}: ${err.message}`;
  }
  return {
    dir,
    verified: false,
    manifest,
    signers,
    manifestJsonMatches,
    deltas,
    ...(deltasError === undefined ? {} : { deltasError }),
  };
}

/** 1536 → "1.5 KiB", 104857600 → "100.0 MiB": sizes as people read them. */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** The report as aligned text lines. */
export function formatInspectReport(r: InspectReport): string {
  const m = r.manifest;
  const lines = [
    `release ${r.dir} (NOT verified — run: abota release verify ${r.dir} --root root.json)`,
    `  product           ${m.product}`,
    `  compatible        ${m.compatible.join(', ')}`,
    `  version           ${m.version}`,
    `  security version  ${m.securityVersion}`,
    `  created           ${m.created}`,
    `  expires           ${m.expires}`,
  ];
  for (const [slot, image] of Object.entries(m.images)) {
    if (image === undefined) continue;
    const a = image.artifact;
    const v = image.verity;
    lines.push(
      `  image ${slot}`,
      `    size            ${image.sizeBytes} bytes (${humanSize(image.sizeBytes)})`,
      `    root hash       ${v.rootHash}`,
      `    verity          ${v.algorithm}, format ${v.hashType}, ${v.dataBlocks} × ${v.dataBlockSize}-byte blocks, hash blocks ${v.hashBlockSize}, superblock ${v.superblock ? 'yes' : 'no'}${v.uuid ? `, uuid ${v.uuid}` : ''}`,
      `    salt            ${v.salt || '(none)'}`,
      `    hash tree       ${v.hashTree.digest} (${v.hashTree.sizeBytes} bytes)`,
      `    artifact        ${a.digest}`,
      `                    ${a.codec}, ${a.sizeBytes} bytes (${humanSize(a.sizeBytes)}), ratio ${(a.uncompressedSizeBytes / Math.max(1, a.sizeBytes)).toFixed(2)}`,
    );
  }
  lines.push(
    `  deltas            ${r.deltas.length}${r.deltas.length === 0 ? '' : ' (deltas.json, unsigned)'}`,
  );
  for (const d of r.deltas) {
    const ratio =
      d.ratioToArtifact === null ? '' : `, ${(100 * d.ratioToArtifact).toFixed(1)} % of the artifact`;
    lines.push(
      `    ${d.image} from ${d.sourceVersion}: ${d.sizeBytes} bytes (${humanSize(d.sizeBytes)})${ratio}`,
      `      source root hash ${d.sourceRootHash} (${d.sourceSizeBytes} bytes)`,
      `      ${d.digest}`,
    );
  }
  if (r.deltasError !== undefined) lines.push(`  WARNING: deltas.json unreadable: ${r.deltasError}`);
  lines.push(`  signatures        ${r.signers.length}`);
  for (const kid of r.signers) lines.push(`    ${kid}`);
  if (!r.manifestJsonMatches)
    lines.push('  WARNING: manifest.json differs from the signed payload (or is missing)');
  return `${lines.join('\n')}\n`;
}
