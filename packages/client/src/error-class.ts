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
