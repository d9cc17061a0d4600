// Partition sizes of the test and demo disks (small: the guest rootfs is ~135 MiB, mostly node)
// and the agent's view of them: the hash area offsets `abota image disk` and its grub.cfg use.
import { hashOffsetBytes, MIB } from '@abota/publisher';
import type { GuestDiskLayout } from './guest/agent-config.js';

export const DISK_SIZES = {
  esp: 64 * MIB,
  bootEfi: 1 * MIB,
  boot: 48 * MIB,
  rootfs: 224 * MIB,
  unused: 1 * MIB,
  log: 16 * MIB,
  data: 128 * MIB,
} as const;

/** BootEFIA/B of a GRUBless disk: the FAT image of the UKI (~20 MiB) and its hash area. */
export const UEFI_BOOT_EFI_SIZE = 24 * MIB;

/** `abota image disk` flags for DISK_SIZES (uefi: BootEFIA/B large enough for a UKI). */
export function diskSizeFlags(uefi = false): string[] {
  const m = (bytes: number): string => `${bytes / MIB}M`;
  return [
    '--size-esp',
    m(DISK_SIZES.esp),
    '--size-boot-efi',
    m(uefi ? UEFI_BOOT_EFI_SIZE : DISK_SIZES.bootEfi),
    '--size-boot',
    m(DISK_SIZES.boot),
    '--size-rootfs',
    m(DISK_SIZES.rootfs),
    '--size-unused',
    m(DISK_SIZES.unused),
    '--size-log',
    m(DISK_SIZES.log),
    '--size-data',
    m(DISK_SIZES.data),
  ];
}

export const GUEST_LAYOUT: GuestDiskLayout = {
  espPartlabel: 'ESP',
  grubenvPath: '/boot/efi/EFI/abota/grubenv',
  rootfsHashOffsetBytes: hashOffsetBytes(DISK_SIZES.rootfs),
  bootHashOffsetBytes: hashOffsetBytes(DISK_SIZES.boot),
};

/** The guest layout of a GRUBless disk (`abota image disk --boot uefi`). */
export const GUEST_LAYOUT_UEFI: GuestDiskLayout = {
  ...GUEST_LAYOUT,
  uefi: { bootEfiHashOffsetBytes: hashOffsetBytes(UEFI_BOOT_EFI_SIZE) },
};
