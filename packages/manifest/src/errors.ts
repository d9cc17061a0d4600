// The one error class of @abota/manifest. Every failure a verifier or signer can hit has its own
// stable code so the device agent, the CLI and the server can map it (exit status, HTTP status,
// report `errorCode`) without parsing messages.

/** Every code a ManifestError can carry; stable across releases (callers switch on them). */
export type ManifestErrorCode =
  // General JWS structure: size limit, JSON shape, base64url, protected header (alg, kid, typ).
  | 'ERR_JWS_MALFORMED'
  // A signature by a key of the role that does not verify (tampered payload or header).
  | 'ERR_SIGNATURE_INVALID'
  // Fewer distinct valid signatures by keys of the role than its threshold.
  | 'ERR_THRESHOLD_NOT_MET'
  // The signed manifest payload is not canonical JSON or fails the schema (message has the field path).
  | 'ERR_MANIFEST_INVALID'
  // The release manifest's `expires` is not after `now`.
  | 'ERR_EXPIRED'
  // The trust root's `expires` is not after `now`.
  | 'ERR_ROOT_EXPIRED'
  // The signed root payload is not canonical JSON, fails the schema, or a kid is not its key's thumbprint.
  | 'ERR_ROOT_INVALID'
  // A root in a rotation chain is not exactly version N+1 of the root before it.
  | 'ERR_ROOT_VERSION_GAP'
  | 'ERR_WRONG_PRODUCT'
  | 'ERR_INCOMPATIBLE_HARDWARE'
  | 'ERR_SECURITY_VERSION_TOO_LOW'
  | 'ERR_SAME_VERSION'
  | 'ERR_DOWNGRADE_NOT_ALLOWED'
  // A version string (manifest or device facts) that is not strict semver 2.0.0.
  | 'ERR_VERSION_INVALID'
  // A JWK that is not an Ed25519 key of the expected kind (public / private), or whose kid lies.
  | 'ERR_KEY_INVALID'
  // Arguments a caller passed in are inconsistent (e.g. signing with no key, threshold > keys).
  | 'ERR_INVALID_ARGUMENT';

export class ManifestError extends Error {
  override readonly name = 'ManifestError';
  readonly code: ManifestErrorCode;

  constructor(code: ManifestErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True when `err` is a ManifestError, optionally with the given code. */
export function isManifestError(err: unknown, code?: ManifestErrorCode): err is ManifestError {
  return err instanceof ManifestError && (code === undefined || err.code === code);
}
