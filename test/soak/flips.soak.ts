// 1,000 seeded random bit flips across a release's inputs (issue 16, "at scale"): the signed
// manifest, the full artifacts, the dm-verity hash trees and the deltas. Each flip is applied to a
// working copy of one published release, the VM is reset to the same state (booted on 1.0.0,
// slot B empty), and the agent installs the copy from its directory (the same verification as an
// online offer, without the network's cost). Every flipped input must be refused with a specific
// error code before a flipped byte is accepted into a slot: the active slot stays byte-identical
// and the device boots it. The few flips that cannot change what is accepted (a refused delta the
// agent replaces by the full artifact, a bit base64url ignores) must install exactly the bytes of
// the intact release, verified at boot.
import { cp, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentLogEvent } from '@abota/client';
import { SimulatedVm } from '@abota/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet, HARDWARE, PRODUCT, runAbota } from '../fixtures/fleet.js';
import { formatTally, pick, printSummary, replay, soakCount, soakRandom, tally } from './soak.js';

const FLIPS = soakCount('ABOTA_SOAK_FLIPS', 1000);

type Category = 'manifest' | 'artifact' | 'hash-tree' | 'delta';
const CATEGORIES: readonly Category[] = ['manifest', 'artifact', 'hash-tree', 'delta'];

interface Target {
  category: Category;
  /** Which release copy installs it: the delta copy offers deltas.json, the full copy none. */
  variant: 'full' | 'delta';
  file: string;
  sizeBytes: number;
  label: string;
}

let fleet: Fleet;
let work: string;
let vm: SimulatedVm;
let snapshot: string;
const copies = { full: '', delta: '' };
let targets: Target[];
let activeDigests: Record<string, string>;
let intactB: Record<string, string>;

async function restoreVm(): Promise<void> {
  await rm(vm.dir, { recursive: true, force: true });
  await cp(snapshot, vm.dir, { recursive: true });
}

async function flipBit(path: string, bit: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, Math.floor(bit / 8));
    b[0] = b[0]! ^ (1 << (bit % 8));
    await fh.write(b, 0, 1, Math.floor(bit / 8));
  } finally {
    await fh.close();
  }
}

/** Install `dir` with the in-process agent; the error code (or 'installed') and its log codes. */
async function install(dir: string): Promise<{ outcome: string; message: string; logCodes: string[] }> {
  const logCodes: string[] = [];
  const agent = await vm.openAgent({
    log: (e: AgentLogEvent) => {
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string') logCodes.push(code);
    },
  });
  try {
    await agent.installFromDirectory(dir);
    return { outcome: 'installed', message: '', logCodes };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return { outcome: typeof code === 'string' ? code : 'NO_CODE', message: (e as Error).message, logCodes };
  }
}

beforeAll(async () => {
  fleet = await createFleet();
  work = fleet.work;
  await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
  const v2 = await fleet.buildRelease({ version: '2.0.0', securityVersion: 1 });
  await runAbota(['release', 'add-delta', v2, '--from', fleet.releases.get('1.0.0')!, '--json']);
  copies.delta = join(work, 'flip-delta');
  copies.full = join(work, 'flip-full');
  await cp(v2, copies.delta, { recursive: true });
  await cp(v2, copies.full, { recursive: true });
  await rm(join(copies.full, 'deltas.json'));

  // What each blob is, from the signed manifest and deltas.json.
  const manifest = JSON.parse(await readFile(join(v2, 'manifest.json'), 'utf8'));
  const deltas = JSON.parse(await readFile(join(v2, 'deltas.json'), 'utf8')).deltas as {
    image: string;
    digest: string;
  }[];
  const blob = (variant: 'full' | 'delta', digest: string) =>
    join(copies[variant], 'blobs', 'sha256', digest.slice('sha256:'.length));
  const found: Omit<Target, 'sizeBytes'>[] = [
    { category: 'manifest', variant: 'full', file: join(copies.full, 'manifest.jws'), label: 'manifest.jws' },
    {
      category: 'manifest',
      variant: 'delta',
      file: join(copies.delta, 'manifest.jws'),
      label: 'manifest.jws',
    },
  ];
  for (const [image, img] of Object.entries(manifest.images) as [
    string,
    { artifact: { digest: string }; verity: { hashTree: { digest: string } } },
  ][]) {
    found.push({
      category: 'artifact',
      variant: 'full',
      file: blob('full', img.artifact.digest),
      label: `${image} artifact`,
    });
    for (const variant of ['full', 'delta'] as const)
      found.push({
        category: 'hash-tree',
        variant,
        file: blob(variant, img.verity.hashTree.digest),
        label: `${image} hash tree`,
      });
  }
  for (const d of deltas)
    found.push({
      category: 'delta',
      variant: 'delta',
      file: blob('delta', d.digest),
      label: `${d.image} delta`,
    });
  targets = await Promise.all(found.map(async (t) => ({ ...t, sizeBytes: (await stat(t.file)).size })));
  expect(new Set(targets.map((t) => t.category))).toEqual(new Set(CATEGORIES));

  vm = await SimulatedVm.createFromRelease({
    dir: join(work, 'vms', 'flips'),
    trustRootPath: fleet.rootPath,
    product: PRODUCT,
    hardware: HARDWARE,
    releaseDir: fleet.releases.get('1.0.0')!,
  });
  // Settle the first boot (the agent confirms the running slot), as the daemon does first.
  await (await vm.openAgent()).afterBoot();
  snapshot = join(work, 'vm-snapshot');
  await cp(vm.dir, snapshot, { recursive: true });
  activeDigests = await vm.slotDigests('A');

  // The bytes an intact install puts in slot B (by delta and in full: the same).
  const ok = await install(copies.delta);
  expect(ok.outcome).toBe('installed');
  intactB = await vm.slotDigests('B');
  await restoreVm();
  expect((await install(copies.full)).outcome).toBe('installed');
  expect(await vm.slotDigests('B')).toEqual(intactB);
}, 300_000);

