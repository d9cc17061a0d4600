// What the update scenarios and the demo share: a real abota-server on the host, the product's
// keys, releases of the full guest (guest/), factory disks provisioned with a registration
// token, rollouts to one device, and waits on what the server reports.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { selfSignedCertificate } from '@abota/testkit';
import { abota, type Kernel, vmKernel } from './fixture.js';
import { diskSizeFlags, GUEST_LAYOUT, GUEST_LAYOUT_UEFI } from './disk-layout.js';
import { PROVISIONING_TOKEN_PATH } from './guest/init-scripts.js';
import { makeSshKey, type SshKey } from './guest-ssh.js';
import { type DeviceRow, type HostServer, startHostServer } from './host-server.js';
import { bootGuest } from './guest-vm.js';
import { GUEST_SERVER_ADDRESS, type Vm } from './qemu.js';
import { buildVmRelease, type VmRelease } from './releases.js';

export const PRODUCT = 'abota-vm';
export const HARDWARE = 'qemu-x86_64';
/** The agent polls this often in the tests and the demo (seconds). */
export const POLL_SECONDS = 3;

export interface Partition {
  name: string;
  offsetBytes: number;
  sizeBytes: number;
}

export interface FactoryDisk {
  path: string;
  partitions: Partition[];
  /** GRUBless disks: the VM's OVMF varstore with Boot0001 (A), Boot0002 (B), BootOrder. */
  vars?: string;
  /** The varstore enrols the fleet's Secure Boot key: boot it with the Secure Boot firmware. */
  secureBoot?: boolean;
}

export interface FleetOptions {
  /** GRUBless: releases carry UKIs, disks boot them from BootEFIA/B (uefi backend, firmware mode). */
  uefi?: boolean;
  /**
   * With uefi: a Secure Boot key made for the fleet signs every UKI (sbsign) and is enrolled as
   * PK, KEK and db in each factory disk's varstore (`--secure-boot-cert`), so OVMF enforces it.
   */
  secureBoot?: boolean;
  /**
   * With uefi: what the firmware starts. firmware (default): each slot's UKI from BootEFIA/B
   * (Boot0001/0002; the agent's uefi backend in firmware mode); systemd-boot: systemd-boot on the
   * ESP, the UKIs in /EFI/Linux (`image disk --loader systemd-boot`; the backend's systemd-boot
   * mode copies each installed UKI there), signed with the Secure Boot key when there is one.
   */
  loader?: 'firmware' | 'systemd-boot';
}

export interface ReleaseSpec {
  version: string;
  /** false: the release's health check fails (rollback scenario). */
  healthy?: boolean;
  /** Versions (built before) to make deltas from. */
  deltaFrom?: string[];
}

export class UpdateFleet {
  readonly releases = new Map<string, VmRelease>();

  private constructor(
    readonly dir: string,
    readonly server: HostServer,
    readonly kernel: Kernel,
    readonly keysDir: string,
    readonly sshKey: SshKey,
    /** GRUBless: releases carry UKIs, disks boot them from BootEFIA/B (uefi backend, firmware mode). */
    readonly uefi: boolean,
    /** The Secure Boot db key and certificate (uefi + secureBoot). */
    readonly secureBootKey?: { key: string; cert: string },
    readonly loader: 'firmware' | 'systemd-boot' = 'firmware',
  ) {}

  /** Start the server, make the product's keys and register the product. */
  static async create(dir: string, o: FleetOptions = {}): Promise<UpdateFleet> {
    await mkdir(dir, { recursive: true });
    const server = await startHostServer(dir);
    const keysDir = join(dir, 'keys');
    await abota(['keys', 'init', keysDir]);
    await server.abota(['product', 'create', PRODUCT, '--root', join(keysDir, 'root.json')]);
    const uefi = o.uefi === true;
    if (o.secureBoot === true && !uefi) throw new Error('UpdateFleet: secureBoot needs uefi (signed UKIs)');
    const sb =
      o.secureBoot === true
        ? selfSignedCertificate(dir, 'secure-boot-db', '/CN=abota VM fleet db/')
        : undefined;
    if (o.loader !== undefined && !uefi) throw new Error('UpdateFleet: loader needs uefi');
    return new UpdateFleet(dir, server, await vmKernel(), keysDir, makeSshKey(dir), uefi, sb, o.loader);
  }

