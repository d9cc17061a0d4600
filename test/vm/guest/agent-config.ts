// The agent config baked into the guest's rootfs (/etc/abota/agent.json): slots by partlabel
// with the hash area after the data, the GRUB backend on the ESP, state on Data, health check
// and reboot hooks. Validated by the agent's own schema when the tree is built.
import { type AgentConfigInput, parseAgentConfig } from '@abota/client';
import { HEALTH_CHECK_PATH } from './init-scripts.js';

/** Where things are on the VM's disk; must match the factory disk and the boot images. */
export interface GuestDiskLayout {
  /** Partition label of the ESP (vfat, holds the grubenv). */
  espPartlabel: string;
  /** Guest path of the grubenv GRUB's load_env/save_env use (on the mounted ESP). */
  grubenvPath: string;
  /** Byte offset of the dm-verity hash area on RootFSA/B (after the data). */
  rootfsHashOffsetBytes: number;
  /** Byte offset of the dm-verity hash area on BootA/B. */
  bootHashOffsetBytes: number;
  /**
   * uefi: the disk boots each slot's UKI from BootEFIA/B without GRUB (`abota image disk --boot
   * uefi`); the agent uses the uefi backend in firmware mode (Boot0001/Boot0002 + BootNext), or
   * with `mode: 'systemd-boot'` (`--loader systemd-boot`) in systemd-boot mode (UKIs on the ESP).
   */
  uefi?: { bootEfiHashOffsetBytes: number; mode?: 'firmware' | 'systemd-boot' };
}

export const ESP_MOUNT_POINT = '/boot/efi';
export const TRUST_ROOT_GUEST_PATH = '/usr/share/abota/root.json';
export const AGENT_CONFIG_GUEST_PATH = '/etc/abota/agent.json';

export interface GuestAgentConfigOptions {
  layout: GuestDiskLayout;
  /** The host's abota-server as the guest reaches it (QEMU guestfwd address). */
  serverUrl: string;
  product: string;
  hardware: string;
  /** The version this rootfs is released as (the factory version until a commit). */
  version: string;
  securityVersion?: number;
  /** Poll every this many seconds whatever the server says (tests); default: the agent's bounds. */
  pollSeconds?: number;
}

export function guestAgentConfig(o: GuestAgentConfigOptions): AgentConfigInput {
  const slot = (s: 'A' | 'B') => ({
    rootfs: { path: `/dev/disk/by-partlabel/RootFS${s}`, hashOffsetBytes: o.layout.rootfsHashOffsetBytes },
    boot:
      o.layout.uefi === undefined
        ? { path: `/dev/disk/by-partlabel/Boot${s}`, hashOffsetBytes: o.layout.bootHashOffsetBytes }
        : {
            path: `/dev/disk/by-partlabel/BootEFI${s}`,
            hashOffsetBytes: o.layout.uefi.bootEfiHashOffsetBytes,
          },
  });
  const config: AgentConfigInput = {
    // Plain http is allowed: the guestfwd address ends on the host's loopback (QEMU's user
    // network), so the bytes never cross a real network.
    server: { url: o.serverUrl, allowInsecureHttp: true },
    deviceKeyPath: '/var/lib/abota/device-key.json',
    // Under /usr, not /etc: /etc is an overlay on Data, so a root.json there could be replaced.
    trustRootPath: TRUST_ROOT_GUEST_PATH,
    product: o.product,
    hardware: o.hardware,
    factory: { version: o.version, securityVersion: o.securityVersion ?? 0 },
    slots: { A: slot('A'), B: slot('B') },
    bootControl:
      o.layout.uefi === undefined
        ? { backend: 'grub', envPath: o.layout.grubenvPath }
        : { backend: 'uefi', mode: o.layout.uefi.mode ?? 'firmware', espPath: ESP_MOUNT_POINT },
    dataDir: '/var/lib/abota',
    // A fixed interval when given (tests: the server's own interval would be clamped into it).
    ...(o.pollSeconds !== undefined
      ? {
          poll: {
            minSeconds: o.pollSeconds,
            defaultSeconds: o.pollSeconds,
            maxSeconds: o.pollSeconds,
            jitterFraction: 0,
          },
        }
      : {}),
    healthChecks: [{ command: [HEALTH_CHECK_PATH], timeoutSeconds: 120 }],
    // busybox init runs rcK (stops the agent, syncs, unmounts) before it reboots.
    rebootCommand: ['/bin/busybox', 'reboot'],
    // The UKI's signed command line says abota.slot=efi; the initramfs writes the resolved one
    // (abota.slot=A|B) to /run/abota/cmdline, the same as /proc/cmdline on a GRUB boot.
    kernelCmdlinePath: '/run/abota/cmdline',
  };
  parseAgentConfig(config, 'the guest agent config');
  return config;
}
