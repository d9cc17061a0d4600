export { buildProgram, main } from './cli.js';
// The disk layout rule the device's agent config must match (hash area after the data).
export { hashOffsetBytes, MIB } from './image/layout.js';
// Unified kernel images: the VM tests take a UKI apart and re-assemble an edited one.
export { buildUki, DEFAULT_UKI_STUB, parsePe, peSection, sbsignInPlace } from './image/uki.js';
export { UKI_PATH_IN_BOOT_IMAGE } from './image/uki-boot.js';
