// The one error class of @abota/client (docs/CONTRACTS.md): a stable `code` the CLI maps to an
// exit status and the agent reports to the server, and a message saying what was expected,
// what was found and where.

/**
 * Every code @abota/client throws. Keep this ONE union; add new codes in the group of the
 * module that throws them (one line each, alphabetical within a group).
 */
export type ClientErrorCode =
  // bootctl/grubenv.ts — docs/formats.md §2
  | 'ERR_GRUBENV_INVALID' // missing "# GRUB Environment Block" signature, broken padding, bad line
  | 'ERR_GRUBENV_TOO_SMALL' // "environment block too small": the edit does not fit, nothing written
  | 'ERR_GRUBENV_BAD_VARIABLE' // name empty or with '=', '\\', newline, leading '#'; NUL in a value
  // bootctl/ubootenv.ts — docs/formats.md §3
  | 'ERR_UBOOTENV_CONFIG' // fw_env.config line that cannot be used
  | 'ERR_UBOOTENV_NO_VALID_COPY' // no copy with a valid CRC (fw_printenv: "Cannot read environment")
  | 'ERR_UBOOTENV_TOO_LARGE' // variables do not fit the configured environment size
  | 'ERR_UBOOTENV_BAD_VARIABLE' // name/value that cannot be stored (NUL, '=' in name, ...)
  | 'ERR_UBOOTENV_IO' // short read/write on the env device or file
  // bootctl/efivarfs.ts, bootctl/efivar-formats.ts — UEFI variables
  | 'ERR_EFIVAR_INVALID' // a variable's bytes are not the format it must have (load option, UINT16, CHAR16)
  | 'ERR_EFIVARS_IO' // efivarfs read/write/delete failed, or chattr (e2fsprogs) missing or failing
  // bootctl (boot control backends)
  | 'ERR_BOOTCTL_UNKNOWN_SLOT' // a slot name other than "A" / "B"
  | 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN' // no abota.slot= / rauc.slot= on the cmdline and none configured
  | 'ERR_BOOTCTL_STATE_INVALID' // boot state file / env holds values we cannot interpret or act on
  | 'ERR_BOOTCTL_STATE_EXISTS' // init: the file backend's boot state exists (--force replaces it)
  | 'ERR_BOOTCTL_STATE_MISSING' // grubenv / U-Boot env / state file not provisioned yet
  | 'ERR_BOOTCTL_ENTRY_MISSING' // uefi: no Boot#### / no UKI on the ESP for a slot
  | 'ERR_BOOTCTL_BOOT_IMAGE_INVALID' // uefi systemd-boot: the slot's boot image is not FAT or holds no UKI
  | 'ERR_BOOTCTL_ESP_DUPLICATE' // uefi systemd-boot: two names for one slot's UKI that may share clusters
  | 'ERR_BOOTCTL_ESP_IO' // uefi systemd-boot: the UKI cannot be written or renamed on the ESP (full, read-only)
  // config.ts, device-state.ts, install/journal.ts — the agent's own files
  | 'ERR_CONFIG_INVALID' // agent config (file or ABOTA_* override) fails the schema
  | 'ERR_CONFIG_NOT_SIMULATED' // simulate-reboot on a device with a real bootloader or /proc files
  | 'ERR_CONFIG_INSECURE_HTTP' // server.url is plain http to a non-loopback host without allowInsecureHttp
  | 'ERR_CONFIG_READ' // agent config file cannot be read
  | 'ERR_JOURNAL_INVALID' // install journal in the data directory cannot be interpreted
  | 'ERR_STATE_INVALID' // state.json in the data directory cannot be interpreted
  | 'ERR_TRUST_ROOT' // the device's trust root file is missing or does not verify
  // http/ — update server and blob downloads
  | 'ERR_ABORTED' // shutdown or caller abort; an install stays resumable
  | 'ERR_DEVICE_KEY' // device key missing, not an Ed25519 private JWK, or readable by others
  | 'ERR_HTTP_BAD_RESPONSE' // response that is not what the API promises (JSON, schema, Content-Range)
  | 'ERR_HTTP_NETWORK' // connection failed, dropped or stalled (after retries)
  | 'ERR_HTTP_NAME_NOT_FOUND' // the server's host name does not resolve (not retried)
  | 'ERR_HTTP_TLS' // the server's certificate is not valid for it (not retried)
  | 'ERR_HTTP_STATUS' // final non-2xx status (4xx other than 408/429)
  | 'ERR_HTTP_TOO_LARGE' // response larger than its limit (1 MiB JSON/JWS, signed blob size)
  | 'ERR_HTTP_UNAVAILABLE' // 5xx / 408 / 429 (after retries)
  | 'ERR_HTTP_TIMEOUT' // an API request got no complete answer within its deadline (after retries)
  | 'ERR_HTTP_TOO_SLOW' // a download stayed below the minimum rate or over its time budget
  | 'ERR_NOT_REGISTERED' // no device id yet: `abota-agent register --token T`
  // install/ — the installer state machine
  | 'ERR_INSTALL_ACTIVE_SLOT' // the write target is (a device of) the booted slot
  | 'ERR_INSTALL_ARTIFACT_CORRUPT' // the compressed stream cannot be decoded
  | 'ERR_INSTALL_ARTIFACT_DIGEST_MISMATCH' // artifact sha256 differs from the signed manifest
  | 'ERR_INSTALL_ARTIFACT_MISSING' // the release directory / offer has no such blob
  | 'ERR_INSTALL_ARTIFACT_SIZE' // artifact or its decoded output has a size other than the signed one
  | 'ERR_INSTALL_BLOCK_CORRUPT' // a data block does not match the signed dm-verity tree (message: block index)
  | 'ERR_INSTALL_HASH_TREE_INVALID' // hash tree digest/size/tree does not lead to the signed root hash
  | 'ERR_INSTALL_NO_SPACE' // ENOSPC/EDQUOT on the data partition or a slot file: device-side, resumable
  | 'ERR_INSTALL_NOTHING_PENDING' // mark-good/mark-bad/commit with no install waiting for it
  | 'ERR_INSTALL_RELEASE_DIR' // path is not a release directory (no manifest.jws, too large)
  | 'ERR_INSTALL_SLOT_IO' // the slot device cannot be opened or written
  | 'ERR_INSTALL_SLOT_LAYOUT' // slot config does not fit the release (missing image device, overlap, too small)
  | 'ERR_INSTALL_TRIAL_PENDING' // the running slot is an unconfirmed trial: the other slot is the fallback
  | 'ERR_INSTALL_UNSUPPORTED_CODEC' // artifact codec this agent cannot decode
  | 'ERR_INSTALL_UNVERIFIABLE_IMAGE' // image bytes the verity tree does not cover (more than a partial block)
  // agent.ts — after boot
  | 'ERR_HEALTH_CHECK_FAILED' // a health-check hook exited non-zero or timed out
  | 'ERR_REBOOT_FAILED' // the reboot command could not be run or failed
  | 'ERR_ROLLED_BACK'; // the device came back on the old slot after trying the new one

export class ClientError extends Error {
  override readonly name = 'ClientError';
  readonly code: ClientErrorCode;
  /**
   * How long the server asked us to wait (its Retry-After on a 429 or 503, bounded by
   * http/backoff.ts parseRetryAfter): the retry and the daemon loop wait at least this long.
   */
  readonly retryAfterMs: number | undefined;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export function isClientError(e: unknown, code?: ClientErrorCode): e is ClientError {
  return e instanceof ClientError && (code === undefined || e.code === code);
}
