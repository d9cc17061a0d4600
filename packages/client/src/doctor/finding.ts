// What `abota-agent doctor` reports: one finding per problem, with a stable code, what was found
// where, and the fix a person can apply. Errors make the device unable to update; warnings
// do not (yet).
import type { ClientErrorCode } from '../errors.js';

/** Codes of problems only doctor reports (the rest are the agent's own ClientErrorCodes). */
export type DoctorOnlyCode =
  | 'ERR_DOCTOR_CLOCK_BEHIND' // the clock is before the agent's build or the trust root file
  | 'ERR_DOCTOR_DATA_DIR' // data directory missing, not a directory or not writable
  | 'ERR_DOCTOR_HASH_AREA' // the dm-verity hash area overlaps the data or does not fit the device
  | 'ERR_DOCTOR_NOT_REGISTERED' // no device key / id yet (warning)
  | 'ERR_DOCTOR_NOT_WRITABLE' // a slot device or the boot-control state cannot be written
  | 'ERR_DOCTOR_NO_SERVER' // no server.url: offline installs only (warning)
  | 'ERR_DOCTOR_SERVER_UNREACHABLE' // the server's /healthz does not answer 200 (warning)
  | 'ERR_DOCTOR_SERVER_URL' // plain http to a server that is not on this machine
  | 'ERR_DOCTOR_SLOT_MISSING' // a slot device (or the directory of a slot file) does not exist
  | 'ERR_DOCTOR_SLOT_SHARED' // two slot areas resolve to the same device
  | 'ERR_DOCTOR_SLOT_TOO_SMALL' // a slot device is smaller than its configured layout
  | 'ERR_DOCTOR_SLOT_TYPE' // a slot path is neither a block device nor a regular file
  | 'ERR_DOCTOR_TRUST_ROOT_EXPIRED' // the trust root has expired: every release is refused
  | 'ERR_DOCTOR_TRUST_ROOT_EXPIRING'; // the trust root expires within 30 days (warning)

export type DoctorCode = ClientErrorCode | DoctorOnlyCode;

export interface DoctorFinding {
  code: DoctorCode;
  severity: 'error' | 'warning';
  /** What was checked: a config field (`slots.B.rootfs`) or an area (`clock`). */
  subject: string;
  message: string;
  fix: string;
}

/** One area of the check and what it found; no findings = it passed. */
export interface DoctorCheck {
  name: string;
  findings: DoctorFinding[];
}

export interface DoctorReport {
  ok: boolean;
  configPath: string;
  checks: DoctorCheck[];
  /** Every finding of every check, errors first. */
  findings: DoctorFinding[];
}

export function problem(
  code: DoctorCode,
  subject: string,
  message: string,
  fix: string,
  severity: DoctorFinding['severity'] = 'error',
): DoctorFinding {
  return { code, severity, subject, message, fix };
}

export function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
