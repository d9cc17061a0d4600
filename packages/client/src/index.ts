// @abota/client — the device side of abota: boot control (src/bootctl), the journalled verified
// installer, the update server client and the `Agent` behind the `abota-agent` bin.
export * from './bootctl/index.js';
export { type ClientErrorCode, ClientError, isClientError } from './errors.js';
export {
  type AgentConfig,
  type AgentConfigInput,
  agentConfigSchema,
  type BootControlConfig,
  DEFAULT_CONFIG_PATH,
  type ImageTarget,
  loadAgentConfig,
  parseAgentConfig,
  type SlotConfig,
} from './config.js';
export { createBootControl } from './boot-control-config.js';
export {
  type AfterBootResult,
  Agent,
  type AgentLogEvent,
  type AgentOptions,
  type AgentStatus,
  type CheckResult,
} from './agent.js';
export { TRUST_CHAIN_FILE } from './agent-trust-roots.js';
export { type LoopSteps, pollDelayMs, runLoop } from './agent-loop.js';
export { exitStatusFor, runAgentCli, type CliIo } from './agent-commands.js';
export { type DeviceState, readDeviceState } from './device-state.js';
export { type CommandResult, type CommandRunner, runCommand } from './hooks.js';
export { type BackoffOptions, backoffDelayMs, DEFAULT_BACKOFF } from './http/backoff.js';
export {
  MAX_JSON_BYTES,
  MAX_MANIFEST_JWS_BYTES,
  readBoundedBody,
  readBoundedJson,
} from './http/bounded-body.js';
export { DeviceKey, type PublicJwk as DevicePublicJwk } from './http/device-auth.js';
export { type DownloadOptions, downloadRange } from './http/download.js';
export { nodeHttpFetch } from './http/node-http.js';
export {
  type DeviceReport,
  type PollRequest,
  type PollResponse,
  type ReportState,
  type UpdateOffer,
  UpdateServerClient,
  type UpdateServerClientOptions,
} from './http/server-api.js';
export { TokenBucket } from './http/token-bucket.js';
export { type ArtifactCodec, SUPPORTED_CODECS } from './install/codec.js';
export {
  type InstallerOptions,
  Installer,
  type InstallRequest,
  MAX_HASH_TREE_BYTES,
  RESUMABLE_CODES,
  type SlotBootControl,
} from './install/installer.js';
export { type InstallJournal, type InstallPhase, readJournal } from './install/journal.js';
export { DirectoryReleaseSource, type ReleaseSource, ServerReleaseSource } from './install/release-source.js';
