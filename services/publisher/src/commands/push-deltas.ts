// The deltas of a release directory as `release push` sees them (docs/CONTRACTS.md "Deltas end to
// end"): `deltas.json` beside manifest.json lists delta blobs under blobs/sha256/. Push uploads
// them like the manifest's blobs and, once the release is registered, registers each with
// `POST /v1/admin/releases/{id}/deltas`. Only the fields push needs are read here, each checked;
// `abota release verify` checks the payloads themselves (the server re-checks their headers).
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AdminApiError, type AdminClient } from '../admin-client.js';
import { ReleaseError } from '../release/errors.js';
import { parseJsonFile, readSmallFile } from '../release/release-dir.js';

export const DELTAS_JSON = 'deltas.json';
/** deltas.json is a short list; anything larger is not one. */
const MAX_DELTAS_JSON_BYTES = 1024 * 1024;
const MAX_DELTAS = 256;

export interface ReleaseDelta {
  image: string;
  sourceVersion: string;
  sourceRootHash: string;
  digest: string;
  sizeBytes: number;
}

export interface PushDelta extends ReleaseDelta {
  /** The server's id of the registration. */
  id: string;
  /** false when the server had this exact delta registered already (a re-run). */
  created: boolean;
}

function invalid(path: string, where: string, expected: string): ReleaseError {
  return new ReleaseError('ERR_RELEASE_DIR_INVALID', `${path}: ${where} must be ${expected}`);
}

/** The deltas listed in `dir`/deltas.json; none when the file does not exist. */
export async function readReleaseDeltas(dir: string): Promise<ReleaseDelta[]> {
  const path = join(dir, DELTAS_JSON);
  const exists = await stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
  if (!exists) return [];
  const value = parseJsonFile(
    await readSmallFile(path, MAX_DELTAS_JSON_BYTES, 'delta list'),
    path,
    'delta list',
  );
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(path, 'the document', 'an object');
  const doc = value as Record<string, unknown>;
  if (doc['schemaVersion'] !== 1) throw invalid(path, 'schemaVersion', '1');
  const list = doc['deltas'];
  if (!Array.isArray(list) || list.length > MAX_DELTAS)
    throw invalid(path, 'deltas', `an array of at most ${MAX_DELTAS} entries`);
  const seen = new Set<string>();
  return list.map((entry: unknown, i): ReleaseDelta => {
    const at = `deltas[${i}]`;
    if (typeof entry !== 'object' || entry === null) throw invalid(path, at, 'an object');
    const e = entry as Record<string, unknown>;
    const text = (name: string, pattern: RegExp, expected: string): string => {
      const v = e[name];
      if (typeof v !== 'string' || !pattern.test(v)) throw invalid(path, `${at}.${name}`, expected);
      return v;
    };
    const image = text('image', /^[a-z][a-z0-9-]{0,31}$/, 'an image name such as "rootfs"');
    const sourceVersion = text('sourceVersion', /^\S{1,128}$/, 'a version (1..128 characters)');
    const sourceRootHash = text('sourceRootHash', /^[0-9a-f]{16,128}$/, 'a lower-case hex root hash');
    const digest = text('digest', /^sha256:[0-9a-f]{64}$/, '"sha256:" and 64 lower-case hex characters');
    const sizeBytes = e['sizeBytes'];
    if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes < 1)
      throw invalid(path, `${at}.sizeBytes`, 'a positive integer');
    // CONTRACTS.md: one entry per (image, sourceRootHash).
    const identity = `${image}/${sourceRootHash}`;
    if (seen.has(identity))
      throw invalid(path, at, `the only entry for image ${image} from ${sourceRootHash}`);
    seen.add(identity);
    return { image, sourceVersion, sourceRootHash, digest, sizeBytes };
  });
}

/**
 * Registers each delta for the release (after the manifest: the server checks the delta against
 * the release's images). 201 and 200 ("already registered") are both success.
 */
export async function registerReleaseDeltas(
  client: AdminClient,
  releaseId: string,
  deltas: readonly ReleaseDelta[],
  signal: AbortSignal | undefined,
): Promise<PushDelta[]> {
  const registered: PushDelta[] = [];
  for (const delta of deltas) {
    try {
      const { id, created } = await client.registerDelta(
        releaseId,
        {
          image: delta.image,
          sourceVersion: delta.sourceVersion,
          sourceRootHash: delta.sourceRootHash,
          digest: delta.digest,
          sizeBytes: delta.sizeBytes,
        },
        signal,
      );
      registered.push({ ...delta, id, created });
    } catch (err) {
      if (err instanceof AdminApiError && err.code === 'ERR_NOT_FOUND' && /no route/.test(err.message)) {
        throw new AdminApiError(
          'ERR_DELTAS_UNSUPPORTED',
          `the release was pushed (id ${releaseId}) but ${client.serverUrl.origin} has no delta registration (POST /v1/admin/releases/{id}/deltas); upgrade the server, then re-run the push to register the ${deltas.length} delta(s)`,
          { ...(err.status === undefined ? {} : { status: err.status }), cause: err },
        );
      }
      throw err;
    }
  }
  return registered;
}
