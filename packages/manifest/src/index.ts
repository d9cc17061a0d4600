// @abota/manifest — release manifest schema, trust root, General JWS signing and verification,
// and the device's acceptance policy. Runs in any JavaScript runtime (no node: imports).
export { canonicalJson, canonicalJsonBytes } from './canonical-json.js';
export { isManifestError, ManifestError, type ManifestErrorCode } from './errors.js';
export {
  addSignatures,
  type FlattenedJws,
  type GeneralJws,
  GeneralJwsSchema,
  JWS_TYPE_RELEASE,
  JWS_TYPE_ROOT,
  type JwsEngine,
  type JwsOptions,
  type JwsType,
  MAX_JWS_BYTES,
  MAX_SIGNATURES,
  parseGeneralJws,
  webCryptoEngine,
} from './jws.js';
export {
  exportPrivateJwk,
  exportPublicJwk,
  generateSigningKey,
  importSigningKey,
  jwkThumbprint,
  KidSchema,
  type PrivateJwk,
  type PrivateJwkFile,
  PrivateJwkSchema,
  type PublicJwk,
  PublicJwkSchema,
  type SigningKey,
} from './keys.js';
export {
  type ArtifactManifest,
  ArtifactSchema,
  DigestSchema,
  type ImageManifest,
  ImageSchema,
  MAX_COMPATIBLE,
  MAX_SECURITY_VERSION,
  MAX_SIZE_BYTES,
  manifestJsonSchema,
  ROOT_HASH_HEX_LENGTH,
  type ReleaseManifest,
  ReleaseManifestSchema,
  type SlotClass,
  type VerityManifest,
  VeritySchema,
} from './manifest-schema.js';
export { checkRelease, type DeviceFacts, type ReleaseDecision } from './policy.js';
export { parseManifest, signManifest, type VerifiedManifest, verifyManifest } from './release.js';
export {
  assertRootUnexpired,
  createTrustRoot,
  formatTimestamp,
  MAX_ROOT_KEYS,
  parseTrustRoot,
  ROLE_NAMES,
  type Role,
  type RoleName,
  type SignedRoot,
  signTrustRoot,
  type TrustRoot,
  type TrustRootInit,
  TrustRootSchema,
  verifyRootChain,
  verifyRootUpdate,
  verifyTrustRoot,
  walkRootChain,
} from './root.js';
export { compareSemver, isSemver, parseSemver, type SemVer } from './semver.js';