  /** Build a signed release of the guest (deltas from earlier ones) and push it to the server. */
  async release(spec: ReleaseSpec): Promise<VmRelease> {
    const release = await buildVmRelease({
      dir: join(this.dir, 'releases', spec.version),
      version: spec.version,
      kernel: this.kernel,
      keysDir: this.keysDir,
      layout: this.uefi
        ? { ...GUEST_LAYOUT_UEFI, uefi: { ...GUEST_LAYOUT_UEFI.uefi!, mode: this.loader } }
        : GUEST_LAYOUT,
      ...(this.uefi ? { buildFlags: ['--boot-format', 'uki', ...this.#signFlags()] } : {}),
      serverUrl: `http://${GUEST_SERVER_ADDRESS.host}:${GUEST_SERVER_ADDRESS.port}`,
      product: PRODUCT,
      hardware: HARDWARE,
      healthy: spec.healthy ?? true,
      authorizedKeys: [this.sshKey.publicKey],
      pollSeconds: POLL_SECONDS,
      extraFiles: { '/usr/share/abota/release-notes': `guest release ${spec.version}\n` },
      deltaFrom: (spec.deltaFrom ?? []).map((v) => this.releases.get(v)!.dir),
    });
    await this.server.abota(['release', 'push', release.dir]);
    this.releases.set(spec.version, release);
    return release;
  }

  /** The factory disk of one VM: slot A from `version`, a fresh registration token on Data. */
  async factoryDisk(name: string, version: string): Promise<FactoryDisk> {
    const { token } = (await this.server.abota(['token', 'create', '--product', PRODUCT])) as {
      token: string;
    };
    const data = join(this.dir, 'vms', name, 'data');
    const tokenFile = join(data, PROVISIONING_TOKEN_PATH.replace(/^\/var\//, ''));
    await mkdir(join(tokenFile, '..'), { recursive: true });
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    const path = join(this.dir, 'vms', name, 'disk.raw');
    const vars = join(this.dir, 'vms', name, 'OVMF_VARS.fd');
    const summary = (await abota([
      'image',
      'disk',
      '--release',
      this.releases.get(version)!.dir,
      '--out',
      path,
      ...diskSizeFlags(this.uefi),
      '--data-dir-content',
      data,
      ...(this.uefi ? ['--boot', 'uefi', '--ovmf-vars', vars] : []),
      ...(this.loader === 'firmware' ? [] : ['--loader', this.loader, ...this.#signFlags()]),
      ...(this.secureBootKey === undefined ? [] : ['--secure-boot-cert', this.secureBootKey.cert]),
    ])) as unknown as { partitions: Partition[] };
    return {
      path,
      partitions: summary.partitions,
      ...(this.uefi ? { vars } : {}),
      ...(this.secureBootKey === undefined ? {} : { secureBoot: true }),
    };
  }

  /** Start QEMU on a factory disk of this fleet (its varstore and Secure Boot firmware, if any). */
  bootDisk(disk: FactoryDisk, dir: string, sshPort: number, allowReboot: boolean): Promise<Vm> {
    return bootGuest({
      disk: disk.path,
      dir,
      serverPort: this.server.port,
      sshPort,
      allowReboot,
      ...(disk.vars === undefined ? {} : { vars: disk.vars }),
      ...(disk.secureBoot === true ? { secureBoot: true } : {}),
    });
  }

  #signFlags(): string[] {
    const k = this.secureBootKey;
    return k === undefined ? [] : ['--sb-key', k.key, '--sb-cert', k.cert];
  }

  /** A rollout of `version` to exactly one device, all of it at once. */
  async rollout(version: string, deviceId: string): Promise<void> {
    await this.server.abota([
      'rollout',
      'create',
      '--product',
      PRODUCT,
      '--version',
      version,
      '--stages',
      '100',
      '--device',
      deviceId,
      '--name',
      `${version} to ${deviceId}`,
    ]);
  }

  /** Poll `abota device list` until `accept` holds for the device (or, without an id, any device). */
  async waitForDevice(
    accept: (d: DeviceRow) => boolean,
    timeoutMs: number,
    deviceId?: string,
  ): Promise<DeviceRow> {
    const deadline = performance.now() + timeoutMs;
    let last: DeviceRow | undefined;
    while (performance.now() < deadline) {
      const rows = await this.server.devices(PRODUCT);
      // Without an id: the first device that satisfies `accept` (a new VM's registration).
      const row = deviceId === undefined ? rows.find(accept) : rows.find((d) => d.id === deviceId);
      if (row !== undefined && accept(row)) return row;
      last = row ?? last;
      await new Promise((r) => setTimeout(r, 2000));
    }
    throw new Error(
      `device ${deviceId ?? '(any)'} did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last)}`,
    );
  }

  async close(): Promise<void> {
    await this.server.close();
  }
}
