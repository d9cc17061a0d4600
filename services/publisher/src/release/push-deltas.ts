// The deltas of a release directory as `release push` sees them (docs/CONTRACTS.md "Deltas end to
// end"): `deltas.json` beside manifest.json lists delta blobs under blobs/sha256/. Push uploads
// them like the manifest's blobs and, once the release is registered, registers each with
// `POST /v1/admin/releases/{id}/deltas`. The file is parsed strictly by release/deltas-json.ts;
// `abota release verify` checks the payloads themselves (the server re-checks their headers).
import type { SlotClass } from './build.js';
import type { AdminConnection } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { registerDelta } from './push-calls.js';
import { readDeltasFile } from './deltas-json.js';

export interface ReleaseDelta {
  image: SlotClass;
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

/** The deltas listed in `dir`/deltas.json (parsed by release/deltas-json.ts); none without the file. */
export async function readReleaseDeltas(dir: string): Promise<ReleaseDelta[]> {
  const file = await readDeltasFile(dir);
  return (file?.deltas ?? []).map(({ image, sourceVersion, sourceRootHash, digest, sizeBytes }) => ({
    image,
    sourceVersion,
    sourceRootHash,
    digest,
    sizeBytes,
  }));
}

/**
 * Registers each delta for the release (after the manifest: the server checks the delta against
 * the release's images). 201 and 200 ("already registered") are both success.
 */
export async function registerReleaseDeltas(
  client: AdminConnection,
  releaseId: string,
  deltas: readonly ReleaseDelta[],
  signal: AbortSignal | undefined,
): Promise<PushDelta[]> {
  const registered: PushDelta[] = [];
  for (const delta of deltas) {
    try {
      const { id, created } = await registerDelta(
        client,
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
