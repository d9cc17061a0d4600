// Whose fault an error is. A device-side error comes from the device itself — its config, its
// own files in the data directory, its trust root or key, its boot-control state, its slot
// devices — and would stop any release the same way; fixing the device clears it. The agent
// reports it as `device-error`, which the server does not count against a rollout and after
// which it offers the release again; the CLI exits 5 for it.
const DEVICE_SIDE =
  /^ERR_(CONFIG|STATE|JOURNAL|TRUST_ROOT|DEVICE_KEY|BOOTCTL|GRUBENV|UBOOTENV|INSTALL_SLOT|INSTALL_ACTIVE|INSTALL_TRIAL|INSTALL_NO_SPACE)/;

export function isDeviceSideError(code: string | undefined): boolean {
  return code !== undefined && DEVICE_SIDE.test(code);
}

// The way to the server failed after every retry (an outage of the server, its database or its
// blob store, a network that dropped or trickled): the install is interrupted and resumes from
// its journal, and it says nothing about the release either.
const TRANSPORT = /^ERR_HTTP_(NETWORK|UNAVAILABLE|TIMEOUT|TOO_SLOW)$/;

/**
 * No verdict on the release: device-side errors and transport failures. The agent reports these
 * as `device-error` (the server neither counts them against the rollout nor stops offering the
 * release); only the release's own faults (trust, verification, health) are `failed`.
 */
export function isNoVerdictOnRelease(code: string | undefined): boolean {
  return isDeviceSideError(code) || (code !== undefined && TRANSPORT.test(code));
}
