// @abota/simulator — simulated A/B VMs for tests and the demo: slot files with dm-verity hash
// areas, a grubenv played by RAUC's grub.cfg logic, a kernel that checks the chosen slot's root
// hash, the agent in-process or as a child process, and fault injection.
export { AgentProcess, type AgentExit, type AgentProcessOptions } from './agent-process-handle.js';
export {
  type BootArtifact,
  type BootArtifacts,
  bootArtifactFromSignedManifest,
  type TrustedImage,
} from './boot-artifacts.js';
export { SimulatorError, type SimulatorErrorCode } from './errors.js';
export { sha256OfFile } from './files.js';
export { verifySlotImage } from './imaging.js';
export { type SlotPaths, type VmPaths, vmPaths } from './layout.js';
export {
  type BootFailure,
  type BootOutcome,
  type CreateVmOptions,
  SimulatedVm,
} from './vm.js';
export { buildBootImage, buildRootfsImage, pseudoRandomBytes, type RootfsImage } from './images.js';
