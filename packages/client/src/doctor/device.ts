// doctor: what the agent keeps and whom it talks to — the data directory (journal, state,
// device key) must be a writable directory, the device key private to its owner, and the server
// reached over https unless it is on this machine, and answering (a warning only: a device may
// be set up before its network is).
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { AgentConfig } from '../config.js';
import { readDeviceState } from '../device-state.js';
import { httpGet } from '../http/node-http.js';
import { isPlainHttpToAnotherMachine } from '../server-url.js';
import { codeOf, type DoctorFinding, problem } from './finding.js';

async function checkDataDir(config: AgentConfig): Promise<DoctorFinding[]> {
  const subject = 'dataDir';
  try {
    const st = await stat(config.dataDir);
    if (!st.isDirectory()) {
      return [
        problem(
          'ERR_DOCTOR_DATA_DIR',
          subject,
          `${config.dataDir} is not a directory`,
          'point dataDir at a directory on the persistent data partition',
        ),
      ];
    }
    await access(config.dataDir, constants.W_OK);
  } catch (e) {
    const missing = codeOf(e) === 'ENOENT';
    return [
      problem(
        'ERR_DOCTOR_DATA_DIR',
        subject,
        missing
          ? `${config.dataDir} does not exist`
          : `${config.dataDir} is not writable: ${(e as Error).message}`,
        missing
          ? 'run "abota-agent init" to create it (mode 0700)'
          : 'the data directory must be on a writable, persistent partition (the unit lists /var/lib/abota in ReadWritePaths)',
      ),
    ];
  }
  try {
    await readDeviceState(config);
  } catch (e) {
    return [
      problem(
        'ERR_STATE_INVALID',
        subject,
        (e as Error).message,
        'restore state.json from a backup, or remove it and register the device again (the slots then count as factory images)',
      ),
    ];
  }
  return [];
}

async function checkDeviceKey(config: AgentConfig): Promise<DoctorFinding[]> {
  const subject = 'deviceKeyPath';
  let mode: number;
  try {
    mode = (await stat(config.deviceKeyPath)).mode;
  } catch {
    const registered = (await readDeviceState(config).catch(() => undefined))?.deviceId ?? config.deviceId;
    return [
      problem(
        registered === undefined ? 'ERR_DOCTOR_NOT_REGISTERED' : 'ERR_DEVICE_KEY',
        subject,
        registered === undefined
          ? `no device key at ${config.deviceKeyPath}: the device is not registered`
          : `device ${registered} is registered but its key ${config.deviceKeyPath} is missing`,
        registered === undefined
          ? 'run "abota-agent register --token <provisioning token>" (the operator creates one with "abota token create")'
          : 'restore the key file, or decommission the device on the server and register it again',
        registered === undefined ? 'warning' : 'error',
      ),
    ];
  }
  if ((mode & 0o077) !== 0) {
    return [
      problem(
        'ERR_DEVICE_KEY',
        subject,
        `${config.deviceKeyPath} has mode ${(mode & 0o777).toString(8)}: others can read the device's private key`,
        `chmod 600 ${config.deviceKeyPath}`,
      ),
    ];
  }
  return [];
}

const REACH_TIMEOUT_MS = 5000;

/** GET /healthz of the update server (no credentials): the URL, DNS, route and TLS work. */
async function checkServerAnswers(url: string): Promise<DoctorFinding[]> {
  const healthz = new URL('healthz', url.endsWith('/') ? url : `${url}/`).toString();
  const unreachable = (message: string) => [
    problem(
      'ERR_DOCTOR_SERVER_UNREACHABLE',
      'server.url',
      message,
      'check server.url (the abota-server base URL), DNS, outbound HTTPS through the firewall, and that the server runs',
      'warning',
    ),
  ];
  try {
    const res = await httpGet(healthz, {}, AbortSignal.timeout(REACH_TIMEOUT_MS), `GET ${healthz}`);
    res.body.resume();
    if (res.status !== 200)
      return unreachable(`GET ${healthz} answered HTTP ${res.status}, not an abota-server`);
    return [];
  } catch (e) {
    return unreachable(`GET ${healthz} failed: ${(e as Error).message}`);
  }
}

async function checkServer(config: AgentConfig): Promise<DoctorFinding[]> {
  const subject = 'server.url';
  if (config.server === undefined) {
    return [
      problem(
        'ERR_DOCTOR_NO_SERVER',
        subject,
        'no update server configured: only offline installs ("abota-agent install DIR") are possible',
        'add "server": {"url": "https://updates.example.com"} to the config',
        'warning',
      ),
    ];
  }
  if (isPlainHttpToAnotherMachine(config.server.url) && config.server.allowInsecureHttp !== true) {
    return [
      problem(
        'ERR_DOCTOR_SERVER_URL',
        subject,
        `${config.server.url} is plain http to another machine: anyone on the path can read and change the traffic (releases stay verified, but tokens and reports do not)`,
        'use https:// (plain http only to a server on this machine: 127.0.0.1, ::1, localhost; or "allowInsecureHttp": true in "server" on a trusted network)',
      ),
    ];
  }
  return checkServerAnswers(config.server.url);
}

export async function checkDevice(config: AgentConfig): Promise<DoctorFinding[]> {
  return [...(await checkDataDir(config)), ...(await checkDeviceKey(config)), ...(await checkServer(config))];
}
