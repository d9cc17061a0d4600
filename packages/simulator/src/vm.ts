// A simulated A/B VM in one directory: slot files (boot + rootfs, each with a dm-verity hash
// area), a grubenv on a simulated ESP, a kernel command line file, a persistent data directory
// and the agent config pointing at all of them. `boot()` plays GRUB (RAUC's grub.cfg logic over
// the grubenv) and the kernel (dm-verity check of the chosen slot against its signed root hash);
// fault switches let tests break health checks, blocks and processes.
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { appendFile, mkdir, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  Agent,
  type AgentConfigInput,
  type AgentOptions,
  createGrubEnvFile,
  editGrubEnvFile,
  emulateGrubBoot,
  type InstallJournal,
  loadAgentConfig,
  readGrubEnvFile,
  readJournal,
  type SlotName,
} from '@abota/client';
import { verifyTrustRoot } from '@abota/manifest';
import { AgentProcess, type AgentProcessOptions } from './agent-process-handle.js';
import {
  type BootArtifacts,
  loadDeviceTrustRoot,
  readBootArtifacts,
  setBootArtifact,
  syncBootArtifactsFromJournal,
} from './boot-artifacts.js';
import { SimulatorError } from './errors.js';
import { sha256OfFile, writeJsonAtomic } from './files.js';
import { imageSlotFromRelease, verifySlotImage } from './imaging.js';
import { unhealthyMarker, type VmPaths, vmPaths } from './layout.js';

export interface CreateVmOptions {
  /** Directory of the VM; created, must not hold a VM already. */
  dir: string;
  /** The signed trust root (root.json) baked into the VM's root filesystem. */
  trustRootPath: string;
  product: string;
  hardware: string;
  /** Update server base URL for the agent (http://127.0.0.1:port). */
  serverUrl?: string;
  /**
   * Preallocate each rootfs partition file to this size (sparse). Default: empty files — the
   * agent sizes a slot that is a regular file to the image it writes.
   */
  rootfsSlotBytes?: number;
  /** The same for the boot partition files. */
  bootSlotBytes?: number;
  /** Download limit of the agent (slows installs down for crash tests). */
  bandwidthLimitBytesPerSecond?: number;
  /** Poll interval of the agent daemon, seconds (default 1: simulation, not production). */
  pollSeconds?: number;
}

export interface BootFailure {
  slot: SlotName;
  code: string;
  message: string;
}

export interface BootOutcome {
  /** The slot that came up, or 'rescue' when GRUB found none. */
  slot: SlotName | 'rescue';
  /** Slots GRUB chose whose kernel refused them (no trusted root hash, verity failure): each one a failed boot. */
  failedBoots: BootFailure[];
  bootId: string;
  cmdline: string;
  /** The grubenv variables after the boot (what `grub-editenv list` would show). */
  grubenv: Record<string, string>;
}

const GRUB_INITIAL = { ORDER: 'A B', A_OK: '0', A_TRY: '0', B_OK: '0', B_TRY: '0' } as const;

export class SimulatedVm {
  readonly paths: VmPaths;

  private constructor(readonly dir: string) {
    this.paths = vmPaths(dir);
  }

  /** Open a VM created earlier (e.g. by another process). */
  static async open(dir: string): Promise<SimulatedVm> {
    const vm = new SimulatedVm(dir);
    try {
      await stat(vm.paths.agentConfig);
    } catch {
      throw new SimulatorError(
        'ERR_SIM_VM_INVALID',
        `${dir} is not a simulated VM (no ${vm.paths.agentConfig})`,
      );
    }
    return vm;
  }

