// The device's trust root: the baked-in root (config.trustRootPath) walked forward through the
// rotations adopted so far (trust-roots.json in the data directory), and the adoption of the
// roots a release ships (TUF §5.3, docs/trust-model.md). Expiry is not checked here: the
// newest root, after the release's roots are walked, is checked by verifyManifest (TUF §5.3.10),
// so a device whose root expired can still take the rotation that root signed.
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { type TrustRoot, verifyTrustRoot, walkRootChain } from '@abota/manifest';
import type { AgentLog } from './agent-log.js';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';
import { ClientError } from './errors.js';

export const TRUST_CHAIN_FILE = 'trust-roots.json';

export class TrustRootStore {
  constructor(private readonly o: { trustRootPath: string; dataDir: string; log: AgentLog }) {}

  private get chainPath(): string {
    return join(this.o.dataDir, TRUST_CHAIN_FILE);
  }

  private async adoptedChain(): Promise<string[]> {
    return ((await readJsonFile(this.chainPath).catch(() => undefined)) ?? []) as string[];
  }

  /** The baked-in root walked forward through adopted rotations (expired or not). */
  async current(): Promise<TrustRoot> {
    let baked: string;
    try {
      baked = await readFile(this.o.trustRootPath, 'utf8');
    } catch (e) {
      throw new ClientError(
        'ERR_TRUST_ROOT',
        `trust root ${this.o.trustRootPath} cannot be read: ${(e as Error).message}`,
      );
    }
    const chain = await this.adoptedChain();
    try {
      return await walkRootChain(
        await verifyTrustRoot(baked),
        chain.map((c) => JSON.parse(c)),
      );
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new ClientError(
        'ERR_TRUST_ROOT',
        `trust root ${this.o.trustRootPath} does not verify (${String(code)}: ${(e as Error).message})`,
        {
          cause: e,
        },
      );
    }
  }

  /**
   * A release may ship the roots of a rotation (TUF §5.3): adopt the newest one only if the
   * chain verifies from the device's current root; otherwise keep the current root (the
   * release then has to verify under it). Every root of a verified chain is kept, even if the
   * newest has expired (TUF §5.3.8): the release is then refused by its expiry check.
   */
  async adopt(texts: readonly string[], current: TrustRoot): Promise<TrustRoot> {
    if (texts.length === 0) return current;
    try {
      const next = await walkRootChain(
        current,
        texts.map((t) => JSON.parse(t)),
      );
      if (next.version > current.version) {
        const chain = await this.adoptedChain();
        await writeFileAtomic(
          this.chainPath,
          JSON.stringify([...chain, ...texts.filter((t) => !chain.includes(t))]),
        );
        this.o.log({ level: 'info', message: `adopted trust root v${next.version}` });
      }
      return next;
    } catch (e) {
      this.o.log({
        level: 'warn',
        message: `trust roots shipped with the release not adopted: ${(e as Error).message}`,
      });
      return current;
    }
  }
}
