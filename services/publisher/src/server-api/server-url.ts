// Which update server URLs the CLI sends an API key to: http(s) only, no credentials in the URL,
// plain http only to this machine unless ABOTA_ALLOW_INSECURE_HTTP=1.
import { AdminApiError } from './error.js';

/** Refuses URLs that would send the API key in clear text anywhere but this machine. */
export function parseServerUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AdminApiError(
      'ERR_USAGE',
      `--server ${JSON.stringify(text)} is not a URL (expected e.g. https://updates.example.com)`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AdminApiError('ERR_USAGE', `--server ${text}: expected an http(s) URL`);
  }
  const loopback =
    ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || url.hostname.startsWith('127.');
  if (url.protocol === 'http:' && !loopback && process.env['ABOTA_ALLOW_INSECURE_HTTP'] !== '1') {
    throw new AdminApiError(
      'ERR_USAGE',
      `--server ${text}: plain http would send the API key in clear text; use https (or set ABOTA_ALLOW_INSECURE_HTTP=1 on a trusted network)`,
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new AdminApiError(
      'ERR_USAGE',
      '--server must not carry credentials; the API key comes from ABOTA_API_KEY',
    );
  }
  return url;
}