  /** A VM with both slots empty (never booted): provision one with `provisionSlot`. */
  static async create(o: CreateVmOptions): Promise<SimulatedVm> {
    const vm = new SimulatedVm(o.dir);
    const p = vm.paths;
    await mkdir(o.dir, { recursive: true });
    if ((await readdir(o.dir)).length > 0) {
      throw new SimulatorError(
        'ERR_SIM_VM_EXISTS',
        `${o.dir} is not empty; a VM is created in a new directory`,
      );
    }
    for (const d of [dirname(p.slots.A.rootfs), dirname(p.grubenv), dirname(p.cmdline), p.dataDir, p.simDir])
      await mkdir(d, { recursive: true, mode: 0o700 });
    await mkdir(dirname(p.trustRoot), { recursive: true });
    // Fail early on a root that does not verify: the VM could never accept a release.
    const rootText = await readFile(o.trustRootPath, 'utf8');
    await verifyTrustRoot(rootText);
    await writeFile(p.trustRoot, rootText);
    for (const s of ['A', 'B'] as const) {
      const slot = p.slots[s];
      // Partitions: empty or preallocated (sparse) files; hash areas start empty.
      for (const [path, size] of [
        [slot.rootfs, o.rootfsSlotBytes ?? 0],
        [slot.boot, o.bootSlotBytes ?? 0],
      ] as const) {
        await writeFile(path, '');
        await truncate(path, size);
      }
      await writeFile(slot.rootfsHash, '');
      await writeFile(slot.bootHash, '');
    }
    // `grub-editenv grubenv create`, then the variables RAUC's setup writes.
    await createGrubEnvFile(p.grubenv);
    await editGrubEnvFile(p.grubenv, () =>
      Object.entries(GRUB_INITIAL).map(([name, value]) => ({ op: 'set' as const, name, value })),
    );
    await writeFile(p.cmdline, '');
    await writeFile(p.bootId, 'never-booted\n');
    await writeJsonAtomic(p.agentConfig, vm.agentConfig(o));
    return vm;
  }

  /**
   * Provisioning helper: a VM already on `releaseDir` (a release directory from `abota release
   * build`): slot A imaged from it and verified, B empty, GRUB set to boot A, the agent's factory
   * version set to the release, and booted once.
   */
  static async createFromRelease(
    o: CreateVmOptions & { releaseDir: string; now?: Date },
  ): Promise<SimulatedVm> {
    const vm = await SimulatedVm.create(o);
    const artifact = await vm.provisionSlot('A', o.releaseDir, o.now ?? new Date());
    const config = JSON.parse(await readFile(vm.paths.agentConfig, 'utf8')) as AgentConfigInput;
    config.factory = { version: artifact.version, securityVersion: artifact.securityVersion };
    await writeJsonAtomic(vm.paths.agentConfig, config);
    await vm.boot();
    return vm;
  }

  private agentConfig(o: CreateVmOptions): AgentConfigInput {
    const p = this.paths;
    const slot = (s: SlotName) => ({
      rootfs: { path: p.slots[s].rootfs, hashPath: p.slots[s].rootfsHash },
      boot: { path: p.slots[s].boot, hashPath: p.slots[s].bootHash },
    });
    const poll = o.pollSeconds ?? 1;
    // The health check fails while sim/unhealthy-<booted slot> exists (setHealthy()).
    const healthScript =
      'slot=$(tr " " "\\n" < "$1" | sed -n "s/^abota.slot=//p"); test -n "$slot" && test ! -e "$2/unhealthy-$slot"';
    return {
      ...(o.serverUrl !== undefined ? { server: { url: o.serverUrl } } : {}),
      deviceKeyPath: p.deviceKey,
      trustRootPath: p.trustRoot,
      product: o.product,
      hardware: o.hardware,
      slots: { A: slot('A'), B: slot('B') },
      bootControl: { backend: 'grub', envPath: p.grubenv },
      dataDir: p.dataDir,
      poll: { minSeconds: poll, defaultSeconds: poll, maxSeconds: Math.max(poll, 60), jitterFraction: 0 },
      ...(o.bandwidthLimitBytesPerSecond !== undefined
        ? { bandwidthLimitBytesPerSecond: o.bandwidthLimitBytesPerSecond }
        : {}),
      healthChecks: [
        { command: ['sh', '-c', healthScript, 'health-check', p.cmdline, p.simDir], timeoutSeconds: 10 },
      ],
      rebootCommand: ['touch', p.rebootRequest],
      kernelCmdlinePath: p.cmdline,
    };
  }

