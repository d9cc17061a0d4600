// The checks the server makes of what publishers upload — a release's manifest.jws against its
// product's trust root, a new product's root.json, a trust-root rotation — with the jose engine
// of @abota/manifest (`@abota/manifest/jose`): jose computes and checks the Ed25519 signatures,
// @abota/manifest keeps the rules (header shape, typ, kids, thresholds, schema, expiry) that the
// device applies with its own WebCrypto engine. Uploads are rare (one check per push or
// rotation), so the engine's cost here is nothing next to the request; the device's poll token,
// checked on every poll, is verified with node:crypto instead (auth/device-jwt.ts).
import {
  type GeneralJws,
  type SignedRoot,
  type TrustRoot,
  type VerifiedManifest,
  verifyManifest,
  verifyRootUpdate,
  verifyTrustRoot,
} from '@abota/manifest';
import { joseEngine } from '@abota/manifest/jose';

const options = { engine: joseEngine } as const;

/** A root.json the server stores or stored: signed by a threshold of its own root keys. */
export function checkTrustRoot(signed: SignedRoot | string): Promise<TrustRoot> {
  return verifyTrustRoot(signed, options);
}

/** A rotation: version N+1 signed by a threshold of version N's root keys and of its own. */
export function checkRootUpdate(current: TrustRoot, next: SignedRoot | string): Promise<TrustRoot> {
  return verifyRootUpdate(current, next, options);
}

/** A pushed manifest.jws: the release role's threshold of the product's root, schema, expiry. */
export function checkManifest(
  manifestJws: string | GeneralJws,
  root: TrustRoot,
  now: Date,
): Promise<VerifiedManifest> {
  return verifyManifest(manifestJws, root, now, options);
}
