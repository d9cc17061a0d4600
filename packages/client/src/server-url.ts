// Whether a server URL would carry the device's tokens and reports across a network in clear
// text: plain http is for a server on this machine only (loopback), unless the operator says
// otherwise for a trusted lab network — as the publisher refuses it for API keys. Shared by the
// agent (which refuses such a server before connecting) and `abota-agent doctor` (which reports it).
import { ClientError } from './errors.js';

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** http:// to a host that is not this machine. */
export function isPlainHttpToAnotherMachine(serverUrl: string): boolean {
  const url = new URL(serverUrl);
  return url.protocol === 'http:' && !isLoopbackHost(url.hostname);
}

/** Throws ERR_CONFIG_INSECURE_HTTP for plain http to another machine without `allowInsecureHttp`. */
export function assertServerTransport(server: {
  url: string;
  allowInsecureHttp?: boolean | undefined;
}): void {
  if (server.allowInsecureHttp === true || !isPlainHttpToAnotherMachine(server.url)) return;
  throw new ClientError(
    'ERR_CONFIG_INSECURE_HTTP',
    `server.url ${new URL(server.url).origin} is plain http to another machine: the device's tokens and reports would cross the network in clear text; use https, or set "allowInsecureHttp": true in "server" (or ABOTA_ALLOW_INSECURE_HTTP=1) on a trusted network`,
  );
}
