// Bearer secrets the server hands out (admin API keys `abk_...`, provisioning tokens
// `abp_...`): 256 random bits, stored only as SHA-256 so a database leak discloses no usable key.
import { createHash, randomBytes } from 'node:crypto';

export type SecretKind = 'abk' | 'abp';

export function generateSecret(kind: SecretKind): string {
  return `${kind}_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The bearer token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match?.[1];
}
