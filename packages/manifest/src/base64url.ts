// base64url without padding (RFC 4648 §5, as JWS uses it: RFC 7515 §2), for any JavaScript
// runtime (btoa/atob, no Buffer). Decoding is strict: only the URL-safe alphabet, and never a
// length ≡ 1 (mod 4), which no byte string encodes to, and never a last character whose unused
// low bits are set: otherwise several texts decode to the same bytes (issue #16: one key under
// several key ids).
import { ManifestError } from './errors.js';

const ALPHABET = /^[A-Za-z0-9_-]*$/;
const DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

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
  // 2 trailing characters carry 12 bits for 1 byte, 3 carry 18 for 2: the rest must be zero.
  const unusedBits = text.length % 4 === 2 ? 0b1111 : text.length % 4 === 3 ? 0b11 : 0;
  if ((DIGITS.indexOf(text.at(-1) ?? 'A') & unusedBits) !== 0) {
    throw new ManifestError(
      'ERR_JWS_MALFORMED',
      `${what}: not canonical base64url (the last character's unused bits are set)`,
    );
  }
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
