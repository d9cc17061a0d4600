// The device's acceptance decision for an offered release (docs/trust-model.md "What the device
// checks, in order"): pure over values — the caller passes the manifest JWS, its verified trust
// root, the facts of the running system and the clock. Nothing may be written to a slot before this
// returns.
import * as v from 'valibot';
import { ManifestError } from './errors.js';
import type { GeneralJws } from './jws.js';
import { describeIssues, intSchema, MAX_SECURITY_VERSION, type ReleaseManifest } from './manifest-schema.js';
import { verifyManifest } from './release.js';
import type { TrustRoot } from './root.js';
import { compareSemver, parseSemver } from './semver.js';

export interface DeviceFacts {
  /** Product id the device runs (e.g. "eflow-vm"). */
  product: string;
  /** The device's hardware id; must be one of the manifest's `compatible`. */
  hardware: string;
  /** Semver of the running release. */
  currentVersion: string;
  /** Lowest securityVersion the device still accepts (its anti-rollback floor). */
  securityVersionFloor: number;
  /**
   * A rollout explicitly allows installing an older version (a rollback rollout's offer, or
   * `install --allow-downgrade`). It permits an older *version* only: the securityVersion floor
   * is checked first and nothing overrides it (docs/trust-model.md).
   */
  allowDowngrade?: boolean;
}

// Validated because a NaN floor or a non-string hardware id would make a comparison silently
// pass (fail open); the caller's facts are as much an input as the manifest.
const DeviceFactsSchema = v.strictObject({
  product: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
  hardware: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
  currentVersion: v.pipe(v.string(), v.maxLength(256)),
  securityVersionFloor: intSchema(0, MAX_SECURITY_VERSION),
  allowDowngrade: v.optional(v.boolean()),
});

export interface ReleaseDecision {
  manifest: ReleaseManifest;
  /** Distinct release-role kids whose signatures verified. */
  signedBy: string[];
  /** Kids of ignored signatures by keys outside the release role (for the device's report). */
  unknownKids: string[];
}

/**
 * Accept or refuse an offered release. Checks, in this order, each with its own code:
 * ERR_JWS_MALFORMED, ERR_SIGNATURE_INVALID, ERR_THRESHOLD_NOT_MET, ERR_MANIFEST_INVALID,
 * ERR_ROOT_EXPIRED, ERR_EXPIRED, ERR_WRONG_PRODUCT, ERR_INCOMPATIBLE_HARDWARE,
 * ERR_SECURITY_VERSION_TOO_LOW, ERR_SAME_VERSION, ERR_DOWNGRADE_NOT_ALLOWED.
 */
export async function checkRelease(
  manifestJws: string | Uint8Array | GeneralJws,
  trustRoot: TrustRoot,
  deviceFacts: DeviceFacts,
  now: Date,
): Promise<ReleaseDecision> {
  const facts = v.safeParse(DeviceFactsSchema, deviceFacts);
  if (!facts.success) {
    throw new ManifestError('ERR_INVALID_ARGUMENT', `device facts: ${describeIssues(facts.issues)}`);
  }
  const current = parseSemver(deviceFacts.currentVersion);
  const { manifest, signedBy, unknownKids } = await verifyManifest(manifestJws, trustRoot, now);
  if (manifest.product !== deviceFacts.product) {
    throw new ManifestError(
      'ERR_WRONG_PRODUCT',
      `release ${manifest.version} is for product ${manifest.product}; this device runs ${deviceFacts.product}`,
    );
  }
  if (!manifest.compatible.includes(deviceFacts.hardware)) {
    throw new ManifestError(
      'ERR_INCOMPATIBLE_HARDWARE',
      `release ${manifest.version} supports hardware [${manifest.compatible.join(', ')}]; this device is ${deviceFacts.hardware}`,
    );
  }
  if (manifest.securityVersion < deviceFacts.securityVersionFloor) {
    throw new ManifestError(
      'ERR_SECURITY_VERSION_TOO_LOW',
      `release ${manifest.version} has securityVersion ${manifest.securityVersion}, below this device's floor ${deviceFacts.securityVersionFloor}`,
    );
  }
  const order = compareSemver(manifest.version, current);
  if (order === 0) {
    throw new ManifestError(
      'ERR_SAME_VERSION',
      `release ${manifest.version} has the same precedence as the running version ${deviceFacts.currentVersion}`,
    );
  }
  if (order < 0 && deviceFacts.allowDowngrade !== true) {
    throw new ManifestError(
      'ERR_DOWNGRADE_NOT_ALLOWED',
      `release ${manifest.version} is older than the running ${deviceFacts.currentVersion} and the offer does not carry a rollout's permission to go back (allowDowngrade)`,
    );
  }
  return { manifest, signedBy, unknownKids };
}
