// Public API of boot control (re-exported by packages/client/src/index.ts).
export {
  type BootControl,
  type BootedSlotSource,
  type SlotName,
  type SlotState,
  type VerifiedImageReader,
  SLOT_NAMES,
  assertSlotName,
  bootedSlotFromCmdline,
  otherSlot,
  readBootedSlot,
} from './bootcontrol.js';
export {
  GRUBENV_DEFAULT_SIZE_BYTES,
  GRUBENV_MAX_SIZE_BYTES,
  GRUBENV_SIGNATURE,
  type GrubEnvEdit,
  createGrubEnv,
  createGrubEnvFile,
  editGrubEnv,
  editGrubEnvFile,
  parseGrubEnv,
  readGrubEnvFile,
  setGrubEnv,
} from './grubenv.js';
export {
  DEFAULT_GRUBENV_PATH,
  GRUB_SAVED_VARIABLES,
  GrubBootControl,
  type GrubBootControlOptions,
  emulateGrubBoot,
  grubSelectSlot,
} from './grub.js';
export {
  type DecodedUBootEnv,
  UBOOTENV_MAX_SIZE_BYTES,
  type UBootEnvConfig,
  type UBootEnvEdits,
  type UBootEnvLocation,
  type UBootEnvState,
  checkUBootEnvConfig,
  DEFAULT_FW_ENV_CONFIG_PATH,
  readFwEnvConfigFile,
  currentCopyIndex,
  decodeUBootEnv,
  editUBootEnv,
  encodeUBootEnv,
  formatUBootEnv,
  parseFwEnvConfig,
  readUBootEnv,
  writeUBootEnv,
} from './ubootenv.js';
export {
  type BootControlAction,
  type UBootBootControlOptions,
  type UBootConvention,
  UBootBootControl,
  emulateUBootBoot,
  ubootInitialEnv,
  ubootSelectSlot,
  ubootTransition,
} from './uboot.js';
export {
  type BootState,
  type FileBootControlOptions,
  FileBootControl,
  bootStateSchema,
  emulateFileBoot,
  fileSelectSlot,
  initialBootState,
  readBootStateFile,
  writeBootStateFile,
} from './file.js';
export {
  ABOTA_VENDOR_GUID,
  EFI_GLOBAL_GUID,
  EFI_VARIABLE_NV_BS_RT,
  LOAD_OPTION_ACTIVE,
  SYSTEMD_LOADER_GUID,
  type DevicePathNode,
  type LoadOption,
  bootVariableName,
  decodeLoadOption,
  decodeUint16Array,
  devicePathText,
  encodeLoadOption,
  encodeUint16Array,
} from './efivar-formats.js';
export { DEFAULT_EFIVARS_PATH, EfiVarStore, type EfiVarStoreOptions } from './efivarfs.js';
export { UKI_PATH_IN_BOOT_IMAGE } from './esp-uki.js';
export { emulateSystemdBoot, formatBlsName, nextBlsName, parseBlsName } from './bls.js';
export {
  DEFAULT_BOOT_ENTRY_DESCRIPTIONS,
  DEFAULT_UKI_NAMES,
  UefiBootControl,
  type UefiBootControlOptions,
  type UefiMode,
  emulateFirmwareBoot,
  emulateSystemdBootSlot,
  firmwareSelect,
} from './uefi.js';
export { BOOT_STATE_WRITE, type WriteFileAtomicOptions, writeFileAtomic } from '../atomic-file.js';