  /** Image `slot` from a release directory (verified against the baked root) and make it bootable. */
  async provisionSlot(slot: SlotName, releaseDir: string, now = new Date()) {
    const artifact = await imageSlotFromRelease(
      this.paths,
      slot,
      releaseDir,
      await loadDeviceTrustRoot(this.paths),
      now,
    );
    await setBootArtifact(this.paths, slot, artifact);
    const other: SlotName = slot === 'A' ? 'B' : 'A';
    await editGrubEnvFile(this.paths.grubenv, () => [
      { op: 'set', name: `${slot}_OK`, value: '1' },
      { op: 'set', name: `${slot}_TRY`, value: '0' },
      { op: 'set', name: 'ORDER', value: `${slot} ${other}` },
    ]);
    return artifact;
  }

  // ---- booting ---------------------------------------------------------------------------

  /**
   * Power on (or reset): GRUB selects a slot with RAUC's script and saves its env; the kernel sets
   * up dm-verity for that slot's rootfs with the root hash of its signed boot artifact and checks
   * the whole image (the real kernel checks lazily, on read; a corrupted block would panic or
   * reset it with restart_on_corruption — the same failed boot, found earlier). A refused slot is
   * a failed boot and the machine resets, so GRUB runs again and falls through to the next slot.
   * On success the cmdline file says `abota.slot=X` and the boot id changes.
   */
  async boot(): Promise<BootOutcome> {
    const p = this.paths;
    await rm(p.rebootRequest, { force: true });
    await syncBootArtifactsFromJournal(p);
    const artifacts = await readBootArtifacts(p);
    const failedBoots: BootFailure[] = [];
    let slot: SlotName | 'rescue' = 'rescue';
    // Two slots: at most two refused boots before GRUB's script reaches rescue.
    for (let attempt = 0; attempt < 3; attempt++) {
      const chosen = await emulateGrubBoot(p.grubenv);
      if (chosen === 'rescue') break;
      const failure = await this.kernelRefuses(chosen, artifacts);
      if (failure === undefined) {
        slot = chosen;
        break;
      }
      failedBoots.push(failure);
    }
    const bootId = randomUUID();
    const rootHash = slot === 'rescue' ? undefined : artifacts[slot]?.images.rootfs.rootHash;
    const cmdline =
      slot === 'rescue'
        ? 'BOOT_IMAGE=/rescue/vmlinuz rescue'
        : `BOOT_IMAGE=/vmlinuz ro root=/dev/dm-0 roothash=${rootHash} abota.slot=${slot}`;
    await writeFile(p.cmdline, `${cmdline}\n`);
    await writeFile(p.bootId, `${bootId}\n`);
    const grubenv = Object.fromEntries((await readGrubEnvFile(p.grubenv)).vars);
    await appendFile(
      p.bootLog,
      `${JSON.stringify({ at: new Date().toISOString(), slot, failedBoots, bootId, grubenv })}\n`,
    );
    return { slot, failedBoots, bootId, cmdline, grubenv };
  }

  private async kernelRefuses(slot: SlotName, artifacts: BootArtifacts): Promise<BootFailure | undefined> {
    const artifact = artifacts[slot];
    if (artifact === undefined) {
      return {
        slot,
        code: 'ERR_SIM_NO_BOOT_ARTIFACT',
        message: `slot ${slot} has no boot artifact signed by the VM's trust root`,
      };
    }
    const s = this.paths.slots[slot];
    try {
      await verifySlotImage(s.rootfs, s.rootfsHash, artifact.images.rootfs);
      if (artifact.images.boot) await verifySlotImage(s.boot, s.bootHash, artifact.images.boot);
      return undefined;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      return {
        slot,
        code: typeof code === 'string' ? code : 'ERR_SIM_VERITY',
        message: (e as Error).message,
      };
    }
  }

