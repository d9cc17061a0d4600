// base64url without padding (RFC 4648 §5, as JWS uses it: RFC 7515 §2), for any JavaScript
// runtime (btoa/atob, no Buffer). Decoding is strict: only the URL-safe alphabet, and never a
// length ≡ 1 (mod 4), which no byte string encodes to.
import { ManifestError } from './errors.js';

const ALPHABET = /^[A-Za-z0-9_-]*$/;

export function base64urlEncode(bytes: Uint8Array): string {
  let binary = '';
  // 32 KiB per fromCharCode call keeps the argument list far below engine limits.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decode base64url; throws ERR_JWS_MALFORMED (with `what`) on anything else. */
export function base64urlDecode(text: string, what = 'value'): Uint8Array {
  if (!ALPHABET.test(text) || text.length % 4 === 1) {
    throw new ManifestError('ERR_JWS_MALFORMED', `${what}: not base64url`);
  }
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
