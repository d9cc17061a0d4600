// The root hashes the simulated kernel trusts, per slot. On a real device the dm-verity root hash
// of a slot reaches the kernel inside the slot's signed boot artifact (UKI / signed kernel +
// cmdline, docs/formats.md §1.7): firmware checks that signature, so an attacker who can write the
// slot cannot pick the root hash. The simulator has no firmware, so it keeps this record instead
// and writes an entry ONLY from a release manifest whose signature verified against the VM's
// baked trust root (walked through the rotations the agent adopted) — at provisioning, or at boot from the manifest the agent journalled for the
// slot it installed. Anything else (no entry, a manifest that does not verify) = no bootable
// kernel for that slot.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readJournal, type SlotName, TRUST_CHAIN_FILE } from '@abota/client';
import {
  type ReleaseManifest,
  type SignedRoot,
  type TrustRoot,
  verifyManifest,
  verifyTrustRoot,
  walkRootChain,
} from '@abota/manifest';
import { writeJsonAtomic } from './files.js';
import type { VmPaths } from './layout.js';

export interface TrustedImage {
  rootHash: string;
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  salt: string;
  hashType: 0 | 1;
}

export interface BootArtifact {
  version: string;
  securityVersion: number;
  /** sha256 of the manifest JWS text the entry was taken from. */
  manifestSha256: string;
  images: { rootfs: TrustedImage; boot?: TrustedImage };
  /** How the slot got this release. */
  writtenBy: 'provisioning' | 'agent';
}

export type BootArtifacts = Partial<Record<SlotName, BootArtifact>>;

export async function readBootArtifacts(paths: VmPaths): Promise<BootArtifacts> {
  try {
    return JSON.parse(await readFile(paths.bootArtifacts, 'utf8')) as BootArtifacts;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
}

/**
 * The root the simulated firmware trusts: the baked one walked forward through the rotations the
 * agent adopted (its TRUST_CHAIN_FILE). Each step is verified from the baked root, so the file
 * cannot add trust; without it a device could never boot a release signed after a rotation (on a
 * real device the boot artifact's signer is the firmware's own concern).
 */
export async function loadDeviceTrustRoot(paths: VmPaths): Promise<TrustRoot> {
  const baked = await verifyTrustRoot(await readFile(paths.trustRoot, 'utf8'));
  const adopted = await readFile(join(paths.dataDir, TRUST_CHAIN_FILE), 'utf8').then(
    (t) => (JSON.parse(t) as string[]).map((r) => JSON.parse(r) as SignedRoot),
    () => [] as SignedRoot[],
  );
  return walkRootChain(baked, adopted).catch(() => baked);
}

function trustedImage(m: ReleaseManifest['images']['rootfs']): TrustedImage {
  const v = m.verity;
  return {
    rootHash: v.rootHash,
    algorithm: v.algorithm,
    dataBlockSize: v.dataBlockSize,
    hashBlockSize: v.hashBlockSize,
    dataBlocks: v.dataBlocks,
    salt: v.salt,
    hashType: v.hashType,
  };
}

/**
 * The boot artifact of a release whose signature verifies against `trustRoot` as of `at` (the
 * moment it was installed: a boot must not start failing because the release expired later).
 * Throws the manifest's error when it does not verify.
 */
export async function bootArtifactFromSignedManifest(
  manifestJws: string,
  trustRoot: TrustRoot,
  at: Date,
  writtenBy: BootArtifact['writtenBy'],
): Promise<BootArtifact> {
  const { manifest } = await verifyManifest(manifestJws, trustRoot, at);
  return bootArtifactOf(manifest, manifestJws, writtenBy);
}

/** The record of a manifest the caller has just verified (verifyManifest / checkRelease). */
export function bootArtifactOf(
  manifest: ReleaseManifest,
  manifestJws: string,
  writtenBy: BootArtifact['writtenBy'],
): BootArtifact {
  const boot = manifest.images.boot;
  return {
    version: manifest.version,
    securityVersion: manifest.securityVersion,
    manifestSha256: createHash('sha256').update(manifestJws).digest('hex'),
    images: { rootfs: trustedImage(manifest.images.rootfs), ...(boot ? { boot: trustedImage(boot) } : {}) },
    writtenBy,
  };
}

export async function setBootArtifact(
  paths: VmPaths,
  slot: SlotName,
  artifact: BootArtifact | undefined,
): Promise<void> {
  const all = await readBootArtifacts(paths);
  if (artifact === undefined) delete all[slot];
  else all[slot] = artifact;
  await writeJsonAtomic(paths.bootArtifacts, all);
}

/**
 * Bring the record up to date with what the agent wrote since the last boot: once the agent has
 * started writing a slot (journal phase past `verified`), that slot's old boot artifact is gone
 * and the journalled manifest — if its signature verifies — is what the slot now carries.
 * Returns the slot whose entry changed, if any.
 */
export async function syncBootArtifactsFromJournal(paths: VmPaths): Promise<SlotName | undefined> {
  const j = await readJournal(paths.dataDir);
  if (j === undefined || j.phase === 'verified') return undefined;
  const all = await readBootArtifacts(paths);
  const digest = createHash('sha256').update(j.manifestJws).digest('hex');
  if (all[j.targetSlot]?.manifestSha256 === digest) return undefined;
  let artifact: BootArtifact | undefined;
  try {
    artifact = await bootArtifactFromSignedManifest(
      j.manifestJws,
      await loadDeviceTrustRoot(paths),
      new Date(j.startedAt),
      'agent',
    );
  } catch {
    artifact = undefined; // not signed by our root: the firmware would refuse this kernel
  }
  await setBootArtifact(paths, j.targetSlot, artifact);
  return j.targetSlot;
}