  /** The slot of the current boot, from the cmdline file. */
  async bootedSlot(): Promise<SlotName | 'rescue'> {
    const m = /(?:^|\s)abota\.slot=([AB])(?:\s|$)/.exec(await readFile(this.paths.cmdline, 'utf8'));
    if (m === null) {
      const text = (await readFile(this.paths.bootId, 'utf8')).trim();
      if (text === 'never-booted')
        throw new SimulatorError('ERR_SIM_NOT_BOOTED', `VM ${this.dir} has not been booted yet`);
      return 'rescue';
    }
    return m[1] as SlotName;
  }

  async bootId(): Promise<string> {
    return (await readFile(this.paths.bootId, 'utf8')).trim();
  }

  /** Whether the agent's reboot command ran since the last boot. */
  async rebootRequested(): Promise<boolean> {
    try {
      await stat(this.paths.rebootRequest);
      return true;
    } catch {
      return false;
    }
  }

  async bootArtifacts(): Promise<BootArtifacts> {
    return readBootArtifacts(this.paths);
  }

  async grubenv(): Promise<Record<string, string>> {
    return Object.fromEntries((await readGrubEnvFile(this.paths.grubenv)).vars);
  }

  async journal(): Promise<InstallJournal | undefined> {
    return readJournal(this.paths.dataDir);
  }

  // ---- the agent ------------------------------------------------------------------------

  /** The agent in this process, with the VM's boot identity (tests and the demo). */
  async openAgent(o: Partial<AgentOptions> = {}): Promise<Agent> {
    const config = await loadAgentConfig(this.paths.agentConfig, {});
    return Agent.open({ config, bootId: () => this.bootId(), ...o });
  }

  /** `abota-agent <args> --config <vm>` as a child process (its own process group). */
  spawnAgent(
    args: readonly string[],
    o: Omit<AgentProcessOptions, 'configPath' | 'bootIdPath'> = {},
  ): AgentProcess {
    return AgentProcess.spawn(args, {
      ...o,
      configPath: this.paths.agentConfig,
      bootIdPath: this.paths.bootId,
    });
  }

  // ---- fault injection ------------------------------------------------------------------

  /** Make the health check of `slot` fail (false) or pass again (true). */
  async setHealthy(slot: SlotName, healthy: boolean): Promise<void> {
    const marker = unhealthyMarker(this.paths, slot);
    if (healthy) await rm(marker, { force: true });
    else await writeFile(marker, 'the simulated system of this slot does not come up healthy\n');
  }

  /** Flip every bit of one byte of a slot's rootfs (or boot) data block: a bad sector or tampering. */
  async corruptBlock(
    slot: SlotName,
    blockIndex: number,
    o: { image?: 'rootfs' | 'boot'; byteInBlock?: number } = {},
  ) {
    const path = o.image === 'boot' ? this.paths.slots[slot].boot : this.paths.slots[slot].rootfs;
    const offset = blockIndex * 4096 + (o.byteInBlock ?? 0);
    const fh = await open(path, constants.O_RDWR);
    try {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, offset);
      b[0] = b[0]! ^ 0xff;
      await fh.write(b, 0, 1, offset);
    } finally {
      await fh.close();
    }
  }

  /** sha256 of every slot file (data and hash areas), to prove a slot was not touched. */
  async slotDigests(slot: SlotName): Promise<Record<string, string>> {
    const s = this.paths.slots[slot];
    const out: Record<string, string> = {};
    for (const [name, path] of Object.entries(s)) out[name] = await sha256OfFile(path);
    return out;
  }

  /** Lines of sim/boot-log.jsonl: every boot of this VM. */
  async bootLog(): Promise<Array<{ at: string; slot: SlotName | 'rescue'; failedBoots: BootFailure[] }>> {
    try {
      return (await readFile(this.paths.bootLog, 'utf8'))
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l));
    } catch {
      return [];
    }
  }
}