afterAll(async () => {
  await fleet?.close();
});

describe('bit flips in a release', () => {
  it(`refuses each of ${FLIPS} seeded random bit flips before a flipped byte is accepted; the device boots a verified slot`, async () => {
    const started = performance.now();
    const random = soakRandom(2);
    const byOutcome = new Map<string, number>();
    const byCategory = new Map<string, number>();
    const log: string[] = [];
    let refused = 0;
    let harmless = 0;
    for (let i = 0; i < FLIPS; i++) {
      const category = CATEGORIES[pick(random, CATEGORIES.length)]!;
      const among = targets.filter((t) => t.category === category);
      const t = among[pick(random, among.length)]!;
      const bit = pick(random, t.sizeBytes * 8);
      const what = `flip ${i}: ${t.label} (${t.variant}) bit ${bit} of ${t.sizeBytes * 8}`;
      await restoreVm();
      await flipBit(t.file, bit);
      let r: Awaited<ReturnType<typeof install>>;
      try {
        r = await install(copies[t.variant]);
      } finally {
        await flipBit(t.file, bit);
      }
      log.push(`${what}: ${r.outcome}${r.logCodes.length > 0 ? ` (${r.logCodes.join(' ')})` : ''}`);
      tally(byCategory, category);
      // The active slot is never written, whatever the flip.
      expect(await vm.slotDigests('A'), `${what}\n${replay(log)}`).toEqual(activeDigests);
      if (r.outcome !== 'installed') {
        refused++;
        tally(byOutcome, r.outcome);
        expect(r.outcome, `${what}: no specific code (${r.message})\n${replay(log)}`).toMatch(
          /^ERR_[A-Z0-9_]+$/,
        );
        expect(String((await vm.journal())?.phase), `${what}\n${replay(log)}`).not.toMatch(
          /^(boot-pending|committed)$/,
        );
        const boot = await vm.boot();
        expect(boot, `${what}\n${replay(log)}`).toMatchObject({ slot: 'A', failedBoots: [] });
      } else {
        // Accepted: the flip changed nothing that is installed — slot B holds the intact
        // release's bytes, and the trial boot verifies it.
        harmless++;
        tally(
          byOutcome,
          `installed intact${r.logCodes.length > 0 ? ` after ${[...new Set(r.logCodes)].join('+')}` : ''}`,
        );
        expect(await vm.slotDigests('B'), `${what}: a flipped byte was installed\n${replay(log)}`).toEqual(
          intactB,
        );
        const boot = await vm.boot();
        expect(boot, `${what}\n${replay(log)}`).toMatchObject({ slot: 'B', failedBoots: [] });
      }
    }
    printSummary('bit flips', started, [
      `${FLIPS} flips (${formatTally(byCategory)}) over ${targets.length} files`,
      `${refused} refused, ${harmless} installed the intact release`,
      `outcomes: ${formatTally(byOutcome)}`,
    ]);
  });
});
